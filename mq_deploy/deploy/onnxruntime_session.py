"""An export set in ONNX Runtime (CPU): the prefill graph and the decode graph of a manifest, numpy
in and out, with the one set of session options every ONNX Runtime run of this package uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MQDeployError
from .manifest import Manifest
from .session import Session


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


def onnxruntime_session(model, providers=("CPUExecutionProvider",), lean: bool = False):
    """An InferenceSession (onnxruntime_session_options()) on a path or serialized ModelProto, or one
    clear error without onnxruntime. The one ONNX Runtime session factory of the package.

    lean=True, for one short run (the export's probe): no graph rewrites and no memory arena. The
    basic level's constant folding turns every DequantizeLinear of a weight into a float copy of it
    (2 bytes a parameter at FP16, 5.4 GB for mamba-2.8b, held for the session), and the arena keeps
    every dequantized weight of the run; lean, each is computed when its node runs and freed after."""
    ort = _import_onnxruntime()
    options = onnxruntime_session_options()
    if lean:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=list(providers))


class OnnxruntimeSession(Session):
    """The graphs of the export set that `onnx_path` belongs to. decode=False opens the prefill
    graph only (a set exported with --no-decode, or a comparison that needs no decode)."""

    def __init__(self, onnx_path, name: str = "onnxruntime", decode: bool = True, manifest: Manifest | None = None):
        self.name = name
        manifest = manifest or Manifest.load(onnx_path)
        first = manifest.graph_of(onnx_path)
        paths = {first.kind: first.path}
        if decode and first.kind == "prefill":
            paths["decode"] = manifest.graph("decode").path
        self._sessions = {}
        for kind, path in paths.items():
            if not Path(path).is_file():
                raise MQDeployError(f"{path} (the {kind} graph) does not exist; re-export with `mq-deploy export`")
            try:
                self._sessions[kind] = onnxruntime_session(path)
            except (MQDeployError, MemoryError):       # onnxruntime missing; out of memory: as they are
                raise
            except Exception as e:  # noqa: BLE001 - ONNX Runtime's errors are plain Exception subclasses
                lines = [line for line in str(e).strip().splitlines() if line.strip()]
                raise MQDeployError(f"ONNX Runtime cannot load {path} (the {kind} graph): "
                                    f"{lines[-1] if lines else type(e).__name__}; `mq-deploy check --onnx "
                                    f"{onnx_path}` says whether it changed since export; re-export it") from None

    def run(self, graph: str, feeds: dict) -> dict:
        if graph not in self._sessions:
            raise MQDeployError(f"this ONNX Runtime session has no {graph} graph")
        session = self._sessions[graph]
        names = [o.name for o in session.get_outputs()]
        feeds = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in feeds.items()}
        return dict(zip(names, session.run(names, feeds)))
