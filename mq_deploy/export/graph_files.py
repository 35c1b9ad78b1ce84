"""Serializing a checked graph to its file(s): one .onnx, or for graphs past protobuf's 2 GB limit
(or on request) an .onnx plus `<name>.onnx.data` holding the large initializers (ONNX external
data, which ONNX Runtime and TensorRT's parser read from beside the graph).

Files are written into the export's staging directory (`mq_deploy.atomic_dir.atomic_files`), data
file before its graph, and moved into place only after every graph of the export passed its check
and its probe run, so a graph on disk always has its data and a failed export leaves nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx.external_data_helper import set_external_data, write_external_data_tensors

from ..atomic_dir import StagedFiles
from ..errors import MQDeployError
from .check import check_model
from .export_set import external_data_path
from .files import file_sha256

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


def serialize_graph(model: onnx.ModelProto, path: Path, kind: str, external: bool | None,
                    stage: StagedFiles) -> GraphFile:
    """Check `model` and write it for `path` into `stage`. external=None: external data only past 2 GB."""
    size = model.ByteSize()
    if external is None:
        external = size > MAX_PROTO_BYTES
    if not external:
        if size > MAX_PROTO_BYTES:
            raise MQDeployError(f"the {kind} graph is {size / 1e9:.1f} GB, over protobuf's 2 GB single-file limit; "
                                "drop --no-external-data so its weights go to a .onnx.data file beside it")
        _raise_on_problems(check_model(model), kind)
        data = model.SerializeToString()
        staged = stage.file(path)
        staged.write_bytes(data)
        return GraphFile(path, staged, data)
    data_target = external_data_path(path)
    data_file = stage.file(data_target)                       # registered first: committed before its graph
    for tensor in model.graph.initializer:
        if (tensor.HasField("raw_data") and len(tensor.raw_data) >= EXTERNAL_MIN_TENSOR_BYTES
                and not tensor.name.endswith(INLINE_SUFFIXES)):
            set_external_data(tensor, location=data_target.name)
    write_external_data_tensors(model, str(data_file.parent))  # moves the raw bytes out of the proto
    if not data_file.exists():                                 # nothing was large enough
        data_file.write_bytes(b"")
    data = model.SerializeToString()
    staged = stage.file(path)
    staged.write_bytes(data)
    _raise_on_problems(check_model(model, path=staged), kind)
    return GraphFile(path, staged, data, data_target.name, data_file.stat().st_size, file_sha256(data_file))


def _raise_on_problems(problems, kind: str) -> None:
    if problems:
        shown = "; ".join(map(str, problems[:3])) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise MQDeployError(f"the exported {kind} graph fails its check (nothing was written): {shown}")
