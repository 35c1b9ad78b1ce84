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


def label_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) of the true classes: logits [n, classes], labels [n]."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-np.take_along_axis(log_probs, np.asarray(labels)[:, None], -1).mean())


def channel_scale_error(ours: np.ndarray, ref: np.ndarray, floor: float = 1e-2) -> tuple[float, int]:
    """(α_c, c) for the channel c whose α_c is farthest from 1, over the channels (axis 1) of a [batch, channels, ...] tensor,
    with α_c = <ours_c, ref_c> / <ref_c, ref_c> the least-squares scale of channel c. Channels whose
    RMS is below `floor` times the tensor's are left out (their ratio is noise). A channel computed
    with a wrong scale shows its exact factor; rounding and INT8 tie flips scatter and mostly cancel."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    axes = tuple(i for i in range(ref.ndim) if i != 1)
    sab, sbb = (ours * ref).sum(axis=axes), (ref * ref).sum(axis=axes)
    count = ref.size / ref.shape[1]
    rms, total = np.sqrt(sbb / count), np.sqrt((ref * ref).mean())
    alpha = np.where(rms > floor * total, sab / np.maximum(sbb, np.finfo(np.float64).tiny), 1.0)
    worst = int(np.argmax(np.abs(alpha - 1)))
    return float(alpha[worst]), worst
