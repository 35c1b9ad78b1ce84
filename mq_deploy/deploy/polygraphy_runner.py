"""Any session as a Polygraphy runner, so `Comparator.run` compares torch, ONNX Runtime and
TensorRT through one code path: `SessionRunner(lambda: OnnxruntimeSession(path), name="ort")`.
The session is opened when the runner is activated (Polygraphy's lazy-loader style) and closed
when it is deactivated; `infer` is a prefill (a vision model's `images` in: its one graph),
outputs as host numpy arrays under the graphs' names."""

from __future__ import annotations

import time

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from .contract import IMAGES, INPUT_IDS


class SessionRunner(BaseRunner):
    def __init__(self, open_session, name: str | None = None, images: bool = False):
        super().__init__(name=name, prefix="mq-deploy-session")
        self._open = open_session
        self.images = images

    def activate_impl(self):
        self.session = self._open()

    def get_input_metadata_impl(self):
        if self.images:
            return TensorMetadata().add(IMAGES, np.float32, (None, None, None, None))
        return TensorMetadata().add(INPUT_IDS, np.int64, (None, None))

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        if self.images:
            outputs = self.session.run("prefill", {IMAGES: np.asarray(feed_dict[IMAGES], np.float32)})
        else:
            outputs = self.session.prefill(np.asarray(feed_dict[INPUT_IDS], np.int64))
        result = self.session.numpy(outputs)
        self.inference_time = time.perf_counter() - start
        return result

    def deactivate_impl(self):
        self.session.close()
        del self.session
