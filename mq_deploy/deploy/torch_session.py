"""The PyTorch model as a session: the FP checkpoint, or an artifact's fake-quant model (or its
transformed FP model), in the graph's precision on a CPU or GPU, with the graphs' output names."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np
import torch

from ..errors import MQDeployError
from ..models import MambaLM
from ..models.mamba import MambaState
from ..quant.decode_form import as_decode_graph
from ..quant.modules import StaticActivationQuantizer
from .contract import IMAGES, INPUT_IDS, LOGITS, state_names
from .session import Session

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}


class TorchSession(Session):
    """`model` runs in `precision` on `device`. own=False (default) works on a copy, so casting to
    FP16 never rounds the caller's weights; own=True moves and casts the given model in place."""

    def __init__(self, model: MambaLM, precision: str = "fp32", device="cpu", name: str = "torch", own: bool = False):
        self.name, self.device, self.dtype = name, torch.device(device), DTYPES[precision]
        self.layers = model.config.num_hidden_layers
        param = next(model.parameters())
        if self.dtype == param.dtype and self.device == param.device:
            self.model = model.eval()       # as is: .to() would also round float64 buffers (quantizer scales)
        else:
            self.model = (model if own else copy.deepcopy(model)).to(self.device, self.dtype).eval()
        # a fake-quant model (its decode steps switch the linears' input quantizers off); looked up
        # once, not on every timed decode step
        self.fake_quant = any(isinstance(m, StaticActivationQuantizer) for m in self.model.modules())

    def _ids(self, ids) -> torch.Tensor:
        return torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids,
                               dtype=torch.long).to(self.device)

    def run(self, graph: str, feeds: dict) -> dict:
        if IMAGES in feeds:                 # a vision model: images in, class logits out
            with torch.no_grad():
                images = torch.as_tensor(np.asarray(feeds[IMAGES]) if not isinstance(feeds[IMAGES], torch.Tensor)
                                         else feeds[IMAGES])
                return {LOGITS: self.model(images.to(self.device, self.dtype)).float()}
        state = None
        if graph == "decode":
            names = [state_names(i) for i in range(self.layers)]
            state = MambaState([torch.as_tensor(feeds[n["conv_in"]]).to(self.device, self.dtype) for n in names],
                               [torch.as_tensor(feeds[n["ssm_in"]]).to(self.device, torch.float32) for n in names])
        # a decode step runs as the decode graph does (a fake-quant model's linear inputs unquantized:
        # export/linear_forms.py), so torch is the reference for each graph of the set
        decode_form = graph == "decode" and self.fake_quant
        with torch.no_grad(), (as_decode_graph(self.model) if decode_form else nullcontext()):
            logits, state = self.model(self._ids(feeds[INPUT_IDS]), state, return_state=True)
        out = {LOGITS: logits.float()}
        for i, (conv, ssm) in enumerate(zip(state.conv, state.ssm)):
            names = state_names(i)
            out[names["conv_out"]], out[names["ssm_out"]] = conv.to(self.dtype), ssm.float()
        return out

    def numpy(self, outputs: dict) -> dict:
        return {k: (v.float() if v.dtype == torch.bfloat16 else v).cpu().numpy() for k, v in outputs.items()}

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
