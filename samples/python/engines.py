"""What the Python samples share: the export's files found by their documented contract, and the two
ways to run its graphs (TensorRT plans on a GPU, the ONNX graphs in ONNX Runtime anywhere).

Nothing here imports mq_deploy: an application that ships only the plans and manifest.json has
exactly these files. The contract: manifest.json beside the graphs (docs/export.md), the plan's
sidecar `<plan>.json` written by `mq-deploy build` (`engine_set`: the plans built together,
`manifest_path`), and libmq_plugins.so loaded before a plan is deserialized (docs/tensorrt.md)."""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

import numpy as np

PLUGINS_ENV = "MQ_PLUGIN_PATH"


def fail(message: str):
    """One line on stderr and exit status 1: what every sample error looks like."""
    sys.exit(f"error: {message}")


def read_export(graph: Path, manifest_arg: Path | None, engine: bool) -> tuple[dict, Path, dict]:
    """(manifest, manifest file, sidecar) of a plan (`engine`) or an ONNX graph. The manifest is
    --manifest, else beside the graph, else (for a plan) where its sidecar says export wrote it; the
    sidecar ({} when there is none) is only needed when the manifest is not found those first ways."""
    if not graph.is_file():
        fail(f"{graph} does not exist")
    manifest_file = manifest_arg or graph.with_name("manifest.json")
    sidecar_file = Path(f"{graph}.json")
    sidecar = {}
    if engine and sidecar_file.is_file():
        try:
            sidecar = json.loads(sidecar_file.read_text())
        except (ValueError, OSError) as e:
            fail(f"{sidecar_file} is not the plan's sidecar JSON ({e}); rebuild with `mq-deploy build`, or pass "
                 "--manifest")
        if not isinstance(sidecar, dict):
            fail(f"{sidecar_file} is not the plan's sidecar JSON (not an object); rebuild with `mq-deploy build`, "
                 "or pass --manifest")
    if engine and not manifest_arg and not manifest_file.is_file():
        if sidecar_file.is_file() and "manifest_path" not in sidecar:
            fail(f"{sidecar_file} does not say where the plan's manifest is (no manifest_path: not a sidecar "
                 "written by `mq-deploy build`?); pass --manifest")
        if not sidecar:
            fail(f"no manifest.json beside {graph} and no {sidecar_file.name} (the plan's sidecar, written by "
                 "`mq-deploy build`) to say where it is; pass --manifest")
        manifest_file = Path(sidecar.get("manifest_path", manifest_file))
    if not manifest_file.is_file():
        fail(f"no manifest at {manifest_file}; pass --manifest (written by `mq-deploy export`)")
    return json.loads(manifest_file.read_text()), manifest_file, sidecar


def plugin_library(arg: Path | None) -> Path:
    """libmq_plugins.so from --plugins (the file or its folder), else $MQ_PLUGIN_PATH."""
    plugins = arg if arg is not None else (Path(os.environ[PLUGINS_ENV]) if os.environ.get(PLUGINS_ENV) else None)
    if plugins is not None and plugins.is_dir():
        plugins = plugins / "libmq_plugins.so"
    if plugins is None:
        fail(f"the plugin library libmq_plugins.so was not given; pass --plugins PATH or set {PLUGINS_ENV} "
             "(build it: cmake -S . -B build && cmake --build build writes build/plugins/libmq_plugins.so)")
    if not plugins.is_file():
        given = "--plugins" if arg is not None else PLUGINS_ENV
        fail(f"{given} {plugins}: no such file; give the path of libmq_plugins.so (cmake -S . -B build && "
             "cmake --build build writes build/plugins/libmq_plugins.so)")
    return plugins


class OnnxRuntimeGraphs:
    """The export's graphs in ONNX Runtime on the CPU; numpy in and out."""

    def __init__(self, graphs: dict[str, Path]):
        import onnxruntime as ort
        # ORT_ENABLE_BASIC: the extended level turns a W8A8 graph's Q/DQ MatMuls into integer kernels
        # that saturate on AVX2 CPUs without VNNI (mq-deploy docs/export.md, session options)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.sessions = {kind: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                         for kind, p in graphs.items()}

    def run(self, kind: str, feeds: dict) -> dict:
        session = self.sessions[kind]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))

    def batch_range(self, kind: str, name: str) -> tuple[int, int | None]:
        return 1, None                                     # any batch

    @staticmethod
    def argmax_last(logits) -> int:
        """The most likely next token of a [1, T, vocab] logits output."""
        return int(np.asarray(logits)[0, -1].argmax())

    @staticmethod
    def from_numpy(array: np.ndarray):
        return array

    @staticmethod
    def to_numpy(value) -> np.ndarray:
        array = np.asarray(value)
        return array.astype(np.float32) if array.dtype.kind == "f" else array


