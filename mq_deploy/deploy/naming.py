"""The file names of a deployed model: an export set (prefill graph, decode graph, their external
data, manifest.json: one set per folder) and an engine set (a plan per graph, a sidecar per plan).
One rule each, used by the writers and every reader."""

from __future__ import annotations

from pathlib import Path

MANIFEST_NAME = "manifest.json"
PLAN_SUFFIX = ".plan"


def manifest_path(onnx_path) -> Path:
    """model.onnx -> manifest.json beside it."""
    return Path(onnx_path).with_name(MANIFEST_NAME)


def decode_path(onnx_path) -> Path:
    """model.onnx -> model.decode.onnx (the single-token step graph)."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.decode{path.suffix or '.onnx'}")


def external_data_path(graph_path) -> Path:
    """model.onnx -> model.onnx.data: the weights stored outside the graph file (shared by the
    decode graph of the same set)."""
    path = Path(graph_path)
    return path.with_name(f"{path.name}.data")


def decode_engine_path(engine_path) -> Path:
    """model.plan -> model.decode.plan (the single-token step engine)."""
    path = Path(engine_path)
    return path.with_name(f"{path.stem}.decode{path.suffix or PLAN_SUFFIX}")


def sidecar_path(engine_path) -> Path:
    """model.plan -> model.plan.json (what the plan was built from and with)."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")
