"""Where a vision model's images come from, named the way the CLI's --calib / --eval / --images name
them: a folder (ImageFolder layout for labels, or flat), a .npy file of preprocessed images
[n, 3, H, W], or a bundled set ("digits", "digits:train", "digits:heldout"; the same for "mnist"): data/bundled_images.py."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import MQDeployError
from .bundled_images import BUNDLED_SETS, BUNDLED_SIZE, bundled_split

# "<set>" and "<set>:train" name the training split (what calibration reads), "<set>:heldout" the rest.
BUNDLED = {f"{name}{tail}": split for name in BUNDLED_SETS
           for tail, split in (("", "train"), (":train", "train"), (":heldout", "heldout"))}
# Evaluation and validation take at most this many images, spread over the source: they are held in
# memory preprocessed (2048 ImageNet images: 1.2 GB), and top-1 on 2048 images is within ±2 points.
MAX_EVAL_IMAGES = 2048


@dataclass
class LoadedImages:
    images: torch.Tensor                 # [n, 3, H, W] float32, preprocessed
    labels: torch.Tensor | None          # [n] int64, or None for unlabelled images
    label: str                           # what they are, for reports


def _spread(n_total: int, samples: int | None) -> np.ndarray:
    """`samples` indices spread evenly over n_total (all of them when samples is None or larger):
    a sorted ImageFolder listing is class after class, so its first images would be one class."""
    if samples is None or samples >= n_total:
        return np.arange(n_total)
    return np.linspace(0, n_total - 1, samples).round().astype(np.int64)


def images_or_default(images, img_size: int, what, trained_on: str | None = None) -> str:
    """--images as given; else, for a 32x32 model (the bundled sets' size), the held-out split of the
    bundled set it was trained on (`trained_on`, from its training.json), or the vision demo's
    held-out digits when nothing says; any other size needs images named."""
    if images is not None:
        return images
    if img_size != BUNDLED_SIZE:
        raise MQDeployError(f"{what} takes {img_size}x{img_size} images: give them with --images (a folder, or a .npy "
                            "of preprocessed images)")
    if trained_on in BUNDLED_SETS:
        print(f"note: no --images given: using {trained_on}:heldout, the held-out split of the bundled set this "
              "model was trained on (its training.json)", file=sys.stderr)
        return f"{trained_on}:heldout"
    print("note: no --images given: using digits:heldout, the vision demo's held-out digits; give --images for "
          "another model's data (mnist:heldout for vim-mnist-comparison)", file=sys.stderr)
    return "digits:heldout"


def check_labels(loaded: LoadedImages, num_classes: int, option: str) -> None:
    """Labels must index the model's classes (an ImageFolder's are positions among its sorted folders)."""
    if loaded.labels is not None and len(loaded.labels) and int(loaded.labels.max()) >= num_classes:
        raise MQDeployError(f"{option} {loaded.label}: its labels go up to {int(loaded.labels.max())} but the model has "
                            f"{num_classes} classes; give a folder with one subfolder per class of the model, in its "
                            "class order (sorted names)")


def load_image_source(source, img_size: int, samples: int | None = None, option: str = "--calib") -> LoadedImages:
    """Images at the model's input size; every problem one MQDeployError naming `option`."""
    text = str(source)
    if samples is not None and samples < 1:
        raise MQDeployError(f"{option}: the number of images must be positive, got {samples}")
    if text in BUNDLED:
        name, split = text.split(":")[0], BUNDLED[text]
        if Path(text).exists():
            raise MQDeployError(f"{option} {text} is both a bundled image set and a path here; give ./{text} for the "
                                f"path or {name}:{split} for the bundled set")
        if img_size != BUNDLED_SIZE:
            raise MQDeployError(f"{option} {text}: the bundled {name} images are for {BUNDLED_SIZE}x{BUNDLED_SIZE} models; "
                                f"this model takes {img_size}x{img_size} images: give a folder of images instead")
        images, labels = bundled_split(name, split)
        pick = _spread(len(labels), samples)
        return LoadedImages(images[pick], labels[pick], f"bundled {name} ({split} split)")
    path = Path(text)
    if not path.exists():
        raise MQDeployError(f"{option} {path} does not exist; give a folder of images, a .npy of preprocessed "
                            f"images [n, 3, {img_size}, {img_size}], or one of {', '.join(BUNDLED)}")
    if path.is_dir():
        from .images import image_folder, load_images
        found = image_folder(path)
        pick = _spread(len(found.paths), samples)
        images = load_images([found.paths[i] for i in pick], img_size)
        labels = None if found.labels is None else torch.tensor([found.labels[i] for i in pick])
        return LoadedImages(images, labels, str(path))
    if path.suffix != ".npy":
        raise MQDeployError(f"{option} {path}: give a folder of images or a .npy of preprocessed images, not a "
                            f"{path.suffix or 'extensionless'} file")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise MQDeployError(f"{option} {path} is not a readable .npy file ({e})") from None
    if array.ndim != 4 or array.shape[1:] != (3, img_size, img_size) or array.dtype.kind != "f":
        raise MQDeployError(f"{option} {path} holds an array of {array.dtype} of shape {array.shape}; the model takes "
                            f"preprocessed float images [n, 3, {img_size}, {img_size}]")
    if not np.isfinite(array).all():
        raise MQDeployError(f"{option} {path} holds NaN or inf values; regenerate it")
    pick = _spread(len(array), samples)
    return LoadedImages(torch.from_numpy(np.ascontiguousarray(array[pick], dtype=np.float32)), None, str(path))
