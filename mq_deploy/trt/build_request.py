"""Everything `build` checks before TensorRT is imported: the ONNX file and its manifest.json, the
engine paths, the shape options, the build options, and which plugin nodes each graph has. Pure
file and manifest logic, so every bad input is one MQDeployError on any machine."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MQDeployError
from ..deploy.manifest import Manifest
from ..deploy.naming import MANIFEST_NAME
from ..outputs import check_output_files
from .engine_files import check_engine_path, decode_engine_path, is_own_engine_file, sidecar_path
from .plugin_layers import PluginNode, plugin_nodes_from_manifest, plugin_nodes_of
from .profiles import InputProfile, build_profiles

MAX_OPTIMIZATION_LEVEL = 5     # IBuilderConfig::setBuilderOptimizationLevel: 0..5, default 3 (NvInfer.h)


@dataclass
class BuildJob:
    kind: str                        # "prefill" or "decode": the manifest's graph kind
    onnx_path: Path
    engine_path: Path
    profile: list[InputProfile]
    plugin_nodes: list[PluginNode]
    onnx_sha256: str
    matches_manifest: bool           # the file's sha256 equals the one export recorded


@dataclass
class BuildRequest:
    manifest: dict
    manifest_path: Path
    jobs: list[BuildJob]
    timing_cache: Path | None = None
    workspace_mib: int | None = None
    optimization_level: int | None = None
    notes: list[str] = field(default_factory=list)   # things the user should know, not errors

    @property
    def required_plugins(self) -> list[tuple[str, str, str]]:
        """(name, version, namespace) of every plugin the graphs use, for the registry check."""
        return sorted({(n.op_type, n.version, n.namespace) for job in self.jobs for n in job.plugin_nodes})


def _check_options(workspace_mib, optimization_level, timing_cache) -> Path | None:
    if workspace_mib is not None and (not isinstance(workspace_mib, int) or workspace_mib < 1):
        raise MQDeployError(f"--workspace-mib {workspace_mib}: give a positive number of MiB (e.g. 4096)")
    if optimization_level is not None and (not isinstance(optimization_level, int)
                                           or not 0 <= optimization_level <= MAX_OPTIMIZATION_LEVEL):
        raise MQDeployError(f"--opt-level {optimization_level}: TensorRT's builder optimization level is 0 to "
                            f"{MAX_OPTIMIZATION_LEVEL} (default 3; higher builds slower, may run faster)")
    if timing_cache is None:
        return None
    cache = Path(timing_cache)
    if cache.exists() and not cache.is_file():
        raise MQDeployError(f"--timing-cache {cache} is not a file; give a file path (created if missing)")
    return cache


def prepare_build(onnx_path, engine_path, shapes: dict | None = None, decode: bool = True, timing_cache=None,
                  workspace_mib: int | None = None, optimization_level: int | None = None,
                  force: bool = False) -> BuildRequest:
    """Check the inputs and plan one job per engine: the --onnx graph, and its decode graph (from the
    manifest) unless decode=False. `shapes`: {'min'|'opt'|'max': 'name:1x1,...' or {name: dims}}."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise MQDeployError(f"--onnx {onnx_path} does not exist; export one with "
                            f"mq-deploy export --model DIR --onnx {onnx_path}")
    loaded = Manifest.load(onnx_path)
    manifest, mpath = loaded.raw, loaded.path
    kind = loaded.graph_of(onnx_path).kind
    notes = []
    sources = {kind: onnx_path}
    if decode and kind == "prefill":
        if "decode" in loaded.graphs:
            sources["decode"] = loaded.graph("decode").path
            if not sources["decode"].is_file():
                raise MQDeployError(f"{mpath} lists the decode graph {sources['decode']}, which is missing; "
                                    "re-export, or pass --no-decode to build the prefill engine alone")
        elif not loaded.is_vision:           # a classifier has no decode graph to build
            notes.append("the export has no decode graph (export --no-decode); building the prefill engine only")
    for entry in loaded.graphs.values():
        if entry.path in sources.values() and entry.external_data is not None and not entry.external_data.is_file():
            raise MQDeployError(f"incomplete export set: {entry.external_data.name} (the weights of "
                                f"{entry.path.name}) is missing beside {onnx_path}; re-export with mq-deploy export")
    engine_path = check_engine_path(engine_path, inputs=[*sources.values(), mpath])
    engines = {kind: engine_path, **({"decode": decode_engine_path(engine_path)} if "decode" in sources
                                     and kind != "decode" else {})}
    # never replace a plan or sidecar mq-deploy did not build; ours only with --force
    check_output_files([f for e in engines.values() for f in (sidecar_path(e), e)], "engine", is_own_engine_file,
                       force, inputs=[*sources.values(), mpath], option="--engine")
    shapes = dict(shapes or {})
    unknown = set(shapes) - {"min", "opt", "max"}
    if unknown:
        raise MQDeployError(f"unknown shape selector(s) {sorted(unknown)}: use min, opt and max")
    profiles = build_profiles(manifest, list(sources), shapes.get("min"), shapes.get("opt"), shapes.get("max"))
    cache = _check_options(workspace_mib, optimization_level, timing_cache)
    jobs = []
    for graph, path in sources.items():
        digest = loaded.sha256_of(path)
        matches = digest == loaded.graph(graph).sha256
        if not matches:
            notes.append(f"{path.name} differs from the file export wrote (sha256 mismatch with {MANIFEST_NAME}); "
                         "its inputs are assumed unchanged")
        recorded = plugin_nodes_from_manifest(loaded.graph(graph).raw) if matches else None
        nodes = recorded if recorded is not None else plugin_nodes_of(path)
        jobs.append(BuildJob(graph, path, engines[graph], profiles[graph], nodes, digest, matches))
    return BuildRequest(manifest, mpath, jobs, cache, workspace_mib, optimization_level, notes)


def print_notes(request: BuildRequest) -> None:
    for note in request.notes:
        print(f"note: {note}", file=sys.stderr)
