"""Engine + sidecar files: names, atomic writes (a failed write leaves the previous pair intact and no
temporary files), and the engine-path checks that run before a build."""

from __future__ import annotations

import hashlib

import pytest

from mq_deploy.errors import MQDeployError
from mq_deploy.files import file_sha256
from mq_deploy.trt.engine_files import (
    SIDECAR_KEYS,
    check_engine_path,
    decode_engine_path,
    read_sidecar,
    sidecar_path,
    write_engine_files,
)


def sidecar(**values) -> dict:
    """A sidecar with every key its readers use (stage_engine_files refuses one without), set to None
    unless given."""
    return {**dict.fromkeys(SIDECAR_KEYS), **values}


def test_names():
    assert sidecar_path("out/model.plan").as_posix() == "out/model.plan.json"
    assert decode_engine_path("out/model.plan").as_posix() == "out/model.decode.plan"
    assert decode_engine_path("out/model.engine").as_posix() == "out/model.decode.engine"
    assert decode_engine_path("out/model").as_posix() == "out/model.decode.plan"


def test_write_and_read_back(tmp_path):
    plan = bytes(range(256)) * 10
    engine, meta = write_engine_files(tmp_path / "sub" / "model.plan", plan, sidecar(sha256=hashlib.sha256(plan).hexdigest()))
    assert engine.read_bytes() == plan and meta == sidecar_path(engine)
    assert read_sidecar(engine)["sha256"] == file_sha256(engine)
    assert sorted(p.name for p in engine.parent.iterdir()) == ["model.plan", "model.plan.json"]
    assert read_sidecar(tmp_path / "other.plan") is None


def test_unserializable_sidecar_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_engine_files(tmp_path / "model.plan", b"plan", sidecar(bad=object()))
    assert list(tmp_path.iterdir()) == []


def test_failed_plan_write_keeps_the_previous_pair_and_no_temporaries(tmp_path):
    engine = tmp_path / "model.plan"
    write_engine_files(engine, b"old plan", sidecar(version="old"))
    with pytest.raises(TypeError):
        write_engine_files(engine, 12345, sidecar(version="new"))     # not bytes: fails while staging the plan
    assert engine.read_bytes() == b"old plan" and read_sidecar(engine) == sidecar(version="old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.plan", "model.plan.json"]


def test_unreadable_sidecar_is_a_clear_error(tmp_path):
    sidecar_path(tmp_path / "m.plan").write_text("{not json")
    with pytest.raises(MQDeployError, match="not readable JSON .* rebuild the engine"):
        read_sidecar(tmp_path / "m.plan")


def test_engine_path_checks(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"x")
    (tmp_path / "file").write_text("x")
    assert check_engine_path(tmp_path / "new" / "deeper" / "model.plan") == tmp_path / "new" / "deeper" / "model.plan"
    for path, message in [(tmp_path, "is a directory"), (onnx, "should not end in .onnx"),
                          (tmp_path / "m.json", "should not end in .json"),
                          (tmp_path / "file" / "model.plan", "is a file, not a directory")]:
        with pytest.raises(MQDeployError, match=message):
            check_engine_path(path, inputs=[onnx])
    same = tmp_path / "weights.bin"
    with pytest.raises(MQDeployError, match="is one of the input files"):
        check_engine_path(same, inputs=[same])
    assert not (tmp_path / "new").exists()      # checking creates nothing
