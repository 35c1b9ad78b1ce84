"""`mq-deploy doctor`: what is installed, what each stage of the chain still needs, and the fix."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
from dataclasses import dataclass

from .trt.plugin_library import KERNEL_LIBRARY, PLUGIN_LIBRARY, find_library

# distribution name, import name
PACKAGES = [("torch", "torch"), ("numpy", "numpy"), ("safetensors", "safetensors"), ("tqdm", "tqdm"),
            ("transformers", "transformers"), ("tokenizers", "tokenizers"), ("onnx", "onnx"),
            ("onnxruntime", "onnxruntime"), ("onnx-graphsurgeon", "onnx_graphsurgeon"),
            ("matplotlib", "matplotlib"), ("tensorrt", "tensorrt"), ("polygraphy", "polygraphy"),
            ("lm-eval", "lm_eval")]

# stage -> (packages it needs, the fix)
STAGES = {
    "load / eval / demo": (["torch", "numpy", "safetensors", "tqdm"], "pip install -e ."),
    "HF tokenizers, parity tests": (["transformers", "tokenizers"], "pip install -e '.[hf]'"),
    "ONNX export and check": (["onnx", "onnxruntime", "onnx-graphsurgeon"], "pip install -e '.[onnx]'"),
    "plots (inspect)": (["matplotlib"], "pip install -e '.[plot]'"),
    "TensorRT build / validate / bench": (["tensorrt", "polygraphy"],
                                          "pip install -e '.[trt]' on a machine with an NVIDIA GPU and driver"),
    "lm-eval tasks": (["lm-eval"], "pip install -e '.[eval]'"),
}


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
    for stage, (needs, fix) in STAGES.items():
        missing = [p for p in needs if not versions.get(p)]
        if stage.startswith("TensorRT"):
            if not find_library(PLUGIN_LIBRARY):
                missing.append(PLUGIN_LIBRARY)
            if gpu is None:
                missing.append("an NVIDIA GPU")
        stages[stage] = (not missing, "ok" if not missing else f"missing {', '.join(missing)}: {fix}")
    return Report(versions, facts, stages)


def format_report(report: Report) -> str:
    lines = ["packages:"]
    lines += [f"  {name:<18} {version or '-- not installed'}" for name, version in report.versions.items()]
    lines.append("machine:")
    lines += [f"  {name:<26} {value}" for name, value in report.facts.items()]
    lines.append("stages:")
    lines += [f"  [{'ok' if ok else '--'}] {stage:<34} {message}" for stage, (ok, message) in report.stages.items()]
    return "\n".join(lines)
