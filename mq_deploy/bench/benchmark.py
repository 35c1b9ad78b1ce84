"""Prefill latency at several lengths and decode-step latency for every backend, in one run:
the INT8 engine, the FP16 engine and the FP16 torch model on a GPU; without TensorRT, ONNX Runtime
on the exported graphs and torch on the CPU. Table (markdown + JSON) and a plot. A vision export:
the latency of one batch of images and images per second, for the same backends."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..atomic_dir import atomic_files
from ..errors import MQDeployError
from ..deploy.manifest import Manifest
from ..outputs import check_output_files, read_own_json, report_prefix
from ..progress import progress_bar
from .timing import latency_stats, time_calls

DECODE_PROMPT = 16
DEFAULT_LENGTHS = (16, 128, 512)
DEFAULT_DECODE_STEPS = 64
BENCH_REPORT = "bench report"


def _label(manifest: Manifest, runtime: str) -> str:
    return f"{runtime} {manifest.label} {manifest.precision.upper()}"


def _torch_fp_session(manifest: Manifest, device: torch.device, precision: str | None, model_dir=None):
    """The unquantized model: the artifact's FP source checkpoint when it is still there."""
    from ..deploy.source import fp_model, source_dir
    from ..deploy.torch_session import TorchSession
    model = fp_model(source_dir(manifest, model_dir))   # checked against the sha256 export recorded
    precision = precision or ("fp16" if device.type == "cuda" else "fp32")
    return TorchSession(model, precision, device, name=f"PyTorch FP {precision.upper()} ({device.type})".replace(
        "FP FP", "FP"), own=True)


def collect_sessions(onnx_path, engine=None, fp_onnx=None, fp_engine=None, torch_reference: bool = True,
                     device: str = "auto", torch_precision: str | None = None, plugins=None,
                     decode: bool = True, model_dir=None) -> list:
    """With --engine: the engines (+ ONNX Runtime on --fp-onnx if given); without: ONNX Runtime on
    --onnx and --fp-onnx. Then the torch model."""
    from ..deploy.onnxruntime_session import OnnxruntimeSession
    from ..devices import torch_device
    manifest = Manifest.load(onnx_path)
    sessions = []
    if engine or fp_engine:
        from ..trt.session import TensorRTSession
    if engine:
        sessions.append(TensorRTSession(engine, plugins, _label(manifest, "TensorRT"), decode))
    if fp_engine:
        sessions.append(TensorRTSession(fp_engine, plugins, "TensorRT FP (" + Path(fp_engine).name + ")", decode))
    if not engine:
        sessions.append(OnnxruntimeSession(onnx_path, _label(manifest, "ONNX Runtime"), decode, manifest))
    if fp_onnx:
        sessions.append(OnnxruntimeSession(fp_onnx, _label(Manifest.load(fp_onnx), "ONNX Runtime"), decode))
    if torch_reference:
        sessions.append(_torch_fp_session(manifest, torch_device(device), torch_precision, model_dir))
    return sessions


