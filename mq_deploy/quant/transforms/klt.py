"""KLT-enhanced rotation (MambaQuant §4): R = K·diag(signs)·H.

With C = K Λ Kᵀ the covariance of the activations X (eigenvectors as the columns of K), the rotated
activations X·R have covariance Rᵀ C R = Hᵀ D Λ D H (D = diag(signs)), whose diagonal is
Σ_j H_jl² λ_j = mean(λ) for every channel l, because every entry of H_n squares to 1/n. A plain
Hadamard gives (Hᵀ C H)_ll, which depends on l. Eigenvalue order does not matter for this property;
we sort anyway so the basis is reproducible.
"""

from __future__ import annotations

import torch

from .hadamard import random_signs, signed_hadamard_matrix

__all__ = ["klt_basis", "klt_hadamard_rotation"]


def klt_basis(cov: torch.Tensor) -> torch.Tensor:
    """Orthogonal K [n, n] (float64) with C = K·diag(λ)·Kᵀ, eigenvectors as columns sorted by
    descending eigenvalue, each column's sign fixed so that its largest-magnitude entry is positive
    (eigh's signs are arbitrary and may differ between platforms)."""
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"klt_basis: the covariance must be a square matrix, got shape {tuple(cov.shape)}")
    cov = cov.detach().to(torch.float64)
    if not torch.isfinite(cov).all():
        raise ValueError("klt_basis: the covariance has NaN or inf entries")
    _, vectors = torch.linalg.eigh((cov + cov.T) / 2)   # ascending eigenvalues
    vectors = vectors.flip(-1)
    pivot = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors.gather(0, pivot[None, :]))
    return vectors * signs


def klt_hadamard_rotation(cov: torch.Tensor, seed: int) -> torch.Tensor:
    """R = K·diag(signs)·H_n (float64, orthogonal): the KLT basis of cov followed by a random Hadamard
    with signs drawn from seed. n must be a supported Hadamard size."""
    hadamard = signed_hadamard_matrix(random_signs(cov.shape[-1], seed, torch.float64))  # size check first
    basis = klt_basis(cov)
    return basis @ hadamard.to(basis.device)
