"""Images for Vision Mamba: folders in the ImageFolder layout, the ImageNet evaluation preprocessing,
and top-k accuracy. Without torchvision (it does not import beside the CPU torch here): Pillow does
the resizing, as torchvision's own transforms do for a PIL image.

Preprocessing is timm's evaluation transform for 224-pixel models (crop_pct 0.875): resize the
shorter side to 256 with bicubic interpolation, crop the centre 224 × 224, scale to [0, 1], then
normalize by the ImageNet mean and std.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import MQDeployError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)      # timm's IMAGENET_DEFAULT_MEAN / _STD
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_PCT = 0.875


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise MQDeployError("reading images needs Pillow: pip install 'mq-deploy[vision]'") from None
    return Image


@dataclass
class ImageSet:
    """Image files and their class indices (None for an unlabelled folder), in a fixed order."""
    paths: list[Path]
    labels: list[int] | None
    classes: list[str]


def image_folder(root) -> ImageSet:
    """ImageFolder layout: root/<class>/<image>, classes in sorted order; or a flat folder of images
    (unlabelled: for calibration and FP-vs-quantized agreement)."""
    root = Path(root)
    if not root.is_dir():
        raise MQDeployError(f"{root} is not a directory; give a folder of images (root/<class>/<image>.jpg for labels)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        paths, labels = [], []
        for index, name in enumerate(classes):
            files = sorted(f for f in (root / name).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
            paths += files
            labels += [index] * len(files)
        found = ImageSet(paths, labels, classes)
    else:
        found = ImageSet(sorted(f for f in root.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS), None, [])
    if not found.paths:
        raise MQDeployError(f"{root} holds no images ({', '.join(IMAGE_EXTENSIONS)}); give a folder of images")
    return found


@dataclass(frozen=True)
class Preprocessing:
    """How one image file becomes one row of a Vision Mamba's `images` input: the one definition,
    run by preprocess() and recorded in the export manifest (`preprocessing`), so that an app that
    ships only the engine prepares its images the same way (samples/python/classify.py)."""
    crop: int                                 # the model's img_size
    resize_shorter_side: int                  # before the centre crop: int(crop / crop_pct)
    divide_by: float = 255.0                  # 8-bit pixels to [0, 1]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_size(cls, size: int, crop_pct: float = CROP_PCT) -> "Preprocessing":
        return cls(size, int(size / crop_pct))        # 256 for 224, timm's int(math.floor(224 / 0.875))

    def to_dict(self) -> dict:
        return {"input": "images", "layout": "NCHW", "dtype": "float32", "color": "RGB",
                "resize_shorter_side": self.resize_shorter_side, "interpolation": "bicubic",
                "center_crop": self.crop, "divide_by": self.divide_by, "mean": list(self.mean), "std": list(self.std),
                "steps": PREPROCESSING_STEPS}


PREPROCESSING_STEPS = (
    "convert to RGB; resize with Pillow's bicubic filter (antialiased when shrinking) so that the shorter "
    "side is resize_shorter_side and the longer int(resize_shorter_side * longer / shorter); crop "
    "center_crop x center_crop at left = round((width - center_crop) / 2), top = round((height - "
    "center_crop) / 2), round half to even; pixel / divide_by; (value - mean[c]) / std[c]; channels first")


def preprocess(image, size: int = 224, crop_pct: float = CROP_PCT) -> torch.Tensor:
    """A PIL image -> [3, size, size] float32, normalized: the shorter side resized (bicubic) to
    size / crop_pct, the centre size × size cropped (Preprocessing)."""
    Image = _pil()
    spec = Preprocessing.for_size(size, crop_pct)
    image = image.convert("RGB")
    scale = spec.resize_shorter_side
    w, h = image.size
    if w <= h:
        new_w, new_h = scale, int(scale * h / w)
    else:
        new_w, new_h = int(scale * w / h), scale
    image = image.resize((new_w, new_h), Image.BICUBIC)
    crop = spec.crop
    left, top = int(round((new_w - crop) / 2.0)), int(round((new_h - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / spec.divide_by).permute(2, 0, 1)
    mean = torch.tensor(spec.mean).view(3, 1, 1)
    std = torch.tensor(spec.std).view(3, 1, 1)
    return (pixels - mean) / std


def load_images(paths, size: int = 224) -> torch.Tensor:
    """[n, 3, size, size] from image files; an unreadable file is one error naming it."""
    Image = _pil()
    out = []
    for path in paths:
        try:
            with Image.open(path) as image:
                out.append(preprocess(image, size))
        except (OSError, ValueError) as e:
            raise MQDeployError(f"cannot read the image {path} ({e}); remove it from the folder or replace it") from None
    return torch.stack(out)


def topk_accuracy(logits: torch.Tensor, labels, ks=(1, 5)) -> dict[str, float]:
    """Fraction of rows whose label is among the k highest logits (ties: the lower class index first)."""
    labels = torch.as_tensor(labels)
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    return {f"top{k}": int((order[:, :k] == labels[:, None]).any(dim=1).sum()) / len(labels) for k in ks}


def top1_agreement(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """Fraction of rows where two models' top-1 classes agree."""
    return int((logits.argmax(-1) == reference.argmax(-1)).sum()) / logits.shape[0]
