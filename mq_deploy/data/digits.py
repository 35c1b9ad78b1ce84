"""The vision demo's data: scikit-learn's handwritten digits (samples/data/digits.npz, written by
scripts/vision_demo/prepare_digits.py), upsampled from 8x8 to the demo model's image size and
normalized as ImageNet images are (data/images.py), in a fixed train / held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MQDeployError
from .images import IMAGENET_MEAN, IMAGENET_STD

DIGITS_FILE = "digits.npz"
HELDOUT = 360                    # images held out from training: a fifth of the 1,797
SPLIT_SEED = 0
SPLITS = ("train", "heldout", "all")


def digits_split(path, split: str, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, 3, size, size] float32, labels [n] int64) of one split."""
    if split not in SPLITS:
        raise MQDeployError(f"unknown split {split!r}: choose {', '.join(SPLITS)}")
    path = Path(path)
    try:
        with np.load(path) as data:
            raw, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as e:
        raise MQDeployError(f"cannot read the digits from {path} ({e}); regenerate it with "
                            "scripts/vision_demo/prepare_digits.py") from None
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    pick = {"train": order[HELDOUT:], "heldout": order[:HELDOUT], "all": np.arange(len(labels))}[split]
    return preprocess_digits(torch.from_numpy(raw[pick]), size), torch.from_numpy(labels[pick].astype(np.int64))


def preprocess_digits(raw: torch.Tensor, size: int = 32) -> torch.Tensor:
    """[n, 8, 8] values 0..16 -> [n, 3, size, size]: bilinear upsampling of the gray level in [0, 1]
    into three equal channels, then ImageNet's mean and std."""
    gray = F.interpolate(raw.float()[:, None] / 16.0, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (gray.expand(-1, 3, -1, -1) - mean) / std
