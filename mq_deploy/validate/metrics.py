"""Logits error measures shared by every comparison (ONNX Runtime, TensorRT, torch)."""

from __future__ import annotations

import numpy as np


def logits_error(ours: np.ndarray, ref: np.ndarray) -> dict:
    """max abs, relative (max abs / max |ref|), min cosine over positions, argmax agreement."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"logits shapes differ: {ours.shape} vs {ref.shape}")
    diff = np.abs(ours - ref)
    norms = np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1)
    cosine = (ours * ref).sum(-1) / np.maximum(norms, np.finfo(np.float64).tiny)
    return {"max_abs": float(diff.max()), "relative": float(diff.max() / max(np.abs(ref).max(), 1e-300)),
            "min_cosine": float(cosine.min()),
            "argmax_agreement": float((ours.argmax(-1) == ref.argmax(-1)).mean()),
            "tokens": int(np.prod(ref.shape[:-1]))}


def next_token_nll(logits: np.ndarray, input_ids: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of input_ids[:, 1:] under logits[:, :-1]."""
    logits = np.asarray(logits, np.float64)[:, :-1]
    targets = np.asarray(input_ids)[:, 1:]
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-np.take_along_axis(log_probs, targets[..., None], -1).mean())
