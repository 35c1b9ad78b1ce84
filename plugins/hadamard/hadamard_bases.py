"""Generator of mq_deploy/quant/transforms/hadamard_bases.txt, the one definition of the Hadamard
base matrices (orders 1, 12, 20, 28, 40) shared by the CUDA kernel (embedded at build time by
embed_bases.cmake) and the Python transforms (mq_deploy.quant.transforms.hadamard, which reads it).

`python plugins/hadamard/hadamard_bases.py --write` regenerates the file from the standard
constructions below (Paley I for 12 and 20, Paley II for 28, Sylvester doubling of the order-20
matrix for 40); without --write it prints the text. tests/test_plugins_build.py checks that the file
is exactly this construction. Needs numpy only.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

BASES_FILE = pathlib.Path(__file__).resolve().parents[2] / "mq_deploy" / "quant" / "transforms" / "hadamard_bases.txt"


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
        "# (embedded at build time by plugins/hadamard/embed_bases.cmake) and the Python transforms",
        "# (mq_deploy/quant/transforms/hadamard.py).",
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
