"""Serializing a checked graph to its file(s): one .onnx, or for graphs past protobuf's 2 GB limit
(or on request) an .onnx plus `<name>.onnx.data` holding the large initializers (ONNX external
data, which ONNX Runtime and TensorRT's parser read from beside the graph).

Everything is staged first (a hidden temporary directory beside the output for external data) and
moved into place only after every graph of the export passed its check: data files first, graphs
last, so a graph on disk always has its data, and a failed export leaves nothing new behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data, write_external_data_tensors

from ..errors import MQDeployError
from .check import check_model
from .files import file_sha256, write_atomic

MAX_PROTO_BYTES = 2_000_000_000          # protobuf's 2 GiB limit, with a margin
EXTERNAL_MIN_TENSOR_BYTES = 4096         # smaller tensors stay in the graph
INLINE_SUFFIXES = ("_scale", "_zero_point")   # Q/DQ constants stay too: the check reads their values


@dataclass
class GraphFile:
    path: Path
    data: bytes                          # the serialized ModelProto (without the external tensors)
    staging: Path | None = None          # temporary directory holding the .data file
    external_name: str | None = None
    external_bytes: int = 0
    external_sha256: str | None = None

    def manifest_entry(self) -> dict:
        if self.external_name is None:
            return {}
        return {"external_data": {"file": self.external_name, "bytes": self.external_bytes,
                                  "sha256": self.external_sha256}}


def serialize_graph(model: onnx.ModelProto, path: Path, kind: str, external: bool | None) -> GraphFile:
    """Check and serialize `model` for `path`. external=None: external data only past 2 GB."""
    size = model.ByteSize()
    if external is None:
        external = size > MAX_PROTO_BYTES
    if not external:
        if size > MAX_PROTO_BYTES:
            raise MQDeployError(f"the {kind} graph is {size / 1e9:.1f} GB, over protobuf's 2 GB single-file limit; "
                                "drop --no-external-data so its weights go to a .onnx.data file beside it")
        _raise_on_problems(check_model(model), kind)
        return GraphFile(path, model.SerializeToString())
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        name = f"{path.name}.data"
        for tensor in model.graph.initializer:
            if (tensor.HasField("raw_data") and len(tensor.raw_data) >= EXTERNAL_MIN_TENSOR_BYTES
                    and not tensor.name.endswith(INLINE_SUFFIXES)):
                set_external_data(tensor, location=name)
        write_external_data_tensors(model, str(staging))           # moves the raw bytes out of the proto
        data = model.SerializeToString()
        (staging / path.name).write_bytes(data)
        _raise_on_problems(check_model(model, path=staging / path.name), kind)
        data_file = staging / name
        if not data_file.exists():                                 # nothing was large enough
            data_file.write_bytes(b"")
        return GraphFile(path, data, staging, name, data_file.stat().st_size, file_sha256(data_file))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _raise_on_problems(problems, kind: str) -> None:
    if problems:
        raise MQDeployError(f"the exported {kind} graph fails its check (nothing was written):\n  "
                            + "\n  ".join(map(str, problems)))


def commit(files: list[GraphFile]) -> None:
    """Move every staged file into place: external data first, graphs last."""
    try:
        for f in files:
            if f.staging is not None:
                os.replace(f.staging / f.external_name, f.path.with_name(f.external_name))
        for f in files:
            write_atomic(f.path, f.data)
    except OSError as e:
        raise MQDeployError(f"cannot write the exported files beside {files[0].path} ({e.strerror}); "
                            "check the path and free disk space") from None
    finally:
        discard(files)


def discard(files: list[GraphFile]) -> None:
    for f in files:
        if f.staging is not None:
            shutil.rmtree(f.staging, ignore_errors=True)
