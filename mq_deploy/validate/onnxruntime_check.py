"""Run an exported graph in ONNX Runtime and compare its logits with the torch model it came from."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MQDeployError


def compare_onnx_with_torch(onnx_path, torch_model, input_ids: torch.Tensor) -> dict:
    """Logits error of ONNX Runtime (CPU) against `torch_model` on the same token ids [b, L]."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MQDeployError("comparing with ONNX Runtime needs onnxruntime: pip install 'mq-deploy[onnx]'") from None
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ours = session.run(["logits"], {"input_ids": input_ids.numpy().astype(np.int64)})[0].astype(np.float64)
    with torch.no_grad():
        ref = torch_model(input_ids).double().numpy()
    diff = np.abs(ours - ref)
    cosine = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
    return {"max_abs": float(diff.max()), "relative": float(diff.max() / np.abs(ref).max()),
            "min_cosine": float(cosine.min()),
            "argmax_agreement": float((ours.argmax(-1) == ref.argmax(-1)).mean()), "tokens": int(ref.shape[0] * ref.shape[1])}
