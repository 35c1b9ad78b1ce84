"""Running one plan: `TrtEngineRunner` (numpy or torch CUDA tensors in, outputs out, device memory
from torch's CUDA allocator, TensorRT's name-based I/O API: the exact calls an application makes,
set_input_shape, set_tensor_address, execute_async_v3). `mq_deploy.trt.session.TensorRTSession`
runs an engine set (prefill + decode plans) through it; Polygraphy compares it through
`mq_deploy.deploy.polygraphy_runner.SessionRunner`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MQDeployError
from .engine_files import read_sidecar
from .plugin_library import PLUGIN_LIBRARY, find_library
from .plugin_loading import load_plugin_library, resolve_plugin_library
from .tensorrt_import import import_tensorrt, shared_logger


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]          # -1 for a dynamic dim
    dtype: str                      # TensorRT DataType name: FLOAT, HALF, BF16, INT64, ...
    profile: tuple | None = None    # inputs: (min, opt, max) shapes of profile 0


def _torch_dtypes():
    import torch
    return {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
            "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}


def _plan_needs_plugins(sidecar: dict | None) -> bool:
    return bool(sidecar and sidecar.get("plugin_layers"))


def _load_plugins_for_plan(trt, plan: Path, plugins, sidecar: dict | None) -> None:
    """Load the plugin library before deserializing: explicitly given, or needed by the plan (its
    sidecar lists plugin layers). A plan whose sidecar lists none needs no library (a stale or
    mismatched build lying around must not stop it); a plan without a sidecar (built elsewhere) gets
    the library where one is found, and a copy that cannot load is a note, since deserialization
    names any plugin it then misses."""
    if plugins or _plan_needs_plugins(sidecar):
        load_plugin_library(trt, resolve_plugin_library(plugins))
    elif sidecar is None and (found := find_library(PLUGIN_LIBRARY)) is not None:
        try:
            load_plugin_library(trt, found)
        except MQDeployError as e:
            print(f"note: {plan} has no sidecar saying which plugins it needs, and {e}; going on without it",
                  file=sys.stderr)


def load_engine(plan_path, plugins=None):
    """(trt, runtime, engine, sidecar) for a plan file; clear errors for a missing file, a missing
    plugin library, or a plan TensorRT cannot deserialize."""
    plan = Path(plan_path)
    if not plan.is_file():
        raise MQDeployError(f"engine {plan} does not exist; build it with mq-deploy build --onnx MODEL.onnx "
                            f"--engine {plan}")
    sidecar = read_sidecar(plan)
    trt = import_tensorrt()
    _load_plugins_for_plan(trt, plan, plugins, sidecar)
    runtime = trt.Runtime(shared_logger(trt))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    if engine is None:
        built = (sidecar or {}).get("tensorrt", {}).get("version", "an unknown version")
        raise MQDeployError(f"TensorRT {trt.__version__} cannot deserialize {plan} (built with TensorRT {built}); "
                            f"plans are specific to the TensorRT version and GPU: rebuild with mq-deploy build, and "
                            f"load {PLUGIN_LIBRARY} (--plugins PATH) if the plan uses the mq_deploy plugins")
    return trt, runtime, engine, sidecar


class TrtEngineRunner:
    """Run a plan: `TrtEngineRunner("model.plan").run({"input_ids": ids})` (numpy in and out), or
    `run_device(feeds)` (torch CUDA tensors in and out, no host synchronization: for decode loops
    and benchmarks)."""

    def __init__(self, plan_path, plugins=None):
        import torch
        if not Path(plan_path).is_file():
            raise MQDeployError(f"engine {plan_path} does not exist; build it with mq-deploy build --onnx MODEL.onnx "
                                f"--engine {plan_path}")
        import_tensorrt()                # what to install comes before "no GPU"
        if not torch.cuda.is_available():
            raise MQDeployError("running a TensorRT engine needs a CUDA GPU visible to torch: install a CUDA build "
                                "of torch on a machine with an NVIDIA GPU and driver")
        self.plan_path = Path(plan_path)
        self._trt, self._runtime, self.engine, self.sidecar = load_engine(plan_path, plugins)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise MQDeployError(f"TensorRT could not create an execution context for {plan_path} (out of GPU memory?)")
        self._stream = torch.cuda.Stream()
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = self.engine.get_tensor_dtype(name).name
            if self.engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT:
                profile = tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))
                self.inputs.append(TensorInfo(name, shape, dtype, profile))
            else:
                self.outputs.append(TensorInfo(name, shape, dtype))

    def _to_device(self, info: TensorInfo, value):
        """A CUDA tensor of the engine's type. Converts within a kind (float64 -> HALF, int32 -> INT64);
        refuses across kinds (floats fed as token ids)."""
        import torch
        tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        target = _torch_dtypes().get(info.dtype)
        if target is None:
            raise MQDeployError(f"input {info.name} has TensorRT type {info.dtype}, which this runner does not feed")
        kind = "bool" if tensor.dtype == torch.bool else "float" if tensor.is_floating_point() else "int"
        wanted = "bool" if target == torch.bool else "float" if target.is_floating_point else "int"
        if kind != wanted:
            raise MQDeployError(f"input {info.name}: got {tensor.dtype} values, the engine takes {info.dtype}; "
                                f"pass {wanted} values")
        return tensor.to(device="cuda", dtype=target).contiguous()

    def _set_address(self, name: str, tensor) -> None:
        if not self.context.set_tensor_address(name, tensor.data_ptr()):
            raise MQDeployError(f"TensorRT refused the device buffer of {name} (misaligned or unknown name)")

    def run_device(self, feeds: dict, stream=None) -> dict:
        """Inputs by name (torch tensors or numpy arrays, any shape inside the profile) -> outputs by
        name as CUDA tensors. Enqueued on `stream` (default: the runner's own stream, never the legacy
        default stream, on which TensorRT adds device-wide synchronizations) after the work already
        queued on torch's current stream; the current stream then waits for it, so the outputs are
        ready for whatever is queued there next. The caller synchronizes."""
        import torch
        names = {t.name for t in self.inputs}
        missing, unknown = sorted(names - set(feeds)), sorted(set(feeds) - names)
        if missing or unknown:
            raise MQDeployError(f"feeds must name exactly the engine's inputs {sorted(names)}; missing {missing}, "
                                f"unknown {unknown}")
        stream = stream or self._stream
        current = torch.cuda.current_stream()
        stream.wait_stream(current)                          # inputs produced on the current stream
        results = {}
        with torch.cuda.stream(stream):
            for info in self.inputs:
                tensor = self._to_device(info, feeds[info.name])
                tensor.record_stream(stream)    # not reused by torch's allocator before TensorRT reads it
                if not self.context.set_input_shape(info.name, list(tensor.shape)):
                    lo, opt, hi = info.profile
                    raise MQDeployError(f"input {info.name} of shape {tuple(tensor.shape)} is outside the engine's "
                                        f"profile (min {lo}, opt {opt}, max {hi}); rebuild with wider --min/--max")
                self._set_address(info.name, tensor)
            for info in self.outputs:
                shape = tuple(self.context.get_tensor_shape(info.name))
                if any(d < 0 for d in shape):
                    raise MQDeployError(f"output {info.name} has an unresolved shape {shape}; set every input first")
                results[info.name] = torch.empty(shape, dtype=_torch_dtypes()[info.dtype], device="cuda")
                self._set_address(info.name, results[info.name])
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise MQDeployError(f"TensorRT failed to run {self.plan_path}; its log above says why")
        if stream != current:
            current.wait_stream(stream)
            for tensor in results.values():
                tensor.record_stream(current)   # freed later on the current stream: keep until then
        return results

    def run(self, feeds: dict) -> dict:
        """Inputs by name (numpy arrays) -> outputs by name (numpy; BF16 outputs as float32)."""
        import torch
        results = self.run_device(feeds, self._stream)
        self._stream.synchronize()
        return {name: (t.float() if t.dtype == torch.bfloat16 else t).cpu().numpy() for name, t in results.items()}
