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
from ..export.manifest import decode_path
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


def _graph_pair(onnx_path) -> tuple[Path, Path]:
    prefill, decode = Path(onnx_path), decode_path(onnx_path)
    if not prefill.is_file():
        raise MQDeployError(f"{prefill} does not exist; export it with `mq-deploy export`")
    if not decode.is_file():
        raise MQDeployError(f"{decode} (the decode graph) does not exist; export without --no-decode")
    return prefill, decode


def onnxruntime_backend(onnx_path, name: str) -> GraphBackend:
    from ..validate.onnxruntime_check import onnxruntime_session
    prefill_path, decode_graph = _graph_pair(onnx_path)
    prefill, decode = onnxruntime_session(prefill_path), onnxruntime_session(decode_graph)

    def runner(session):
        names = [o.name for o in session.get_outputs()]
        return lambda feeds: dict(zip(names, session.run(names, feeds)))
    return GraphBackend(name, runner(prefill), runner(decode))


def tensorrt_backend(plan_path, name: str, plugins=None) -> GraphBackend:
    """Device-resident: feeds and outputs stay torch CUDA tensors, so a decode step does not copy the
    state through the host."""
    from ..trt.runtime import TrtEngineRunner
    plan = Path(plan_path)
    decode_plan = plan.with_name(f"{plan.stem}.decode{plan.suffix}")
    if not decode_plan.is_file():
        raise MQDeployError(f"{decode_plan} (the decode engine) does not exist; build without --no-decode")
    prefill, decode = TrtEngineRunner(plan, plugins), TrtEngineRunner(decode_plan, plugins)
    return GraphBackend(name, prefill.run_device, decode.run_device, synchronize=torch.cuda.synchronize,
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