def bench_backend(backend, vocab: int, lengths: list[int], batch: int, iterations: int, warmup: int,
                  decode_steps: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for length in lengths:
        ids = rng.integers(0, vocab, (batch, length), dtype=np.int64)
        seconds = time_calls(lambda: backend.prefill(ids), backend.synchronize, iterations, warmup)
        rows.append({"backend": backend.name, "phase": "prefill", "length": length, "batch": batch,
                     **latency_stats(seconds, batch * length)})
    if decode_steps:
        token = rng.integers(0, vocab, (batch, 1), dtype=np.int64)
        carried = {"outputs": backend.prefill(rng.integers(0, vocab, (batch, DECODE_PROMPT), dtype=np.int64))}

        def step():
            carried["outputs"] = backend.decode(token, carried["outputs"])
        seconds = time_calls(step, backend.synchronize, decode_steps, warmup)
        rows.append({"backend": backend.name, "phase": "decode", "length": 1, "batch": batch,
                     **latency_stats(seconds, batch)})
    return rows


def bench_images(backend, image_shape, batch: int, iterations: int, warmup: int, seed: int = 0) -> list[dict]:
    """A vision model: the latency of classifying `batch` images (phase "classify", rate in images/s)."""
    from ..deploy.contract import IMAGES
    images = np.random.default_rng(seed).standard_normal((batch, *image_shape)).astype(np.float32)
    seconds = time_calls(lambda: backend.run("prefill", {IMAGES: images}), backend.synchronize, iterations, warmup)
    return [{"backend": backend.name, "phase": "classify", "length": 1, "batch": batch,
             **latency_stats(seconds, batch)}]


def run_bench(onnx_path, engine=None, fp_onnx=None, fp_engine=None, lengths=DEFAULT_LENGTHS, batch: int = 1,
              iterations: int = 20, warmup: int = 3, decode_steps: int = DEFAULT_DECODE_STEPS, torch_reference: bool = True,
              device: str = "auto", torch_precision: str | None = None, plugins=None, progress: bool = True,
              model_dir=None) -> dict:
    onnx_path = Path(onnx_path)
    manifest = Manifest.load(onnx_path)
    manifest.graph_of(onnx_path)
    if fp_onnx:
        other = Manifest.load(fp_onnx)
        other.graph_of(fp_onnx)
        if other.is_vision != manifest.is_vision:
            raise MQDeployError("--onnx and --fp-onnx are exports of different kinds of model (a Vision Mamba and a "
                                "language model); give the unquantized export of the same model")
    if manifest.is_vision and (tuple(lengths) != DEFAULT_LENGTHS or decode_steps not in (0, DEFAULT_DECODE_STEPS)):
        raise MQDeployError(f"{onnx_path} is a Vision Mamba's export: it times batches of images (--batch); "
                            "--lengths and --decode-steps are for language models")
    if batch < 1 or iterations < 1 or warmup < 0 or decode_steps < 0 or not lengths or min(lengths) < 1:
        raise MQDeployError("bench needs --batch >= 1, --iterations >= 1, --warmup >= 0, --decode-steps >= 0 "
                            "and lengths >= 1")
    if torch_reference:
        from ..deploy.source import source_dir
        source_dir(manifest, model_dir)     # provenance before any session starts
    if manifest.is_vision:
        decode_steps = 0                    # a classifier has one graph
    backends = collect_sessions(onnx_path, engine, fp_onnx, fp_engine, torch_reference, device, torch_precision,
                                plugins, decode=decode_steps > 0, model_dir=model_dir)
    rows, start = [], time.perf_counter()
    with progress_bar(total=len(backends), desc="bench", unit="backend", disable=not progress) as bar:
        for backend in backends:
            bar.set_postfix_str(backend.name)
            if manifest.is_vision:
                rows += bench_images(backend, manifest.image_shape, batch, iterations, warmup)
            else:
                rows += bench_backend(backend, manifest.vocab_size, list(lengths), batch, iterations,
                                      warmup, decode_steps)
            bar.update()
    return {"onnx": str(onnx_path), "engine": str(engine) if engine else None,
            "model": {k: manifest.model_config.get(k) for k in ("hidden_size", "num_hidden_layers", "intermediate_size",
                                                            "state_size", "vocab_size", "num_classes", "img_size")},
            "settings": {"lengths": list(lengths), "batch": batch, "iterations": iterations, "warmup": warmup,
                         "decode_steps": decode_steps, "decode_prompt": DECODE_PROMPT},
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpu_threads": torch.get_num_threads(),
                        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
            "producer": f"mq-deploy {__version__}", "file_kind": BENCH_REPORT, "rows": rows,
            "seconds": round(time.perf_counter() - start, 1)}


def format_table(report: dict) -> str:
    images = all(r["phase"] == "classify" for r in report["rows"])
    rate, shape = ("images/s", "batch") if images else ("tokens/s", "batch × length")
    lines = [f"| backend | phase | {shape} | median ms | p90 ms | p99 ms | {rate} |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in report["rows"]:
        size = f"{r['batch']}" if images else f"{r['batch']} × {r['length']}"
        lines.append(f"| {r['backend']} | {r['phase']} | {size} | {r['median_ms']:.3f} | "
                     f"{r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['tokens_per_s']:,.0f} |")
    return "\n".join(lines)


def output_paths(out_prefix) -> tuple[Path, Path, Path]:
    prefix = report_prefix(out_prefix)
    return tuple(prefix.with_name(prefix.name + suffix) for suffix in (".md", ".json", ".png"))


def _is_own_report(out_prefix) -> bool:
    """The .json of a previous bench of ours at this prefix (then its .md and .png are ours too)."""
    report = read_own_json(output_paths(out_prefix)[1], BENCH_REPORT)
    return report is not None and "rows" in report


def check_outputs(out_prefix, force: bool, inputs=()) -> None:
    """Before any work: <prefix>.md/.json/.png are new, or a previous bench of ours and --force."""
    check_output_files(list(output_paths(out_prefix)), BENCH_REPORT, lambda p: _is_own_report(out_prefix), force,
                       inputs=inputs, option="--out")


def write_outputs(report: dict, out_prefix, force: bool = False) -> list[Path]:
    """<prefix>.md, <prefix>.json and (with matplotlib) <prefix>.png, written together or not at all."""
    from .plot import plot_bench_png
    check_outputs(out_prefix, force)
    md, js, png = output_paths(out_prefix)
    m, s = report["model"], report["settings"]
    vision = m.get("vocab_size") is None
    what = (f"{m['num_classes']} classes, {m['img_size']}x{m['img_size']} images; {s['iterations']} timed runs of one batch "
            f"after {s['warmup']} warm-up runs. " if vision else
            f"vocab {m['vocab_size']}; {s['iterations']} timed runs per prefill length after {s['warmup']} "
            f"warm-up runs, {s['decode_steps']} decode steps after a {s['decode_prompt']}-token prompt. ")
    header = (f"# mq-deploy bench\n\n{report['onnx']}: d_model {m['hidden_size']}, {m['num_hidden_layers']} layers, "
              f"{what}"
              f"Machine: {report['machine']['gpu'] or report['machine']['processor'] or report['machine']['platform']}"
              f", {report['machine']['cpu_threads']} CPU threads.\n\n")
    try:
        image = None if vision else plot_bench_png(report)      # a classifier's one row a backend: the table says it
    except MQDeployError as e:
        image = None
        print(f"no plot: {e}")      # matplotlib missing: the table and JSON are the result
    with atomic_files() as stage:
        stage.file(md).write_bytes((header + format_table(report) + "\n").encode("utf-8"))
        stage.file(js).write_bytes((json.dumps(report, indent=2) + "\n").encode("utf-8"))
        if image is not None:
            stage.file(png).write_bytes(image)
        else:
            stage.remove(png)       # a previous run's plot would not match this table
    return [md, js] + ([png] if image is not None else [])
