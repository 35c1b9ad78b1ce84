"""The probe run every export (and `mq-deploy check`) ends with: ONNX Runtime runs the prefill graph
on a few tokens, then one decode step from its state, and every logit must be finite. Finite
weights can still overflow FP16 inside the graph; a graph that returns NaN is not an export."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MQDeployError

PROBE_TOKENS = 8


def _import_onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise MQDeployError("running ONNX graphs needs onnxruntime: pip install 'mq-deploy[onnx]'") from None
    return ort


def onnxruntime_session_options():
    """Session options for every ONNX Runtime run of an exported graph: ORT_ENABLE_BASIC.

    ONNX Runtime here is the reference for what the graph computes (the export's probe, the subject or
    the same-graph reference of `validate`, the codes check, `bench`, the tests). Its basic level only
    makes rewrites that keep the graph's arithmetic (constant folding, redundant-node removal). The
    extended level replaces Q/DQ -> MatMul by integer kernels that do not compute what the graph says:
    QuantizeLinear + MatMulIntegerToFloat with the INT8 activations shifted to UINT8, which on x86
    CPUs with AVX2 but no VNNI (this project's machines) sums pairs of u8*s8 products in saturating
    int16 (VPMADDUBSW) -- 6 % relative error at an in_proj of the test model --, and a weight-only
    DQ -> MatMul by a dynamically quantized MatMul. docs/export.md, "ONNX Runtime session options".
    """
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3          # errors only: our verdicts are the report, not ORT's warnings
    return options


def onnxruntime_session(model, providers=("CPUExecutionProvider",)):
    """An InferenceSession (onnxruntime_session_options()) on a path or serialized ModelProto, or one
    clear error without onnxruntime. The one session factory of the package."""
    ort = _import_onnxruntime()
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), onnxruntime_session_options(),
                                providers=list(providers))


def probe_ids(vocab_size: int) -> np.ndarray:
    """[1, PROBE_TOKENS] ids spread over the vocabulary (deterministic)."""
    return ((np.arange(PROBE_TOKENS, dtype=np.int64) * 7919 + 13) % vocab_size)[None]


def _run(session, feeds: dict) -> dict:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def probe_export(prefill: Path, decode: Path | None, vocab_size: int, precision: str,
                 aftermath: str = " (nothing was written)") -> None:
    """Raise one MQDeployError when the graphs produce NaN/inf logits on the probe input."""
    ids = probe_ids(vocab_size)
    try:
        outputs = {"prefill": _run(onnxruntime_session(prefill), {"input_ids": ids})}
        if decode is not None:
            carried = {k.replace("_out", ""): v for k, v in outputs["prefill"].items() if k != "logits"}
            outputs["decode"] = _run(onnxruntime_session(decode), {"input_ids": ids[:, -1:], **carried})
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
            raise MQDeployError(f"the exported {kind} graph produces NaN/inf logits on a probe input of {PROBE_TOKENS} "
                                f"tokens ({bad} of {logits.size} values) although the weights are finite; {hint}"
                                f"{aftermath}")
