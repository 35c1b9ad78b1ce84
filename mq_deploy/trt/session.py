"""An engine set (the plans `mq-deploy build` writes: `<plan>` for prefill, `<stem>.decode.plan`
for decode) as a session. Feeds and outputs are torch CUDA tensors (numpy feeds are copied in), so
a decode loop carries the state from step to step without leaving the GPU; each engine runs on its
runner's own stream."""

from __future__ import annotations

from pathlib import Path

from ..deploy.naming import decode_engine_path, sidecar_path
from ..deploy.session import Session
from ..errors import MQDeployError
from ..outputs import read_own_json
from .runtime import TrtEngineRunner


def decode_plan_of(plan: Path) -> Path:
    """The decode plan built with `plan`: the one its sidecar's engine_set names (so a decode plan
    left from an earlier build is never paired with a newer prefill), else `<stem>.decode.plan`."""
    sidecar = read_own_json(sidecar_path(plan))
    engine_set = (sidecar or {}).get("engine_set")
    if engine_set is not None and "decode" not in engine_set:
        raise MQDeployError(f"{plan} was built without a decode engine (--no-decode); rebuild without "
                            "--no-decode, or bench with --decode-steps 0")
    decode_plan = plan.parent / engine_set["decode"] if engine_set else decode_engine_path(plan)
    if not decode_plan.is_file():
        raise MQDeployError(f"{decode_plan} (the decode engine built with {plan.name}) does not exist; rebuild "
                            "without --no-decode (it is written beside the prefill plan), or bench with "
                            "--decode-steps 0")
    return decode_plan


class TensorRTSession(Session):
    def __init__(self, plan_path, plugins=None, name: str = "tensorrt", decode: bool = True):
        self.name = name
        plan = Path(plan_path)
        self._runners = {"prefill": TrtEngineRunner(plan, plugins)}
        if decode:
            self._runners["decode"] = TrtEngineRunner(decode_plan_of(plan), plugins)

    def input_profile(self, name: str, graph: str = "prefill") -> tuple:
        """(min, opt, max) shapes of an input in the engine's optimization profile."""
        info = next((t for t in self._runners[graph].inputs if t.name == name), None)
        if info is None:
            raise MQDeployError(f"the {graph} engine has no input {name}")
        return info.profile

    def run(self, graph: str, feeds: dict) -> dict:
        if graph not in self._runners:
            raise MQDeployError(f"this TensorRT session has no {graph} engine")
        return self._runners[graph].run_device(feeds)

    def numpy(self, outputs: dict) -> dict:
        import torch
        torch.cuda.synchronize()
        return {k: (v.float() if v.dtype == torch.bfloat16 else v).cpu().numpy() for k, v in outputs.items()}

    def synchronize(self) -> None:
        import torch
        torch.cuda.synchronize()
