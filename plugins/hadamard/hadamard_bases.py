"""Reader (and generator) for plugins/hadamard/hadamard_bases.txt.

The text file is the single definition of the Hadamard base matrices used by mq_deploy: the CUDA
build embeds it (embed_bases.cmake) and the Python transforms read it with `load_bases`. This
module needs only numpy so that CI, the GPU check and the package can all use it.

File format (see README.md): blank lines and lines starting with '#' are ignored; a block starts
with a line `order <m>` and is followed by exactly m rows of m characters, '+' for +1 and '-' for
-1. Every block satisfies H @ H.T == m * I.

`python hadamard_bases.py --write` regenerates the file from the standard constructions below
(Paley I for 12 and 20, Paley II for 28, Sylvester doubling of the order-20 matrix for 40).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

BASES_FILE = pathlib.Path(__file__).with_name("hadamard_bases.txt")
BASE_ORDERS = (1, 12, 20, 28, 40)
MAX_TRANSFORM_SIZE = 16384  # largest n the CUDA kernel accepts (row kept in shared memory)


def parse_bases(text: str) -> dict[int, np.ndarray]:
    """Parse the file format into {order: int8 matrix of +-1}."""
    bases: dict[int, np.ndarray] = {}
    order, rows = None, []

    def finish():
        if order is None:
            return
        if len(rows) != order:
            raise ValueError(f"order {order}: expected {order} rows, got {len(rows)}")
        bases[order] = np.array(rows, dtype=np.int8)

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("order"):
            finish()
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"line {lineno}: expected 'order <m>', got {raw!r}")
            order, rows = int(parts[1]), []
            if order in bases:
                raise ValueError(f"line {lineno}: order {order} defined twice")
            continue
        if order is None:
            raise ValueError(f"line {lineno}: matrix row before any 'order' line")
        if len(line) != order or set(line) - {"+", "-"}:
            raise ValueError(f"line {lineno}: expected {order} characters of '+'/'-', got {raw!r}")
        rows.append([1 if ch == "+" else -1 for ch in line])
    finish()
    return bases


def load_bases(path: str | pathlib.Path = BASES_FILE) -> dict[int, np.ndarray]:
    return parse_bases(pathlib.Path(path).read_text(encoding="ascii"))


def base_order_for(n: int) -> int:
    """The base order m used for size n: the largest m in BASE_ORDERS with n / m a power of two.

    Raises ValueError for unsupported sizes. Same rule as hadamard_size.h on the CUDA side.
    """
    for m in sorted(BASE_ORDERS, reverse=True):
        if n >= m and n % m == 0:
            p = n // m
            if p & (p - 1) == 0:
                return m
    raise ValueError(f"Hadamard size {n} is not m * 2^k with m in {BASE_ORDERS}")


def sylvester(p: int) -> np.ndarray:
    """Unnormalized Sylvester matrix of order p (a power of two): S[i, j] = (-1)^popcount(i & j)."""
    idx = np.arange(p)
    bits = np.bitwise_and.outer(idx, idx)
    parity = np.zeros_like(bits)
    while bits.any():
        parity ^= bits & 1
        bits >>= 1
    return np.where(parity == 1, -1, 1).astype(np.float64)


def hadamard_matrix(n: int, bases: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Normalized H_n = kron(base_m, Sylvester_{n/m}) / sqrt(n) in float64 (orthogonal)."""
    bases = load_bases() if bases is None else bases
    m = base_order_for(n)
    return np.kron(bases[m].astype(np.float64), sylvester(n // m)) / np.sqrt(n)


# ---- standard constructions (provenance of the file) ---------------------------------------------

def _legendre(a: int, q: int) -> int:
    a %= q
    if a == 0:
        return 0
    return 1 if pow(a, (q - 1) // 2, q) == 1 else -1


def _jacobsthal(q: int) -> np.ndarray:
    return np.array([[_legendre(j - i, q) for j in range(q)] for i in range(q)], dtype=np.int64)


def paley_i(q: int) -> np.ndarray:
    """Paley construction I, q prime, q = 3 (mod 4): order q + 1."""
    assert q % 4 == 3
    s = np.zeros((q + 1, q + 1), dtype=np.int64)
    s[0, 1:] = 1
    s[1:, 0] = -1
    s[1:, 1:] = _jacobsthal(q)
    return np.eye(q + 1, dtype=np.int64) + s


def paley_ii(q: int) -> np.ndarray:
    """Paley construction II, q prime, q = 1 (mod 4): order 2 (q + 1)."""
    assert q % 4 == 1
    s = np.zeros((q + 1, q + 1), dtype=np.int64)
    s[0, 1:] = 1
    s[1:, 0] = 1
    s[1:, 1:] = _jacobsthal(q)
    return np.kron(s, np.array([[1, 1], [1, -1]])) + np.kron(np.eye(q + 1, dtype=np.int64),
                                                            np.array([[1, -1], [-1, -1]]))


def construct_bases() -> dict[int, np.ndarray]:
    h20 = paley_i(19)
    return {
        1: np.ones((1, 1), dtype=np.int64),
        12: paley_i(11),
        20: h20,
        28: paley_ii(13),
        40: np.kron(np.array([[1, 1], [1, -1]]), h20),
    }


def format_bases(bases: dict[int, np.ndarray]) -> str:
    lines = [
        "# mq_deploy Hadamard base matrices: the one definition shared by the CUDA kernel",
        "# (embedded at build time by plugins/hadamard/embed_bases.cmake) and the Python transforms.",
        "# Format: a line 'order <m>', then m rows of m characters, '+' = +1, '-' = -1.",
        "# Every block satisfies H H^T = m I. H_n = kron(H_m, Sylvester_{n/m}) / sqrt(n).",
        "# Constructions: 12 = Paley I (q=11), 20 = Paley I (q=19), 28 = Paley II (q=13),",
        "# 40 = kron([[1,1],[1,-1]], H_20). Regenerate: python plugins/hadamard/hadamard_bases.py --write",
    ]
    for m in sorted(bases):
        lines.append(f"order {m}")
        lines.extend("".join("+" if v > 0 else "-" for v in row) for row in bases[m])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {BASES_FILE.name}")
    args = parser.parse_args()
    text = format_bases(construct_bases())
    if args.write:
        BASES_FILE.write_text(text, encoding="ascii")
        print(f"wrote {BASES_FILE}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
