"""Polygraphy runners for what we compare: the torch model (ours), ONNX Runtime on a graph (our
own session, so its options are ours), and a TensorRT plan (mq_deploy.trt.runtime)."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner
from polygraphy.common import TensorMetadata

from ..models import MambaLM
from .onnxruntime_check import onnxruntime_session

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class TorchRunner(BaseRunner):
    """A MambaLM as a graph: input_ids in; logits (float32) and the per-layer states out, under the
    exported graphs' names and dtypes (conv state in the model dtype, SSM state float32)."""

    def __init__(self, model: MambaLM, precision: str = "fp32", device: str | torch.device = "cpu", name=None):
        super().__init__(name=name, prefix="torch-runner")
        self.model, self.dtype, self.device = model, TORCH_DTYPES[precision], torch.device(device)

    def activate_impl(self):
        # a copy: casting the caller's model to FP16 and back would round its weights
        same = self.dtype == torch.float32 and self.device.type == "cpu"
        self.active_model = self.model if same else copy.deepcopy(self.model).to(self.device, self.dtype)

    def get_input_metadata_impl(self):
        return TensorMetadata().add("input_ids", np.int64, (None, None))

    def infer_impl(self, feed_dict):
        ids = torch.from_numpy(np.asarray(feed_dict["input_ids"], np.int64)).to(self.device)
        start = time.perf_counter()
        with torch.no_grad():
            logits, state = self.active_model(ids, return_state=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.inference_time = time.perf_counter() - start
        out = {"logits": logits.float().cpu().numpy()}
        for i, (conv, ssm) in enumerate(zip(state.conv, state.ssm)):
            out[f"conv_state_out.{i}"] = conv.to(self.dtype).cpu().numpy()
            out[f"ssm_state_out.{i}"] = ssm.float().cpu().numpy()
        return out

    def deactivate_impl(self):
        del self.active_model


def onnxruntime_runner(onnx_path, name: str = "onnxruntime") -> OnnxrtRunner:
    return OnnxrtRunner(lambda: onnxruntime_session(onnx_path), name=name)
