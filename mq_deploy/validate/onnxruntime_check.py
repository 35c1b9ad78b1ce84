"""Run an exported graph in ONNX Runtime and compare its logits with the torch model it came from."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MQDeployError
from .metrics import logits_error


def _import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise MQDeployError("running ONNX graphs needs onnxruntime: pip install 'mq-deploy[onnx]'") from None
    return ort


def onnxruntime_session_options():
    """Session options for every ONNX Runtime run of an exported graph: ORT_ENABLE_BASIC.

    ONNX Runtime here is the reference for what the graph computes (the subject or the same-graph
    reference of `validate`, the codes check, `bench`, the tests). Its basic level only makes rewrites
    that keep the graph's arithmetic (constant folding, redundant-node removal). The extended level
    replaces Q/DQ -> MatMul by integer kernels that do not compute what the graph says:
    QuantizeLinear + MatMulIntegerToFloat with the INT8 activations shifted to UINT8, which on x86
    CPUs with AVX2 but no VNNI (this project's machines) sums pairs of u8*s8 products in saturating
    int16 (VPMADDUBSW) -- 6 % relative error at an in_proj of the test model --, and a weight-only
    DQ -> MatMul by a dynamically quantized MatMul. docs/export.md, "ONNX Runtime session options".
    """
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return options


def onnxruntime_session(model, providers=("CPUExecutionProvider",)):
    """An InferenceSession (onnxruntime_session_options()) on a path or serialized ModelProto, or one
    clear error without onnxruntime."""
    ort = _import_onnxruntime()
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), onnxruntime_session_options(),
                                providers=list(providers))


def torch_logits(torch_model, input_ids: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch_model(input_ids).double().numpy()


def compare_onnx_with_torch(onnx_path, torch_model, input_ids: torch.Tensor) -> dict:
    """Logits error of ONNX Runtime (CPU) against `torch_model` on the same token ids [b, L]."""
    session = onnxruntime_session(onnx_path)
    ours = session.run(["logits"], {"input_ids": input_ids.numpy().astype(np.int64)})[0]
    return logits_error(ours, torch_logits(torch_model, input_ids))
