"""`export_onnx`: an FP checkpoint or a deploy-mode quantized artifact -> the export set (prefill
graph, decode graph, external data where needed, manifest.json), checked, probed, written whole."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..atomic_dir import atomic_files
from ..errors import MQDeployError
from ..heap import release_free_memory
from ..outputs import check_output_files
from ..deploy.naming import decode_path, manifest_path
from .export_set import candidate_files, previous_export
from .graph_builder import build_graph
from .graph_files import serialize_graphs
from .manifest import build_manifest, manifest_bytes
from .probe import probe_export
from .source import load_export_source
from ..models.checkpoints import is_vision_checkpoint

PRECISIONS = ("fp16", "fp32")
SCANS = ("plugin", "onnx")


@dataclass
class ExportResult:
    onnx_path: Path
    decode_path: Path | None
    manifest_path: Path
    seconds: float
    bytes: dict[str, int] = field(default_factory=dict)      # graph kind -> file size
    manifest: dict = field(default_factory=dict, repr=False)      # manifest.json's content (kilobytes)


def check_export_target(onnx_path: Path, model_dir: Path, decode: bool, force: bool,
                        external: bool = True) -> set[Path]:
    """Before any work: may the export set be written at `onnx_path`? Returns the files of a previous
    export set of ours there (replaced with --force)."""
    if onnx_path.suffix != ".onnx":
        raise MQDeployError(f"--onnx {onnx_path}: the output file name must end in .onnx")
    prefill, previous = previous_export(onnx_path)
    if prefill is not None and prefill != onnx_path.name:
        raise MQDeployError(f"--onnx {onnx_path}: {manifest_path(onnx_path)} belongs to the export of {prefill}; "
                            "one export set per directory: export into another directory")
    check_output_files(candidate_files(onnx_path, decode, external), "export set", lambda p: p.resolve() in previous,
                       force, inputs=[model_dir], option="--onnx")
    return previous


def export_onnx(model_dir, onnx_path, precision: str = "fp16", scan: str = "plugin", decode: bool = True,
                batch_max: int | None = None, seq_max: int | None = None,
                external_data: bool | None = None, force: bool = False, probe: bool = True,
                fuse_quantize: bool = False) -> ExportResult:
    """Export to `onnx_path` (+ the decode graph `<stem>.decode.onnx` and manifest.json beside it).
    The graphs are checked and probed (ONNX Runtime, finite logits) before anything is moved into
    place; the set appears whole or not at all. external_data: None or True = the weights of both
    graphs stored once, in `<file>.data` beside them (graph_files.py); False = each graph one
    self-contained file (the weights twice; an error past protobuf's 2 GB).
    force: replace a previous export set of ours at that place (never anything else).
    fuse_quantize: emit each online Hadamard and the INT8 quantizer of the out_proj input after it as one
    HadamardQuantize plugin node (needs scan="plugin" and an artifact with such a pair)."""
    if precision not in PRECISIONS:
        raise MQDeployError(f"unknown precision {precision!r}: choose fp16 or fp32")
    if scan not in SCANS:
        raise MQDeployError(f"unknown scan form {scan!r}: choose plugin (TensorRT plugin + local function) or onnx")
    if fuse_quantize and scan != "plugin":
        raise MQDeployError("--fuse-quantize needs --scan plugin: the fused Hadamard + quantize step is a plugin "
                            "(HadamardQuantize); with --scan onnx the graph has standard ops only")
    for label, value in (("batch_max", batch_max), ("seq_max", seq_max)):
        if value is not None and value < 1:
            raise MQDeployError(f"{label} must be a positive integer, got {value}")
    onnx_path, model_dir = Path(onnx_path), Path(model_dir)
    official_vim = model_dir.is_file() and is_vision_checkpoint(model_dir)   # the FP baseline of a .pth
    if not (model_dir.is_dir() or official_vim):
        raise MQDeployError(f"--model {model_dir} does not exist or is not a directory; pass a model directory, an "
                            "official Vim .pth, or a quantized artifact made by `mq-deploy quantize`")
    vision = is_vision_checkpoint(model_dir)
    decode = decode and not vision         # a classifier sees whole images: no decode graph
    previous = check_export_target(onnx_path, model_dir, decode, force, external=external_data is not False)
    start = time.perf_counter()
    source = load_export_source(model_dir)
    if fuse_quantize and not source.fusable_quantizers():
        raise MQDeployError(f"--fuse-quantize: nothing to fuse in {model_dir}: it has no online Hadamard followed by "
                            "an INT8 out_proj input (recipes mambaquant, quarot and quamba at 8-bit activations "
                            "have one); drop --fuse-quantize")
    kinds = {"prefill": onnx_path, **({"decode": decode_path(onnx_path)} if decode else {})}
    built = {}

    def build(kind):
        # built when serialize_graphs is ready to store it: a graph's weights leave its proto for the
        # shared .data file before the next graph is built, so one graph's weights are in memory at a time
        release_free_memory()          # the previous graph's transient codes, before this one's
        try:
            graph = build_graph(source, precision, scan, decode=kind == "decode", fuse_quantize=fuse_quantize)
        except ValueError as e:
            raise MQDeployError(f"cannot export {model_dir}: {e}") from None
        # serialize_graphs holds the only reference: a proto's arena keeps every weight's bytes even
        # once they are moved to the .data file, and goes only with the proto itself
        model, graph.model = graph.model, None
        built[kind] = graph
        return model

    with atomic_files() as stage:
        files = serialize_graphs({kind: (functools.partial(build, kind), path) for kind, path in kinds.items()},
                                 external_data, stage)
        for kind, graph in built.items():       # the stored graph, light: its weights are in the .data file
            graph.model = onnx.load_from_string(files[kind].data)
        graphs = {kind: (path, built[kind], files[kind]) for kind, path in kinds.items()}
        if probe:
            release_free_memory()
            cfg = source.config
            probe_export(graphs["prefill"][2].staged, graphs["decode"][2].staged if decode else None,
                         getattr(cfg, "vocab_size", None), precision,
                         image_shape=(cfg.in_channels, cfg.img_size, cfg.img_size) if vision else None)
        seconds = time.perf_counter() - start
        manifest = build_manifest(source, precision, scan, graphs, seconds, batch_max, seq_max, onnx_path.parent)
        stage.file(manifest_path(onnx_path)).write_bytes(manifest_bytes(manifest))
        for old in previous - {t.resolve() for t in stage.targets}:   # files of the previous set the new one drops
            stage.remove(old)
    return ExportResult(onnx_path, kinds.get("decode"), manifest_path(onnx_path), seconds,
                        {k: len(g[2].data) + g[2].external_bytes for k, g in graphs.items()}, manifest)
