"""Normalized Hadamard matrices of the sizes Mamba models use, and the online rotation module.

    H_n = kron(B_m, S_{2^k}) / sqrt(n),    n = m * 2^k

B_m is a base Hadamard matrix read from `hadamard_bases.txt` (the one definition shared with the
CUDA kernel), S_p the Sylvester matrix (S_1 = [1], S_2p = [[S_p, S_p], [S_p, -S_p]]). H_n is
symmetric only when m = 1, orthogonal always: H_n H_nᵀ = I. A *random* Hadamard rotation is
diag(signs)·H_n with random ±1 signs (QuaRot, MambaQuant).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["BASE_ORDERS", "load_hadamard_bases", "hadamard_factors", "hadamard_matrix", "hadamard_kron_pair", "random_signs",
           "signed_hadamard_matrix", "HadamardRotation"]

BASES_FILE = Path(__file__).with_name("hadamard_bases.txt")
# Tried largest first; the CUDA kernel (plugins/hadamard/hadamard_size.h) factors sizes the same way.
BASE_ORDERS = (40, 28, 20, 12, 1)


def _parse_bases(text: str) -> dict[int, torch.Tensor]:
    bases: dict[int, list[list[int]]] = {}
    order = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("order "):
            order = int(line.split()[1])
            bases[order] = []
        elif order is None or len(line) != order or set(line) - {"+", "-"}:
            raise ValueError(f"{BASES_FILE.name} line {lineno}: expected a row of {order} '+'/'-', got {raw!r}")
        else:
            bases[order].append([1 if ch == "+" else -1 for ch in line])
    matrices = {}
    for m, rows in bases.items():
        if len(rows) != m:
            raise ValueError(f"{BASES_FILE.name}: order {m} has {len(rows)} rows")
        matrix = torch.tensor(rows, dtype=torch.int8)
        gram = matrix.long() @ matrix.long().T
        if not torch.equal(gram, m * torch.eye(m, dtype=torch.long)):
            raise ValueError(f"{BASES_FILE.name}: the order-{m} block is not a Hadamard matrix")
        matrices[m] = matrix
    return matrices


@functools.lru_cache(maxsize=1)
def _cached_bases() -> dict[int, torch.Tensor]:
    return _parse_bases(BASES_FILE.read_text(encoding="ascii"))


def load_hadamard_bases() -> dict[int, torch.Tensor]:
    """{order m: B_m as an int8 ±1 matrix} for every base order in hadamard_bases.txt (validated:
    B_m B_mᵀ = m·I). Parsed once; each call returns fresh copies."""
    return {m: b.clone() for m, b in _cached_bases().items()}


def hadamard_factors(n: int) -> tuple[int, int]:
    """(m, k) with n = m·2^k and m the largest of BASE_ORDERS for which n/m is a power of two."""
    if isinstance(n, int) and n >= 1:
        for m in BASE_ORDERS:
            if n % m == 0 and (n // m) & (n // m - 1) == 0:
                return m, (n // m).bit_length() - 1
    raise ValueError(f"no Hadamard matrix of size {n!r}: supported sizes are m * 2^k with m in "
                     f"{sorted(BASE_ORDERS)} (e.g. 768 = 12*64, 2560 = 40*64, 160 = 40*4, 4096 = 2^12)")


def _sylvester(p: int, dtype: torch.dtype) -> torch.Tensor:
    s = torch.ones(1, 1, dtype=dtype)
    h2 = torch.tensor([[1, 1], [1, -1]], dtype=dtype)
    while s.shape[0] < p:
        s = torch.kron(h2, s)
    return s


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The orthonormal H_n = kron(B_m, S_{2^k}) / sqrt(n), built in float64 and cast to dtype."""
    m, k = hadamard_factors(n)
    base = _cached_bases()[m].to(torch.float64)
    return (torch.kron(base, _sylvester(2 ** k, torch.float64)) / math.sqrt(n)).to(dtype)


def hadamard_kron_pair(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, R), int8 ±1 matrices with kron(L, R) / sqrt(n) = hadamard_matrix(n) and R the Sylvester
    matrix of the largest power of two <= sqrt(n) that divides n / m (so R = [1] for n = 40). For x viewed as [..., n / |R|, |R|], x·H_n is
    Lᵀ·X·R / sqrt(n): two products with ~sqrt(n)-sized constants instead of one n×n (both ONNX forms
    of the transform, export/hadamard_node.py: n×n constants at every call site overflowed ONNX
    Runtime's function-inlining limit at d_inner 5120 and 64 layers)."""
    m, k = hadamard_factors(n)
    k_right = min(k, (n.bit_length() - 1) // 2)
    left = torch.kron(_cached_bases()[m].to(torch.int64), _sylvester(2 ** (k - k_right), torch.int64))
    return left.to(torch.int8), _sylvester(2 ** k_right, torch.int64).to(torch.int8)


def random_signs(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """n random ±1 values, reproducible from seed (a private torch.Generator: global RNG untouched)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, (n,), generator=generator) * 2 - 1).to(dtype)


def signed_hadamard_matrix(signs: torch.Tensor) -> torch.Tensor:
    """diag(signs)·H_n in float64: the dense matrix of a random Hadamard rotation."""
    _check_signs(signs)
    n = signs.numel()
    return signs.detach().to(torch.float64, copy=True).cpu()[:, None] * hadamard_matrix(n)


def _check_signs(signs: torch.Tensor) -> None:
    if signs.dim() != 1 or not torch.all(signs.abs() == 1):
        raise ValueError(f"Hadamard signs must be a 1-D tensor of ±1, got shape {tuple(signs.shape)}")
    hadamard_factors(signs.numel())


class HadamardRotation(nn.Module):
    """x -> x·diag(signs)·H_n over the last dim, in x's dtype (the HadamardTransform op contract,
    plugins/hadamard/README.md).

    Computed without the dense n×n matrix: x is viewed as [..., m, 2^k], the Sylvester factor is
    applied by k butterfly stages and the base by one [m, m] product, O(n·(k + m)) per row. Half
    precision inputs are transformed in float32 (as the kernel does) and cast back.
    """

    def __init__(self, signs: torch.Tensor):
        super().__init__()
        _check_signs(signs)
        self.size = signs.numel()
        self.base_order, self.log2_pow2 = hadamard_factors(self.size)
        self.register_buffer("signs", signs.detach().to(torch.float32, copy=True))
        # Derived from the size: rebuilt on load, so not part of the state_dict.
        self.register_buffer("base", _cached_bases()[self.base_order].to(torch.float32), persistent=False)

    def extra_repr(self) -> str:
        return f"size={self.size} ({self.base_order}*2^{self.log2_pow2})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            raise ValueError(f"HadamardRotation of size {self.size} got an input with last dim {x.shape[-1]}")
        compute = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        lead, m, p = x.shape[:-1], self.base_order, 2 ** self.log2_pow2
        u = (x.to(compute) * self.signs.to(compute)).reshape(-1, m, p)
        h = 1
        while h < p:  # butterflies: u @ S_p along the last axis, one bit of the index per stage
            pairs = u.reshape(-1, m, p // (2 * h), 2, h)
            a, b = pairs[:, :, :, 0], pairs[:, :, :, 1]
            u = torch.stack((a + b, a - b), dim=3).reshape(-1, m, p)
            h *= 2
        # y[c*p + d] = sum_a B[a, c] u[a, d]: the base acts on the high part of the index.
        y = torch.matmul(self.base.to(compute).T, u) / math.sqrt(self.size)
        return y.reshape(*lead, self.size).to(x.dtype)