class TensorRTGraphs:
    """TensorRT plans. Buffers are torch CUDA tensors, so what one run returns (a recurrent state) can
    feed the next without leaving the GPU."""

    def __init__(self, plans: dict[str, Path], plugins: Path):
        try:
            import tensorrt as trt
        except ImportError:
            fail("TensorRT's Python package is not installed: pip install tensorrt (on a machine with an NVIDIA "
                 "GPU and driver), or run the ONNX graph instead (--onnx)")
        try:
            import torch
        except ImportError:
            fail("the TensorRT path keeps its buffers in torch CUDA tensors: pip install torch (a CUDA build)")
        if not torch.cuda.is_available():
            fail("no CUDA GPU visible to torch: TensorRT plans run on an NVIDIA GPU; run the ONNX graph instead "
                 "(--onnx)")
        self.torch = torch
        # The plugin library registers its creators when it is loaded; load it before deserializing.
        ctypes.CDLL(str(plugins), mode=ctypes.RTLD_GLOBAL)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engines, self.contexts = {}, {}
        for kind, path in plans.items():
            if not path.is_file():
                fail(f"{path} does not exist; `mq-deploy build` writes it beside the prefill plan")
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                fail(f"TensorRT could not load {path} (built by another TensorRT version or GPU?)")
            context = engine.create_execution_context()
            if context is None:
                fail(f"TensorRT could not create an execution context for {path} (GPU memory?)")
            self.engines[kind], self.contexts[kind] = engine, context
        self.stream = torch.cuda.Stream()
        self.dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                       trt.DataType.BF16: torch.bfloat16, trt.DataType.INT64: torch.int64,
                       trt.DataType.INT32: torch.int32, trt.DataType.INT8: torch.int8,
                       trt.DataType.UINT8: torch.uint8, trt.DataType.BOOL: torch.bool}
        self.input_mode = trt.TensorIOMode.INPUT

    def run(self, kind: str, feeds: dict) -> dict:
        torch, engine, context = self.torch, self.engines[kind], self.contexts[kind]
        outputs = {}
        # the feeds were made on the current stream (from_numpy's copy, the previous step's outputs);
        # our stream is not ordered after it unless told to wait
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) == self.input_mode:
                    value = feeds[name].to(self.dtypes[engine.get_tensor_dtype(name)]).contiguous()
                    feeds[name] = value                       # keep it alive until the stream is done
                    if not context.set_input_shape(name, tuple(value.shape)):
                        low, _, high = engine.get_tensor_profile_shape(name, 0)
                        fail(f"{name} of shape {tuple(value.shape)} is outside the {kind} engine's profile "
                             f"({tuple(low)} .. {tuple(high)}); use a smaller input or rebuild with a larger --max")
                    context.set_tensor_address(name, value.data_ptr())
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) != self.input_mode:
                    out = torch.empty(tuple(context.get_tensor_shape(name)),
                                      dtype=self.dtypes[engine.get_tensor_dtype(name)], device="cuda")
                    context.set_tensor_address(name, out.data_ptr())
                    outputs[name] = out
            if not context.execute_async_v3(self.stream.cuda_stream):
                fail(f"TensorRT failed to run the {kind} engine")
        self.stream.synchronize()
        return outputs

    def batch_range(self, kind: str, name: str) -> tuple[int, int | None]:
        """The smallest and largest first dimension of input `name` the engine's profile takes."""
        low, _, high = self.engines[kind].get_tensor_profile_shape(name, 0)
        return int(low[0]), int(high[0])

    @staticmethod
    def argmax_last(logits) -> int:
        """The most likely next token of a [1, T, vocab] logits output, picked on the GPU."""
        return int(logits[0, -1].float().argmax())

    def from_numpy(self, array: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(array)).to("cuda")

    @staticmethod
    def to_numpy(value) -> np.ndarray:
        return value.float().cpu().numpy() if value.is_floating_point() else value.cpu().numpy()
