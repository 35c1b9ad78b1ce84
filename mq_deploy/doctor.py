"""`mq-deploy doctor`: what is installed, whether each stage of the chain can run, and the fix.

A stage is ready when everything it imports imports: the mq_deploy modules behind the verb (which
pull in their third-party packages at module level) plus the packages those modules import only
when called (listed here beside them). So the verdict is the import the verb itself would do, not a
guess from package names: a missing transitive dependency (ml_dtypes under onnx) shows, and a
package nothing imports does not count.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
from dataclasses import dataclass

from .errors import MQDeployError
from .trt.plugin_library import KERNEL_LIBRARY, PLUGIN_LIBRARY, find_library

# distribution name, import name: the versions printed
PACKAGES = [("torch", "torch"), ("numpy", "numpy"), ("safetensors", "safetensors"), ("tqdm", "tqdm"),
            ("transformers", "transformers"), ("tokenizers", "tokenizers"), ("onnx", "onnx"),
            ("ml_dtypes", "ml_dtypes"), ("onnxruntime", "onnxruntime"), ("polygraphy", "polygraphy"),
            ("matplotlib", "matplotlib"), ("lm-eval", "lm_eval"), ("nvidia-modelopt", "modelopt"),
            ("tensorrt", "tensorrt")]


@dataclass(frozen=True)
class Stage:
    name: str
    imports: tuple[str, ...]         # what running the stage imports (modules, then lazy imports)
    fix: str
    needs_gpu: bool = False          # TensorRT stages: also the plugin library and an NVIDIA GPU


STAGES = (
    Stage("load / eval / quantize / demo",
          ("mq_deploy.api", "mq_deploy.quant.quantize", "mq_deploy.quant.artifact",
           "mq_deploy.quant.recipes.mambaquant", "mq_deploy.quant.recipes.smoothquant", "safetensors.torch"),
          "pip install -e ."),
    Stage("models with their own tokenizer.json", ("mq_deploy.models.tokenizer", "transformers"),
          "pip install -e '.[hf]'"),
    Stage("ONNX export and check", ("mq_deploy.export.exporter", "mq_deploy.export.check", "onnxruntime"),
          "pip install -e '.[onnx]'"),
    Stage("validate / bench on ONNX Runtime",
          ("mq_deploy.validate.validation", "mq_deploy.deploy.polygraphy_runner", "mq_deploy.bench.benchmark",
           "polygraphy.comparator", "onnxruntime"),
          "pip install -e '.[onnx]'"),
    Stage("plots (inspect, bench)", ("mq_deploy.reports.plots", "matplotlib.pyplot"), "pip install -e '.[plot]'"),
    Stage("lm-eval (zero-shot tasks)", ("lm_eval.api.model", "mq_deploy.lm_eval.adapter"), "pip install -e '.[eval]'"),
    Stage("compare-recipes' ModelOpt peers", ("mq_deploy.reports.modelopt_peer", "modelopt.torch.quantization"),
          "pip install -e '.[modelopt]'"),
    Stage("TensorRT build", ("mq_deploy.trt.builder", "tensorrt", "onnx"),     # onnx: trt/parser_input.py
          "pip install -e '.[trt]' on a machine with an NVIDIA GPU and driver, and build libmq_plugins.so",
          needs_gpu=True),
    Stage("TensorRT validate / bench", ("mq_deploy.trt.session", "mq_deploy.validate.validation", "tensorrt",
                                        "polygraphy.comparator"),
          "pip install -e '.[trt]' on a machine with an NVIDIA GPU and driver, and build libmq_plugins.so",
          needs_gpu=True),
)


@dataclass
class Report:
    versions: dict[str, str | None]
    facts: dict[str, str]
    stages: dict[str, tuple[bool, str]]


def package_version(dist: str, module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def missing_imports(modules) -> list[str]:
    """The top-level packages that stop `modules` from importing (each named once)."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            name = (e.name or module).split(".")[0]
            if name == "mq_deploy":          # one of ours failed on something it imports: say what
                name = str(e)
            if name not in missing:
                missing.append(name)
        except MQDeployError as e:             # a module of ours that refuses to import without a package
            if not missing:                    # (the lm-eval adapter) and says which: unless already named
                missing.append(str(e))
    return missing


def _command_output(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def collect() -> Report:
    versions = {dist: package_version(dist, module) for dist, module in PACKAGES}
    facts = {"python": platform.python_version(), "platform": platform.platform()}
    if versions["torch"]:
        import torch
        facts["torch CUDA build"] = torch.version.cuda or "none (CPU build)"
        facts["CUDA GPU visible to torch"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no")
    nvcc = _command_output(["nvcc", "--version"])
    facts["nvcc"] = nvcc.splitlines()[-1] if nvcc else "not found (needed to build the CUDA kernels)"
    gpu = _command_output(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    facts["GPU (nvidia-smi)"] = gpu or "none found"
    for name in (PLUGIN_LIBRARY, KERNEL_LIBRARY):
        path = find_library(name)
        facts[name] = str(path) if path else "not built (cmake -S . -B build && cmake --build build)"
    stages = {}
    for stage in STAGES:
        missing = missing_imports(stage.imports)
        if stage.needs_gpu:
            if not find_library(PLUGIN_LIBRARY):
                missing.append(PLUGIN_LIBRARY)
            if gpu is None:
                missing.append("an NVIDIA GPU")
        stages[stage.name] = (not missing, "ok" if not missing else f"missing {', '.join(missing)}: {stage.fix}")
    return Report(versions, facts, stages)


def format_report(report: Report) -> str:
    lines = ["packages:"]
    lines += [f"  {name:<18} {version or '-- not installed'}" for name, version in report.versions.items()]
    lines.append("machine:")
    lines += [f"  {name:<26} {value}" for name, value in report.facts.items()]
    lines.append("stages:")
    lines += [f"  [{'ok' if ok else '--'}] {stage:<38} {message}" for stage, (ok, message) in report.stages.items()]
    return "\n".join(lines)
