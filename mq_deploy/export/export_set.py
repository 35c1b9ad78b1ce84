"""What an export writes and may replace: every file of an export set at a given place, and the
previous set of ours there (recognised by its manifest's producer). Reading a set is
`mq_deploy.deploy.manifest.Manifest`'s job; naming its files is `mq_deploy.deploy.naming`'s."""

from __future__ import annotations

from pathlib import Path

from ..deploy.manifest import Manifest
from ..deploy.naming import decode_path, external_data_path, manifest_path
from ..errors import MQDeployError
from ..outputs import read_own_json


def candidate_files(onnx_path, decode: bool = True, external: bool = True) -> list[Path]:
    """Every file an export to `onnx_path` may write, in commit order (manifest last). With external
    data, the weights of both graphs live in the prefill graph's `<file>.data`."""
    graphs = [Path(onnx_path)] + ([decode_path(onnx_path)] if decode else [])
    return [*([external_data_path(onnx_path)] if external else []), *graphs, manifest_path(onnx_path)]


def previous_export(onnx_path) -> tuple[str | None, set[Path]]:
    """(prefill file name, files) of the mq-deploy export set whose manifest sits beside `onnx_path`,
    or (None, empty) when there is none (no manifest, or one mq-deploy did not write). The files are
    resolved paths, as the manifest records them: compare them with resolved paths."""
    mpath = manifest_path(onnx_path)
    if read_own_json(mpath) is None:
        return None, set()
    try:
        manifest = Manifest.load(mpath)
        graphs = manifest.graphs
        prefill = graphs.get("prefill", next(iter(graphs.values()))).path.name
    except (MQDeployError, StopIteration):
        return None, set()
    return prefill, set(manifest.files()) | {mpath.resolve()}
