"""Any session as a Polygraphy runner, so `Comparator.run` compares torch, ONNX Runtime and
TensorRT through one code path: `SessionRunner(lambda: OnnxruntimeSession(path), name="ort")`.
The session is opened when the runner is activated (Polygraphy's lazy-loader style) and closed
when it is deactivated; `infer` is a prefill (a vision model's `images` in: its one graph),
outputs as host numpy arrays under the graphs' names. With `decode_from=P` it runs the decode graph
instead: a prefill of the first P tokens, then one decode step per remaining token (the state carried
from step to step), and returns the decode steps' logits (positions P onwards: the prefill's are the
prefill pass's business) and the state after the last token, under the same names, so one comparison
holds the decode graph to the prefill graph's tolerances."""

from __future__ import annotations

import time

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from .contract import IMAGES, INPUT_IDS, LOGITS


class SessionRunner(BaseRunner):
    def __init__(self, open_session, name: str | None = None, images: bool = False, decode_from: int | None = None):
        super().__init__(name=name, prefix="mq-deploy-session")
        self._open = open_session
        self.images = images
        self.decode_from = decode_from

    def activate_impl(self):
        self.session = self._open()

    def get_input_metadata_impl(self):
        if self.images:
            return TensorMetadata().add(IMAGES, np.float32, (None, None, None, None))
        return TensorMetadata().add(INPUT_IDS, np.int64, (None, None))

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        if self.images:
            result = self.session.numpy(self.session.run("prefill", {IMAGES: np.asarray(feed_dict[IMAGES], np.float32)}))
        elif self.decode_from is None:
            result = self.session.numpy(self.session.prefill(np.asarray(feed_dict[INPUT_IDS], np.int64)))
        else:
            result = self._decode(np.asarray(feed_dict[INPUT_IDS], np.int64))
        self.inference_time = time.perf_counter() - start
        return result

    def _decode(self, ids: np.ndarray) -> dict:
        outputs = self.session.prefill(ids[:, :self.decode_from])
        logits = []
        for t in range(self.decode_from, ids.shape[1]):
            outputs = self.session.decode(ids[:, t:t + 1], outputs)
            logits.append(self.session.numpy({LOGITS: outputs[LOGITS]})[LOGITS])
        return {**self.session.numpy(outputs), LOGITS: np.concatenate(logits, axis=1)}

    def deactivate_impl(self):
        self.session.close()
        del self.session
