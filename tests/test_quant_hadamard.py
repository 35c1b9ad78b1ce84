"""Hadamard matrices of Mamba sizes, the online HadamardRotation, the KLT·H rotation and the
SmoothQuant scale formula: the building blocks of the exact transforms."""

from __future__ import annotations

import math

import pytest
import torch

from mq_deploy.quant.transforms import (HadamardRotation, conv_channel_absmax, hadamard_factors,
                                        hadamard_matrix, klt_basis, klt_hadamard_rotation, load_hadamard_bases,
                                        random_signs, signed_hadamard_matrix, smoothquant_scales,
                                        weight_input_absmax)
from mq_deploy.quant.transforms.hadamard import BASES_FILE

# Model widths (768 .. 5120), d_inner and dt_rank sizes (48, 160), the base orders themselves.
SIZES = [1, 12, 20, 28, 40, 48, 96, 160, 192, 384, 768, 1536, 2560, 4096, 5120]


def sylvester_by_popcount(p: int) -> torch.Tensor:
    """S[i, j] = (-1)^popcount(i & j): the Sylvester matrix, built without any recursion or kron."""
    return torch.tensor([[(-1.0) ** bin(i & j).count("1") for j in range(p)] for i in range(p)],
                        dtype=torch.float64)


def raw_bases_from_file() -> dict[int, torch.Tensor]:
    blocks = {}
    lines = [l.strip() for l in BASES_FILE.read_text().splitlines() if l.strip() and not l.startswith("#")]
    for i, line in enumerate(lines):
        if line.startswith("order"):
            m = int(line.split()[1])
            rows = lines[i + 1:i + 1 + m]
            blocks[m] = torch.tensor([[1.0 if c == "+" else -1.0 for c in row] for row in rows], dtype=torch.float64)
    return blocks


# ------------------------------------------------------------------------------------- base matrices

def test_bases_file_defines_the_base_orders_as_hadamard_matrices():
    bases = load_hadamard_bases()
    assert sorted(bases) == [1, 12, 20, 28, 40]
    raw = raw_bases_from_file()
    for m, base in bases.items():
        assert base.dtype == torch.int8 and base.shape == (m, m)
        assert torch.equal(base.double(), raw[m])
        assert torch.equal(base.long() @ base.long().T, m * torch.eye(m, dtype=torch.long))


def test_load_hadamard_bases_returns_copies():
    load_hadamard_bases()[12].fill_(0)
    assert load_hadamard_bases()[12].abs().min() == 1


@pytest.mark.parametrize("n, factors", [(1, (1, 0)), (2, (1, 1)), (12, (12, 0)), (48, (12, 2)), (160, (40, 2)),
                                        (80, (40, 1)), (40, (40, 0)), (56, (28, 1)), (768, (12, 6)),
                                        (1536, (12, 7)), (2560, (40, 6)), (5120, (40, 7)), (4096, (1, 12)),
                                        (320, (40, 3))])
def test_hadamard_factors_takes_the_largest_base(n, factors):
    assert hadamard_factors(n) == factors


@pytest.mark.parametrize("n", [0, -12, 3, 36, 100, 3000, 24.0, "768"])
def test_unsupported_size_is_a_clear_error(n):
    with pytest.raises(ValueError, match=r"supported sizes are m \* 2\^k with m in \[1, 12, 20, 28, 40\]"):
        hadamard_factors(n)
    with pytest.raises(ValueError, match="supported sizes"):
        hadamard_matrix(n)


# ------------------------------------------------------------------------------------- H_n

