"""`build_engine`: exported ONNX (+ manifest.json) -> TensorRT plan(s) + sidecar(s), with the
selective scan in our IPluginV3 plugin. TensorRT Python API 10.x and 11.x; every call is listed
with the binding it was checked against in docs/tensorrt.md.

Steps per graph: strongly typed network, ONNX parser (no flags) given the graph without its
mq_deploy local functions (parser_input.py says why), assert every mq_deploy node (SelectiveScan,
SSDScan, HadamardTransform, HadamardQuantize) is a plugin layer, one optimization profile, workspace
limit, optimization level, timing cache, progress monitor, build_serialized_network, then the plan
and its sidecar written atomically."""

from __future__ import annotations

import hashlib
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..errors import MQDeployError
from ..atomic_dir import atomic_files, write_atomic
from ..files import file_sha256
from .build_request import BuildJob, BuildRequest, prepare_build, print_notes
from .engine_files import stage_engine_files
from .parser_input import parser_model_bytes
from .plugin_layers import PLUGIN_OPS, check_plugin_layers, network_layers
from .plugin_library import PLUGIN_ENV
from .plugin_loading import load_plugin_library, resolve_plugin_library
from .profiles import format_profile
from ..progress import progress_enabled
from .progress_monitor import interrupts_cancel, make_progress_monitor
from .tensorrt_import import import_tensorrt, shared_logger, tensorrt_major

SIDECAR_VERSION = 1
ERRORS_SHOWN = 8


def build_engine(onnx_path, engine_path, plugins=None, shapes=None, timing_cache=None, workspace_mib=None,
                 optimization_level=None, progress=True, decode=True, force=False) -> dict:
    """Build `engine_path` from `onnx_path` (and `<stem>.decode.plan` from the manifest's decode graph
    unless decode=False). `shapes`: {'min'|'opt'|'max': 'input_ids:1x1,...'} in trtexec syntax.
    Returns {'tensorrt', 'plugin_library', 'engines': {kind: sidecar}}. Bad inputs raise
    MQDeployError before TensorRT is imported. The engines and sidecars appear together, after the
    last build succeeded, or not at all; force: replace a previous engine set of ours."""
    request = prepare_build(onnx_path, engine_path, shapes=shapes, decode=decode, timing_cache=timing_cache,
                            workspace_mib=workspace_mib, optimization_level=optimization_level, force=force)
    print_notes(request)
    trt = import_tensorrt()
    library = None
    if request.required_plugins or plugins:
        library = load_plugin_library(trt, resolve_plugin_library(plugins), request.required_plugins)
    library_info = {"path": str(library), "sha256": file_sha256(library)} if library else None
    with atomic_files() as stage:
        engines = {job.kind: _build_job(trt, request, job, library_info, progress_enabled(progress), stage)
                   for job in request.jobs}
    return {"tensorrt": trt.__version__, "plugin_library": library_info, "engines": engines}


def network_flags(trt) -> int:
    """Strongly typed: the ONNX graph's types (FP16 + explicit Q/DQ) are the engine's. On 10.x that
    is a creation flag; on 11.x it is always on and the flag is deprecated, so none is passed."""
    if tensorrt_major(trt) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _parse(trt, parser, job: BuildJob) -> None:
    # From bytes, so the parser never sees the local functions; `path` locates external data.
    if parser.parse(parser_model_bytes(job.onnx_path), str(job.onnx_path.resolve())):
        return
    errors = [parser.get_error(i) for i in range(parser.num_errors)]
    lines = [f"node {e.node_name() or '?'} ({e.node_operator() or '?'}): {e.desc()} [{e.code()}]"
             for e in errors[:ERRORS_SHOWN]]
    more = f"\n  ... and {len(errors) - ERRORS_SHOWN} more" if len(errors) > ERRORS_SHOWN else ""
    hint = ("run mq-deploy check --onnx on the file; it must be an unmodified mq-deploy export")
    if any(e.node_operator() in PLUGIN_OPS for e in errors):
        hint = (f"the failing nodes are mq_deploy plugins: load libmq_plugins.so built for TensorRT "
                f"{trt.__version__} (--plugins PATH or {PLUGIN_ENV}), rebuilt from this mq-deploy's plugins/ "
                "(an older library lacks HadamardQuantize, which export --fuse-quantize emits)")
    raise MQDeployError(f"TensorRT's ONNX parser rejected {job.onnx_path} ({len(errors)} error(s)); {hint}:\n  "
                        + "\n  ".join(lines) + more)


