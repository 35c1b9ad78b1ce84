"""One way to run a deployed model, whatever runs it: a `Session` does a prefill (token ids in,
logits and the state out) and decode steps (one token and the carried state in, the same out).

Every output is named as the exported graphs name it (deploy/contract.py): `logits`,
`conv_state_out.<layer>`, `ssm_state_out.<layer>`; a decode step carries them into the next with
`contract.carry`. Values stay where the backend keeps them (numpy for ONNX Runtime, torch tensors
on the model's device for torch, CUDA tensors for TensorRT, so a decode loop never copies the state
through the host); `numpy(outputs)` brings them to the host for comparisons.

Implementations: `TorchSession` (deploy/torch_session.py), `OnnxruntimeSession`
(deploy/onnxruntime_session.py), `TensorRTSession` (mq_deploy.trt.session). validate, bench,
lm-eval and `SessionRunner` (deploy/polygraphy_runner.py, Polygraphy's BaseRunner over any session)
use nothing else (the demo runs through them)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import MQDeployError
from .contract import INPUT_IDS, carry


def token_ids(ids, graph: str):
    """`ids` as int64 [batch, seqlen] in the library it came in (numpy, torch), or one clear error: what
    a library user passes first (a list, a 1-D sequence, int32) should not reach a backend's own error."""
    if isinstance(ids, (list, tuple)):
        ids = np.asarray(ids)
    shape, dtype = tuple(getattr(ids, "shape", ())), str(getattr(ids, "dtype", type(ids).__name__))
    if len(shape) != 2:
        raise MQDeployError(f"{graph} takes token ids [batch, seqlen]; got shape {list(shape)} (one sequence: "
                            "ids[None] or [ids])")
    if "int" not in dtype:
        raise MQDeployError(f"{graph} takes integer token ids; got {dtype}")
    if dtype.endswith("int64"):
        return ids
    return ids.long() if hasattr(ids, "long") else ids.astype(np.int64)


class Session(ABC):
    name: str = "session"

    @abstractmethod
    def run(self, graph: str, feeds: dict) -> dict:
        """Run the `graph` ("prefill" or "decode") on named feeds; named outputs."""

    def prefill(self, ids) -> dict:
        """ids [batch, seqlen] (integers: numpy, a torch tensor or nested lists) -> logits and the state
        after the last token."""
        return self.run("prefill", {INPUT_IDS: token_ids(ids, "prefill")})

    def decode(self, token, outputs: dict) -> dict:
        """One token per sequence ([batch, 1]) from the state in `outputs` (of prefill or decode)."""
        token = token_ids(token, "decode")
        if token.shape[1] != 1:
            raise MQDeployError(f"decode takes one token per sequence, [batch, 1]; got {list(token.shape)} (run a "
                                "prefill for several tokens at once)")
        state = carry(outputs)
        if not state:
            raise MQDeployError("decode needs the state: pass the outputs of prefill or of the previous decode step")
        return self.run("decode", {INPUT_IDS: token, **state})

    def numpy(self, outputs: dict) -> dict:
        """The outputs as host numpy arrays (BF16 as float32)."""
        return {name: np.asarray(value) for name, value in outputs.items()}

    def synchronize(self) -> None:
        """Wait until queued work is done (timing); nothing to do for host backends."""

    def close(self) -> None:
        """Release what the session holds."""
