"""One function ids -> logits for each way a model can run, and the tokenizer that goes with it:
the lm-eval adapter's only contact with the backends, through the deploy layer's sessions.

    torch        a checkpoint directory (FP) or a quantized artifact (its fake-quant model): TorchSession
    onnxruntime  an exported prefill graph (model.onnx, manifest.json beside it), CPU,
                 ORT_ENABLE_BASIC (the project's session options, docs/export.md): OnnxruntimeSession
    tensorrt     a built prefill engine (model.plan, its sidecar model.plan.json beside it): TensorRTSession

Only the prefill graph is used: scoring and greedy generation re-run it on whole sequences.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MQDeployError
from ..models.tokenizer import has_tokenizer, load_tokenizer

BACKENDS = ("torch", "onnxruntime", "tensorrt")
MODEL_ARGS = ("path", "backend", "max_length", "dtype", "tokenizer", "plugins", "max_gen_toks")
GRAPH_SUFFIXES = {"onnxruntime": ".onnx", "tensorrt": ".plan"}
DEFAULT_GRAPH_NAMES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan"}
TORCH_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}   # -> TorchSession


@dataclass
class LogitsSession:
    backend: str
    path: Path
    description: str                                  # what runs, for logs and lm-eval's model info
    logits: Callable[[np.ndarray], np.ndarray]        # int64 [batch, length] -> float [batch, length, vocab]
    tokenizer: object
    max_batch: int | None = None                      # an engine profile's limits; 1 when rows interact
    max_length: int | None = None


def check_model_args(model_args: dict) -> None:
    """The --model_args of `--model mq-deploy` (strings, as lm-eval passes them), checked before
    lm-eval loads anything: known keys, a path that exists, a known backend."""
    unknown = sorted(set(model_args) - set(MODEL_ARGS))
    if unknown:
        raise MQDeployError(f"unknown --model_args for mq-deploy: {', '.join(unknown)}; it takes "
                            f"{', '.join(MODEL_ARGS)}")
    path = model_args.get("path")
    if not path:
        raise MQDeployError("--model mq-deploy needs --model_args path=DIR (checkpoint or quantized artifact), "
                            "path=model.onnx or path=model.plan")
    backend = model_args.get("backend") or infer_backend(Path(path))
    if backend not in BACKENDS:
        raise MQDeployError(f"--model_args backend={backend}: choose one of {', '.join(BACKENDS)}")
    if not Path(path).exists():
        raise MQDeployError(f"--model_args path={path} does not exist; give a checkpoint directory, a quantized "
                            "artifact, an exported model.onnx or a built model.plan")


def infer_backend(path: Path) -> str:
    for backend, suffix in GRAPH_SUFFIXES.items():
        if path.suffix == suffix:
            return backend
    return "torch"


def text_tokenizer(model_dir: Path, declared: str | None):
    """The tokenizer text tasks need, or one clear error for a token-id-only checkpoint."""
    if not has_tokenizer(model_dir, declared):
        raise MQDeployError(
            f"{model_dir} has no tokenizer (no tokenizer.json, and config.json declares no built-in one), so it "
            "cannot run text tasks: copy the model family's tokenizer.json into it (mamba_ssm checkpoints use "
            "EleutherAI/gpt-neox-20b's) or pass tokenizer=DIR in --model_args")
    return load_tokenizer(model_dir, declared)


def _graph_file(path: Path, backend: str) -> Path:
    """The graph/engine file: `path` itself, or the default name inside a directory."""
    if path.is_dir():
        path = path / DEFAULT_GRAPH_NAMES[backend]
    if not path.is_file():
        verb = "export it with `mq-deploy export`" if backend == "onnxruntime" else "build it with `mq-deploy build`"
        raise MQDeployError(f"{path} does not exist; {verb}, and give its path as path=FILE")
    return path


def _declared_tokenizer(model_dir: Path) -> str | None:
    """The built-in tokenizer a model directory's config.json declares ("bytes"), if any."""
    config = model_dir / "config.json"
    return (json.loads(config.read_text(encoding="utf-8")).get("mq_deploy") or {}).get("tokenizer") \
        if config.is_file() else None


def directory_tokenizer(model_dir: Path):
    """The tokenizer of a model directory: its own files, or the built-in one its config.json declares."""
    return text_tokenizer(model_dir, _declared_tokenizer(model_dir))


def _export_tokenizer(manifest, tokenizer_dir):
    """The tokenizer of the model an export came from: tokenizer=DIR, else the manifest's source."""
    if manifest is not None and manifest.is_vision:
        raise MQDeployError(f"{manifest.path.parent} is a Vision Mamba's export: text tasks are for language models; "
                            "its accuracy is `mq-deploy validate --images IMAGES`")
    if tokenizer_dir is not None:
        return directory_tokenizer(Path(tokenizer_dir))
    return text_tokenizer(manifest.source_path, manifest.tokenizer)


