"""Write samples/data/digits.npz: scikit-learn's bundled handwritten digits (1,797 8x8 grayscale
images, values 0..16, 10 classes; the UCI "Optical Recognition of Handwritten Digits" test set),
which the vision demo trains and evaluates on. Nothing downloads: the data ships inside the
scikit-learn wheel (`pip download --no-deps scikit-learn -d /tmp/sk` and install it, or any installed copy).

    python scripts/vision_demo/prepare_digits.py --out samples/data/digits.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = digits.images.astype(np.uint8)              # [1797, 8, 8], 0..16
    labels = digits.target.astype(np.uint8)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first")
    np.savez_compressed(args.out, images=images, labels=labels)
    print(f"wrote {args.out}: {len(labels)} images, classes {sorted(set(labels.tolist()))}")


if __name__ == "__main__":
    main()
