"""Serializing the checked graphs of an export set to files. By default the weights of both graphs
are stored once: every initializer of at least 4 KB goes to `<prefill>.onnx.data` (ONNX external
data, which ONNX Runtime and TensorRT's parser read beside the graph), and the decode graph's
identical tensors point at the same bytes (same file, offset, length) instead of a second copy.
`external=False` keeps each graph in one self-contained file (two copies of the weights; below
protobuf's 2 GB limit only).

Files are written into the export's staging directory (`mq_deploy.atomic_dir.atomic_files`), data
file before the graphs, and moved into place only after every graph passed its check and the
probe run, so a graph on disk always has its data and a failed export leaves nothing new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data, write_external_data_tensors

from ..atomic_dir import StagedFiles
from ..deploy.naming import external_data_path
from ..errors import MQDeployError
from ..files import file_sha256
from .check import check_model

MAX_PROTO_BYTES = 2_000_000_000          # protobuf's 2 GiB limit, with a margin
EXTERNAL_MIN_TENSOR_BYTES = 4096         # smaller tensors stay in the graph
INLINE_SUFFIXES = ("_scale", "_zero_point")   # Q/DQ constants stay too: the check reads their values


@dataclass
class GraphFile:
    path: Path                           # where the graph will live
    staged: Path                         # where it is now
    data: bytes                          # the serialized ModelProto (without the external tensors)
    external_name: str | None = None
    external_bytes: int = 0
    external_sha256: str | None = None

    def manifest_entry(self) -> dict:
        if self.external_name is None:
            return {}
        return {"external_data": {"file": self.external_name, "bytes": self.external_bytes,
                                  "sha256": self.external_sha256}}


def _goes_outside(tensor: onnx.TensorProto) -> bool:
    return (tensor.HasField("raw_data") and len(tensor.raw_data) >= EXTERNAL_MIN_TENSOR_BYTES
            and not tensor.name.endswith(INLINE_SUFFIXES))


def _external_entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tensor.external_data}


class SharedWeights:
    """The one external data file of an export set: tensors written once, found again by name and
    content (a digest of the bytes), so the decode graph reuses the prefill graph's weights."""

    def __init__(self, target: Path, staged: Path):
        self.target, self.staged = target, staged
        self.written: dict[tuple[str, str], dict[str, str]] = {}   # (name, digest) -> location/offset/length

    def store(self, model: onnx.ModelProto) -> None:
        """Move every large initializer of `model` out of the proto: a reference to bytes already in
        the file when an identical tensor was stored before, else appended to the file."""
        fresh = []
        for tensor in model.graph.initializer:
            if not _goes_outside(tensor):
                continue
            key = (tensor.name, hashlib.sha256(tensor.raw_data).hexdigest())
            if key in self.written:
                entry = self.written[key]
                set_external_data(tensor, location=entry["location"], offset=int(entry["offset"]),
                                  length=int(entry["length"]))
                tensor.ClearField("raw_data")             # the bytes are in the file already
            else:
                set_external_data(tensor, location=self.target.name)
                fresh.append((key, tensor))
        write_external_data_tensors(model, str(self.staged.parent))   # appends the fresh ones, clears raw_data
        for key, tensor in fresh:
            self.written[key] = _external_entries(tensor)
        if not self.staged.exists():                                   # nothing was large enough
            self.staged.write_bytes(b"")


def serialize_graphs(models: dict[str, tuple[onnx.ModelProto | Callable[[], onnx.ModelProto], Path]],
                     external: bool | None, stage: StagedFiles) -> dict[str, GraphFile]:
    """Check each graph and write it into `stage`, in order; a graph given as a function is built
    just before it is stored. external (None: shared external data, the default): one weights file
    for the set; False: self-contained graphs."""
    external = True if external is None else external
    files: dict[str, GraphFile] = {}
    shared = None
    if external:
        first = next(iter(models.values()))[1]
        target = external_data_path(first)
        shared = SharedWeights(target, stage.file(target))          # registered first: committed first
    for kind, (model, path) in models.items():
        model = model() if callable(model) else model          # a graph may be built only now
        if shared is None:
            if model.ByteSize() > MAX_PROTO_BYTES:
                raise MQDeployError(f"the {kind} graph is {model.ByteSize() / 1e9:.1f} GB, over protobuf's 2 GB "
                                    "single-file limit; drop --no-external-data so its weights go to a .onnx.data "
                                    "file beside it")
            _raise_on_problems(check_model(model), kind)
            data = model.SerializeToString()
            staged = stage.file(path)
            staged.write_bytes(data)
            files[kind] = GraphFile(path, staged, data)
            continue
        shared.store(model)
        data = model.SerializeToString()
        staged = stage.file(path)
        staged.write_bytes(data)
        _raise_on_problems(check_model(model, path=staged), kind)
        files[kind] = GraphFile(path, staged, data, shared.target.name)
    if shared is not None:                  # the file is final only once every graph is stored
        size, digest = shared.staged.stat().st_size, file_sha256(shared.staged)
        for f in files.values():
            f.external_bytes, f.external_sha256 = size, digest
    return files


def _raise_on_problems(problems, kind: str) -> None:
    if problems:
        shown = "; ".join(map(str, problems[:3])) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise MQDeployError(f"the exported {kind} graph fails its check (nothing was written): {shown}")
