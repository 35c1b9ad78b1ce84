"""The probe run every export (and `mq-deploy check`) ends with: ONNX Runtime runs the prefill graph
on a few tokens, then one decode step from its state, and every logit must be finite. Finite
weights can still overflow FP16 inside the graph; a graph that returns NaN is not an export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..deploy.contract import carry
from ..deploy.onnxruntime_session import onnxruntime_session
from ..errors import MQDeployError

PROBE_TOKENS = 8


def probe_ids(vocab_size: int) -> np.ndarray:
    """[1, PROBE_TOKENS] ids spread over the vocabulary (deterministic)."""
    return ((np.arange(PROBE_TOKENS, dtype=np.int64) * 7919 + 13) % vocab_size)[None]


def _run(session, feeds: dict) -> dict:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def probe_images(shape) -> np.ndarray:
    """[1, C, H, W] deterministic values in the range of normalized images (about -2 .. 2.6)."""
    count = int(np.prod(shape))
    return (((np.arange(count, dtype=np.int64) * 7919 + 13) % 1000) / 1000 * 4.6 - 2.0).astype(np.float32).reshape(
        (1, *shape))


def probe_export(prefill: Path, decode: Path | None, vocab_size: int | None, precision: str,
                 aftermath: str = " (nothing was written)", image_shape=None) -> None:
    """Raise one MQDeployError when the graphs produce NaN/inf logits on the probe input: a few
    tokens (then one decode step), or for a vision graph (image_shape (C, H, W)) one image."""
    try:
        if image_shape is not None:
            outputs = {"prefill": _run(onnxruntime_session(prefill, lean=True), {"images": probe_images(image_shape)})}
            what = "a probe image"
        else:
            ids = probe_ids(vocab_size)
            what = f"a probe input of {PROBE_TOKENS} tokens"
            outputs = {"prefill": _run(onnxruntime_session(prefill, lean=True), {"input_ids": ids})}
            if decode is not None:
                carried = carry(outputs["prefill"])
                outputs["decode"] = _run(onnxruntime_session(decode, lean=True), {"input_ids": ids[:, -1:], **carried})
    except MQDeployError:
        raise
    except Exception as e:  # noqa: BLE001 - ORT's own exception types
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise MQDeployError(f"ONNX Runtime cannot run the exported graph on a probe input "
                            f"({lines[-1] if lines else type(e).__name__}){aftermath}") from None
    for kind, out in outputs.items():
        logits = out["logits"]
        bad = int((~np.isfinite(logits)).sum())
        if bad:
            hint = ("an activation overflows FP16 (its range ends at 65504): export with --precision fp32"
                    if precision == "fp16" else "check the model's weights and activations")
            raise MQDeployError(f"the exported {kind} graph produces NaN/inf logits on {what} "
                                f"({bad} of {logits.size} values) although the weights are finite; {hint}"
                                f"{aftermath}")
