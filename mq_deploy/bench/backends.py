"""What `bench` times, behind one interface: prefill(ids) -> outputs, decode(token, outputs) -> outputs.

Graph backends (ONNX Runtime, TensorRT) run the exported prefill graph and the single-token decode
graph, carrying each `*_out.<i>` state output into the decode input of the same name without `_out`
(docs/export.md). The torch backend runs MambaLM with its explicit MambaState.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import MQDeployError
from ..export.export_set import decode_path
from ..models import MambaLM


def carry_state(outputs: dict) -> dict:
    """{'conv_state_out.0': v, ...} -> {'conv_state.0': v, ...}; logits dropped."""
    return {k.replace("_out", ""): v for k, v in outputs.items() if k != "logits"}


class GraphBackend:
    def __init__(self, name: str, run_prefill, run_decode, synchronize=lambda: None, to_ids=lambda ids: ids):
        self.name, self._prefill, self._decode = name, run_prefill, run_decode
        self.synchronize, self._to_ids = synchronize, to_ids

    def prefill(self, ids: np.ndarray) -> dict:
        return self._prefill({"input_ids": self._to_ids(ids)})

    def decode(self, token: np.ndarray, outputs: dict) -> dict:
        return self._decode({"input_ids": self._to_ids(token), **carry_state(outputs)})


def _graph_pair(onnx_path, decode: bool) -> tuple[Path, Path]:
    prefill, decode_graph = Path(onnx_path), decode_path(onnx_path)
    if not prefill.is_file():
        raise MQDeployError(f"{prefill} does not exist; export it with `mq-deploy export`")
    if decode and not decode_graph.is_file():
        raise MQDeployError(f"{decode_graph} (the decode graph) does not exist; export without --no-decode, "
                            "or bench with --decode-steps 0")
    return prefill, decode_graph


def onnxruntime_backend(onnx_path, name: str, decode: bool = True) -> GraphBackend:
    from ..validate.onnxruntime_check import onnxruntime_session
    prefill_path, decode_graph = _graph_pair(onnx_path, decode)

    def runner(path):
        session = onnxruntime_session(path)
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: dict(zip(names, session.run(names, feeds)))
    return GraphBackend(name, runner(prefill_path), runner(decode_graph) if decode else None)


def tensorrt_backend(plan_path, name: str, plugins=None, decode: bool = True) -> GraphBackend:
    """Device-resident: feeds and outputs stay torch CUDA tensors, so a decode step does not copy the
    state through the host. Each engine runs on its runner's own stream."""
    from ..trt.engine_files import decode_engine_path
    from ..trt.runtime import TrtEngineRunner
    plan = Path(plan_path)
    prefill = TrtEngineRunner(plan, plugins)
    run_decode = None
    if decode:
        decode_plan = decode_engine_path(plan)
        if not decode_plan.is_file():
            raise MQDeployError(f"{decode_plan} (the decode engine) does not exist; build without --no-decode, "
                                "or bench with --decode-steps 0")
        run_decode = TrtEngineRunner(decode_plan, plugins).run_device
    return GraphBackend(name, prefill.run_device, run_decode, synchronize=torch.cuda.synchronize,
                        to_ids=lambda ids: torch.as_tensor(ids, device="cuda"))


class TorchBackend:
    """Takes ownership of `model` (moved to `device` and cast to `dtype` in place)."""

    def __init__(self, model: MambaLM, name: str, dtype: torch.dtype, device: torch.device):
        self.name, self.device = name, device
        self.model = model.to(device, dtype).eval()

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def prefill(self, ids) -> dict:
        with torch.no_grad():
            logits, state = self.model(torch.as_tensor(ids, device=self.device), return_state=True)
        return {"logits": logits, "state": state}

    def decode(self, token, outputs: dict) -> dict:
        with torch.no_grad():
            logits, state = self.model(torch.as_tensor(token, device=self.device), state=outputs["state"],
                                       return_state=True)
        return {"logits": logits, "state": state}