@pytest.mark.parametrize("n", SIZES)
def test_hadamard_matrix_is_orthogonal_with_flat_entries(n):
    h = hadamard_matrix(n)
    assert h.dtype == torch.float64 and h.shape == (n, n)
    assert (h.abs() - 1 / math.sqrt(n)).abs().max().item() < 1e-15
    # Every row against every row up to 1536; beyond, 128 sampled rows (a full n^3 product takes seconds).
    rows = torch.arange(n) if n <= 1536 else torch.randperm(n, generator=torch.Generator().manual_seed(n))[:128]
    expected = torch.zeros(len(rows), n, dtype=torch.float64)
    expected[torch.arange(len(rows)), rows] = 1
    torch.testing.assert_close(h[rows] @ h.T, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m, k", [(1, 0), (1, 6), (12, 0), (12, 3), (20, 0), (28, 1), (28, 4), (40, 3), (12, 6)])
def test_hadamard_matrix_is_kron_of_file_base_and_sylvester(m, k):
    n = m * 2 ** k
    assert hadamard_factors(n) == (m, k)
    expected = torch.kron(raw_bases_from_file()[m], sylvester_by_popcount(2 ** k)) / math.sqrt(n)
    torch.testing.assert_close(hadamard_matrix(n), expected, rtol=0, atol=1e-15)
    assert hadamard_matrix(n, dtype=torch.float32).dtype == torch.float32


def test_random_signs_are_reproducible_plus_minus_one():
    a, b = random_signs(768, seed=10), random_signs(768, seed=10)
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(a, random_signs(768, seed=11))
    assert random_signs(12, 0, torch.float64).dtype == torch.float64


# ------------------------------------------------------------------------------------- online rotation

@pytest.mark.parametrize("n", [1, 12, 48, 160, 192, 384, 768, 1536, 2560, 4096, 5120])
def test_hadamard_rotation_is_x_diag_signs_h(n):
    signs = random_signs(n, seed=n)
    x = torch.randn(2, 3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dense = signs.double()[:, None] * hadamard_matrix(n)      # diag(signs)·H
    assert (HadamardRotation(signs)(x) - x @ dense).abs().max().item() < 1e-12
    assert torch.equal(signed_hadamard_matrix(signs), dense)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_hadamard_rotation_keeps_the_input_dtype(dtype, tol):
    signs = random_signs(384, seed=1)
    x = torch.randn(4, 384, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = HadamardRotation(signs)(x.to(dtype))
    assert y.dtype == dtype
    torch.testing.assert_close(y.double(), (x.to(dtype).double() * signs.double()) @ hadamard_matrix(384),
                               rtol=tol, atol=tol)


def test_hadamard_rotation_persists_only_its_signs():
    rotation = HadamardRotation(random_signs(48, seed=0))
    assert list(rotation.state_dict()) == ["signs"]
    assert "48 (12*2^2)" in repr(rotation)


def test_hadamard_rotation_rejects_bad_signs_and_inputs():
    with pytest.raises(ValueError, match="±1"):
        HadamardRotation(torch.full((12,), 0.5))
    with pytest.raises(ValueError, match="supported sizes"):
        HadamardRotation(torch.ones(36))
    with pytest.raises(ValueError, match="last dim 24"):
        HadamardRotation(torch.ones(12))(torch.zeros(2, 24))


# ------------------------------------------------------------------------------------- KLT

def skewed_activations(n: int = 48, tokens: int = 4000) -> torch.Tensor:
    """Correlated channels with scales over three decades and one outlier channel, as in Mamba."""
    g = torch.Generator().manual_seed(5)
    mix = torch.randn(n, n, dtype=torch.float64, generator=g) * torch.logspace(-1.5, 1.5, n, dtype=torch.float64)
    x = torch.randn(tokens, n, dtype=torch.float64, generator=g) @ mix
    x[:, 7] += 40 * torch.randn(tokens, dtype=torch.float64, generator=g)
    return x + 3.0   # a non-zero mean: the covariance is centred


def test_klt_basis_is_sorted_sign_fixed_eigenbasis():
    cov = torch.cov(skewed_activations().T)
    basis = klt_basis(cov)
    torch.testing.assert_close(basis.T @ basis, torch.eye(48, dtype=torch.float64), rtol=0, atol=1e-12)
    diag = basis.T @ cov @ basis
    eigenvalues = torch.diagonal(diag)
    torch.testing.assert_close(diag, torch.diag(eigenvalues), rtol=0, atol=1e-9 * eigenvalues.max().item())
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all()
    pivots = basis.gather(0, basis.abs().argmax(dim=0)[None, :])
    assert (pivots > 0).all()
    assert torch.equal(klt_basis(cov.float()), klt_basis(cov.float()))


def test_klt_hadamard_equalizes_channel_variances_and_plain_hadamard_does_not():
    x = skewed_activations()
    cov = torch.cov(x.T)
    rotation = klt_hadamard_rotation(cov, seed=3)
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(48, dtype=torch.float64), rtol=0, atol=1e-12)
    mean_eigenvalue = torch.linalg.eigvalsh(cov).mean()
    variances = torch.var(x @ rotation, dim=0)
    assert ((variances - mean_eigenvalue).abs().max() / mean_eigenvalue).item() < 1e-10
    plain = torch.var(x @ signed_hadamard_matrix(random_signs(48, seed=3)), dim=0)
    assert (plain.max() / plain.min()).item() > 1.5


def test_klt_rejects_bad_covariances():
    with pytest.raises(ValueError, match="square"):
        klt_basis(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="NaN"):
        klt_basis(torch.full((4, 4), float("nan")))
    with pytest.raises(ValueError, match="supported sizes"):
        klt_hadamard_rotation(torch.eye(36), seed=0)


# ------------------------------------------------------------------------------------- SmoothQuant scales

def test_smoothquant_scales_formula_clamp_and_zero_channels():
    act = torch.tensor([4.0, 9.0, 0.0, 5.0, 1e-8])
    weight = torch.tensor([1.0, 4.0, 2.0, 0.0, 1.0])
    s = smoothquant_scales(act, weight)
    assert s.dtype == torch.float64
    torch.testing.assert_close(s, torch.tensor([2.0, 1.5, 1.0, 1.0, 1e-2], dtype=torch.float64))
    s = smoothquant_scales(act, weight, alpha=0.75, min_scale=1e-5)
    torch.testing.assert_close(s[:2], torch.tensor([4.0 ** 0.75, 9.0 ** 0.75 / 4.0 ** 0.25], dtype=torch.float64))
    assert torch.isfinite(smoothquant_scales(torch.zeros(3), torch.zeros(3))).all()


def test_smoothquant_scales_rejects_bad_inputs():
    with pytest.raises(ValueError, match="equal length"):
        smoothquant_scales(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="alpha"):
        smoothquant_scales(torch.ones(3), torch.ones(3), alpha=1.5)
    with pytest.raises(ValueError, match="finite"):
        smoothquant_scales(torch.tensor([1.0, -1.0]), torch.ones(2))


def test_weight_maxima_per_input_channel():
    weight = torch.tensor([[1.0, -5.0, 0.0], [-2.0, 3.0, 0.5]])
    torch.testing.assert_close(weight_input_absmax(weight), torch.tensor([2.0, 5.0, 0.5], dtype=torch.float64))
    conv = torch.tensor([[[1.0, -3.0, 2.0]], [[0.5, 0.0, -0.25]]])
    torch.testing.assert_close(conv_channel_absmax(conv), torch.tensor([3.0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[out, in\]"):
        weight_input_absmax(conv)
    with pytest.raises(ValueError, match="depthwise"):
        conv_channel_absmax(weight)