def _check_network_inputs(network, job: BuildJob) -> list[dict]:
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    found = {t.name: len(t.shape) for t in inputs}
    expected = {p.name: len(p.min) for p in job.profile}
    if found != expected:
        raise MQDeployError(f"the parsed {job.onnx_path.name} has inputs {found} (name: rank), manifest.json "
                            f"says {expected}; re-export so the graph and its manifest agree")
    return [{"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape)} for t in inputs]


def _network_outputs(network) -> list[dict]:
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    return [{"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape)} for t in outputs]


def _add_profile(builder, config, job: BuildJob) -> None:
    profile = builder.create_optimization_profile()
    for p in job.profile:
        try:
            profile.set_shape(p.name, list(p.min), list(p.opt), list(p.max))
        except RuntimeError as e:
            raise MQDeployError(f"TensorRT refused the profile of {p.name} ({p.min} / {p.opt} / {p.max}): {e}; "
                                "fix --min/--opt/--max") from None
    if config.add_optimization_profile(profile) < 0:        # -1: TensorRT found the profile invalid
        shapes = "; ".join(f"{p.name} {p.min} / {p.opt} / {p.max}" for p in job.profile)
        raise MQDeployError(f"TensorRT refused the optimization profile ({shapes}): every input needs min <= opt "
                            "<= max within the graph's shapes; fix --min/--opt/--max")


def _attach_timing_cache(config, path: Path | None):
    """Load the cache file if it exists (else start empty). A cache from another GPU or TensorRT
    version is not an error: the build starts a fresh cache and overwrites the file."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        print(f"note: timing cache {path} was made on another GPU or TensorRT version; starting a fresh one",
              file=sys.stderr)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(config, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is not None:
        write_atomic(path, bytes(cache.serialize()))


def _gpu() -> dict | None:
    import torch
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}


def _configure(trt, builder, request: BuildRequest, job: BuildJob, progress: bool):
    """Builder config: profile, workspace, optimization level, timing cache, progress monitor."""
    config = builder.create_builder_config()
    _add_profile(builder, config, job)
    if request.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mib << 20)
    if request.optimization_level is not None:
        config.builder_optimization_level = request.optimization_level
    _attach_timing_cache(config, request.timing_cache)     # set_timing_cache keeps it alive
    monitor = None
    if hasattr(trt, "IProgressMonitor"):          # silent without progress: it still carries Ctrl-C
        monitor = make_progress_monitor(trt, f"build {job.kind}", show=progress)
        config.progress_monitor = monitor
    return config, monitor


def _tensorrt_record(trt, request: BuildRequest) -> dict:
    return {"version": trt.__version__, "strongly_typed": True, "network_flags": network_flags(trt),
            "parser_input": "graph without mq_deploy local functions, no parser flags",
            "workspace_mib": request.workspace_mib,
            "builder_optimization_level": request.optimization_level,
            "timing_cache": str(request.timing_cache) if request.timing_cache else None}


def sidecar_record(request: BuildRequest, job: BuildJob, plan: bytes, seconds: float, *, tensorrt: dict,
                   inputs: list, outputs: list, plugin_layers: list, library_info: dict | None,
                   gpu: dict | None) -> dict:
    """The sidecar of one plan: what it was built from and with. Pure (no TensorRT objects), so its
    keys are checked on any machine; `engine_files.SIDECAR_KEYS` lists those its readers use."""
    return {
        "sidecar_version": SIDECAR_VERSION, "producer": f"mq-deploy {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "graph": job.kind, "engine": job.engine_path.name,
        "engine_set": {j.kind: j.engine_path.name for j in request.jobs},     # the plans built together
        "bytes": len(plan),
        "sha256": hashlib.sha256(plan).hexdigest(), "build_seconds": round(seconds, 3),
        "onnx": {"path": str(job.onnx_path.resolve()), "sha256": job.onnx_sha256,
                 "matches_manifest": job.matches_manifest},
        "manifest_path": str(request.manifest_path.resolve()), "manifest": request.manifest,
        "tensorrt": tensorrt, "gpu": gpu, "plugin_library": library_info, "plugin_layers": plugin_layers,
        "profiles": [{p.name: p.as_dict() for p in job.profile}],
        "inputs": inputs, "outputs": outputs,
    }


def _build_job(trt, request: BuildRequest, job: BuildJob, library_info: dict | None, progress: bool,
               stage) -> dict:
    start = time.perf_counter()
    logger = shared_logger(trt)
    logger.errors.clear()
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    _parse(trt, parser, job)
    inputs = _check_network_inputs(network, job)
    plugin_layers = check_plugin_layers(network_layers(trt, network), job.plugin_nodes, job.onnx_path.name)
    config, monitor = _configure(trt, builder, request, job, progress)

    with interrupts_cancel(monitor):
        serialized = builder.build_serialized_network(network, config)
    if monitor is not None and monitor.cancelled:
        raise KeyboardInterrupt
    if serialized is None:
        shown = "; ".join(logger.errors[-3:]) or "see TensorRT's log above"
        raise MQDeployError(f"TensorRT could not build an engine from {job.onnx_path}: {shown}; rerun with "
                            "MQ_TRT_VERBOSE=1 for the builder's log (no engine file was written)")
    plan = bytes(serialized)     # IHostMemory has the buffer protocol
    del serialized
    seconds = time.perf_counter() - start
    _save_timing_cache(config, request.timing_cache)
    sidecar = sidecar_record(request, job, plan, seconds, tensorrt=_tensorrt_record(trt, request), inputs=inputs,
                             outputs=_network_outputs(network), plugin_layers=plugin_layers,
                             library_info=library_info, gpu=_gpu())
    stage_engine_files(stage, job.engine_path, plan, sidecar)
    print(f"[build {job.kind}] {job.engine_path} ({len(plan) / 1e6:.1f} MB) in {seconds:.1f} s, "
          f"profile {format_profile(job.profile)}", file=sys.stderr)
    return sidecar
