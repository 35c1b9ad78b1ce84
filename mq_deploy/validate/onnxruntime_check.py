"""Run an exported graph in ONNX Runtime and compare its logits with the torch model it came from."""

from __future__ import annotations

import numpy as np
import torch

from ..export.probe import onnxruntime_session, onnxruntime_session_options  # noqa: F401 (the one factory)
from .metrics import logits_error


def torch_logits(torch_model, input_ids: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch_model(input_ids).double().numpy()


def compare_onnx_with_torch(onnx_path, torch_model, input_ids: torch.Tensor) -> dict:
    """Logits error of ONNX Runtime (CPU) against `torch_model` on the same token ids [b, L]."""
    session = onnxruntime_session(onnx_path)
    ours = session.run(["logits"], {"input_ids": input_ids.numpy().astype(np.int64)})[0]
    return logits_error(ours, torch_logits(torch_model, input_ids))