def rows_depend_on_each_other(model_dir: Path) -> bool:
    """True for a paper-mode artifact with quantized activations: its dynamic ranges span a whole
    sample (padding included) and its h·C ranges a whole batch, so a row's scores would depend on its
    padding and batch-mates. Such a model runs one request at a time."""
    from ..quant.artifact import is_quantized_artifact, read_quant_meta
    if not is_quantized_artifact(model_dir):
        return False
    config = read_quant_meta(model_dir)["config"]
    return config["mode"] == "paper" and config["a_bits"] < 16


def _logits_of(session) -> Callable[[np.ndarray], np.ndarray]:
    def logits(ids: np.ndarray) -> np.ndarray:
        outputs = session.prefill(np.asarray(ids, np.int64))
        return session.numpy({"logits": outputs["logits"]})["logits"].astype(np.float32)     # not the states
    return logits


def torch_session(path: Path, device=None, dtype: str = "float32", tokenizer_dir=None) -> LogitsSession:
    from ..deploy.torch_session import TorchSession
    from ..devices import torch_device
    from ..eval.model_loading import load_eval_model
    if not path.is_dir():
        raise MQDeployError(f"backend=torch needs a checkpoint directory or quantized artifact; {path} is not a "
                            "directory (an .onnx file runs with backend=onnxruntime, a .plan with backend=tensorrt)")
    if dtype not in TORCH_DTYPES:
        raise MQDeployError(f"dtype={dtype}: choose one of {', '.join(TORCH_DTYPES)}")
    device = torch_device(device or "auto")
    from ..models.checkpoints import is_vision_checkpoint
    if is_vision_checkpoint(path):
        load_eval_model(path)           # its one-line refusal, before anything about tokenizers
    tokenizer = directory_tokenizer(Path(tokenizer_dir or path))     # fails before a long model load
    model, label = load_eval_model(path)
    session = TorchSession(model, TORCH_DTYPES[dtype], device, own=True)
    one_row = rows_depend_on_each_other(path)
    return LogitsSession("torch", path, f"torch {label} {dtype} on {device}" + (", batch 1 (dynamic activation "
                         "ranges)" if one_row else ""), _logits_of(session), tokenizer,
                         max_batch=1 if one_row else None)


def onnxruntime_logits_session(path: Path, tokenizer_dir=None) -> LogitsSession:
    from ..deploy.manifest import Manifest
    from ..deploy.onnxruntime_session import OnnxruntimeSession
    graph = _graph_file(path, "onnxruntime")
    manifest = Manifest.load(graph)
    tokenizer = _export_tokenizer(manifest, tokenizer_dir)
    session = OnnxruntimeSession(graph, decode=False, manifest=manifest)
    return LogitsSession("onnxruntime", graph, f"ONNX Runtime {graph} ({manifest.precision}, {manifest.label})",
                         _logits_of(session), tokenizer)


def tensorrt_logits_session(path: Path, tokenizer_dir=None, plugins=None) -> LogitsSession:
    from ..deploy.manifest import Manifest
    from ..trt.engine_files import read_sidecar
    from ..trt.session import TensorRTSession
    from ..trt.tensorrt_import import import_tensorrt
    import_tensorrt()                   # what to install comes before anything about the plan
    plan = _graph_file(path, "tensorrt")
    recorded = (read_sidecar(plan) or {}).get("manifest_path")
    manifest = Manifest.load(recorded) if recorded and Path(recorded).is_file() else None
    if manifest is None and tokenizer_dir is None:
        raise MQDeployError(f"{plan} has no sidecar {plan.name}.json naming the export it came from; pass "
                            "tokenizer=DIR (the model directory), or rebuild it with `mq-deploy build`")
    tokenizer = _export_tokenizer(manifest, tokenizer_dir)
    session = TensorRTSession(plan, plugins, decode=False)
    _, _, (max_batch, max_length) = session.input_profile("input_ids")
    return LogitsSession("tensorrt", plan, f"TensorRT {plan}", _logits_of(session), tokenizer,
                         max_batch=int(max_batch), max_length=int(max_length))


def open_logits_session(path, backend: str | None = None, device=None, dtype: str = "float32",
                        tokenizer_dir=None, plugins=None) -> LogitsSession:
    """The session for `path` on `backend` (default: from the path: .onnx -> onnxruntime, .plan ->
    tensorrt, a directory -> torch)."""
    path = Path(path)
    backend = backend or infer_backend(path)
    if backend not in BACKENDS:
        raise MQDeployError(f"backend={backend}: choose one of {', '.join(BACKENDS)}")
    if not path.exists():
        raise MQDeployError(f"path={path} does not exist")
    if backend == "torch":
        return torch_session(path, device, dtype, tokenizer_dir)
    if backend == "onnxruntime":
        return onnxruntime_logits_session(path, tokenizer_dir)
    return tensorrt_logits_session(path, tokenizer_dir, plugins)
