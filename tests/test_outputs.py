"""Outputs appear whole or not at all, and never replace what mq-deploy did not write: the atomic
writers under failures and Ctrl-C at every step of the final renames, and --force on our own
previous outputs (the refusals themselves are rows of tests/test_bad_inputs.py)."""

from __future__ import annotations

import json
import os

from pathlib import Path

import pytest

from mq_deploy.atomic_dir import atomic_directory, atomic_files
from mq_deploy.errors import MQDeployError

pytest.importorskip("onnxruntime")


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def interrupt_on_rename(monkeypatch, module, n: int):
    """Make the n-th os.replace in `module` raise KeyboardInterrupt (a Ctrl-C mid-commit)."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(src, dst)
    monkeypatch.setattr(module.os, "replace", replace)
    return calls


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_a_file_set_interrupted_at_any_rename_leaves_the_previous_set(tmp_path, monkeypatch, n):
    import mq_deploy.atomic_dir as atomic_dir
    for name, text in (("a.onnx", "old a"), ("manifest.json", "old m"), ("mine.txt", "user")):
        (tmp_path / name).write_text(text)
    interrupt_on_rename(monkeypatch, atomic_dir, n)
    with pytest.raises(KeyboardInterrupt):
        with atomic_files() as stage:
            stage.file(tmp_path / "a.onnx").write_text("new a")
            stage.file(tmp_path / "b.onnx").write_text("new b")
            stage.file(tmp_path / "manifest.json").write_text("new m")
    assert listing(tmp_path) == ["a.onnx", "manifest.json", "mine.txt"]      # no b.onnx, no staging dir
    assert [(tmp_path / f).read_text() for f in ("a.onnx", "manifest.json", "mine.txt")] == ["old a", "old m", "user"]


def test_a_file_set_commits_in_order_and_drops_what_it_was_told_to(tmp_path):
    (tmp_path / "old.data").write_text("stale")
    with atomic_files() as stage:
        stage.file(tmp_path / "g.onnx").write_text("g")
        stage.file(tmp_path / "manifest.json").write_text("m")
        stage.remove(tmp_path / "old.data")
    assert listing(tmp_path) == ["g.onnx", "manifest.json"]


@pytest.mark.parametrize("n", [1, 2])
def test_a_directory_interrupted_while_replacing_keeps_the_old_one(tmp_path, monkeypatch, n):
    import mq_deploy.atomic_dir as atomic_dir
    out = tmp_path / "art"
    out.mkdir()
    (out / "quant.json").write_text("old")
    interrupt_on_rename(monkeypatch, atomic_dir, n)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(out, replace=True) as tmp:
            (tmp / "quant.json").write_text("new")
    assert listing(tmp_path) == ["art", "art/quant.json"] and (out / "quant.json").read_text() == "old"


def test_a_failed_write_removes_the_directories_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_files() as stage:
            stage.file(tmp_path / "new" / "deeper" / "x.onnx").write_text("x")
            raise RuntimeError("export failed")
    assert listing(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "made" / "q"):
            raise RuntimeError("calibration failed")
    assert listing(tmp_path) == []


# ---- the verbs: --force replaces our own previous output, and only that ---------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    root = tmp_path_factory.mktemp("outputs")
    text = root / "calib.txt"
    text.write_text("Outputs appear whole or not at all, and nothing else is touched. " * 40)
    save_model(init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=48, num_hidden_layers=2,
                                                      state_size=8, time_step_rank=12, tokenizer="bytes")), seed=5),
               root / "fp")
    return root


def test_quantize_force_replaces_a_previous_artifact(model, tmp_path):
    from mq_deploy.api import quantize_checkpoint
    kwargs = dict(calib=str(model / "calib.txt"), calib_samples=2, calib_seq_len=64, progress=False)
    quantize_checkpoint(model / "fp", tmp_path / "q", recipe="rtn", **kwargs)
    with pytest.raises(MQDeployError, match="pass --force"):
        quantize_checkpoint(model / "fp", tmp_path / "q", **kwargs)
    assert json.loads((tmp_path / "q" / "quant.json").read_text())["recipe"] == "rtn"
    quantize_checkpoint(model / "fp", tmp_path / "q", force=True, **kwargs)
    assert json.loads((tmp_path / "q" / "quant.json").read_text())["recipe"] == "mambaquant"
    assert listing(tmp_path) == ["q", "q/config.json", "q/model.safetensors", "q/quant.json", "q/report.json",
                                 "q/transforms.safetensors"]
    (tmp_path / "q" / "notes.txt").write_text("mine")          # no longer only ours: --force is refused
    with pytest.raises(MQDeployError, match="is not an mq-deploy quantized artifact"):
        quantize_checkpoint(model / "fp", tmp_path / "q", force=True, **kwargs)
    assert (tmp_path / "q" / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()                                 # an empty directory is free
    quantize_checkpoint(model / "fp", tmp_path / "empty", **kwargs)
    assert (tmp_path / "empty" / "quant.json").is_file()


def test_export_force_replaces_the_previous_set_whole(model, tmp_path):
    from mq_deploy.deploy.manifest import Manifest
    from mq_deploy.export import export_onnx
    out = tmp_path / "onnx" / "model.onnx"
    export_onnx(model / "fp", out, precision="fp32", external_data=True)
    assert listing(tmp_path / "onnx") == ["manifest.json", "model.decode.onnx", "model.onnx", "model.onnx.data"]
    (tmp_path / "onnx" / "README.txt").write_text("a user's file beside the export")
    with pytest.raises(MQDeployError, match="pass --force"):
        export_onnx(model / "fp", out, precision="fp32")
    # the new set has no decode graph and no external data: the old set's files go, the user's stays
    export_onnx(model / "fp", out, precision="fp32", decode=False, external_data=False, force=True)
    assert listing(tmp_path / "onnx") == ["README.txt", "manifest.json", "model.onnx"]
    assert list(Manifest.load(out).require_complete().graphs) == ["prefill"]


def test_export_force_replaces_a_set_given_by_a_relative_path(model, tmp_path, monkeypatch):
    """`mq-deploy export --onnx e/model.onnx --force` from the directory holding e/: the manifest
    records absolute paths, the user types a relative one; the set is still recognised as ours, and
    a second --force export drops the decode graph as asked."""
    from mq_deploy.export import export_onnx
    monkeypatch.chdir(tmp_path)
    out = Path("e") / "model.onnx"
    export_onnx(model / "fp", out, precision="fp32", external_data=True)
    with pytest.raises(MQDeployError, match="pass --force"):
        export_onnx(model / "fp", out, precision="fp32")
    export_onnx(model / "fp", out, precision="fp32", external_data=True, force=True)
    assert listing(tmp_path / "e") == ["manifest.json", "model.decode.onnx", "model.onnx", "model.onnx.data"]
    export_onnx(model / "fp", out, precision="fp32", decode=False, external_data=False, force=True)
    assert listing(tmp_path / "e") == ["manifest.json", "model.onnx"]


def test_export_interrupted_before_the_manifest_leaves_no_half_set(model, tmp_path, monkeypatch):
    """Ctrl-C after the prefill graph was moved in: it is taken out again, nothing is left, and a
    previous complete set stays complete (`check` accepts it)."""
    import mq_deploy.atomic_dir as atomic_dir
    from mq_deploy.export import check_onnx, export_onnx
    out = tmp_path / "model.onnx"
    interrupt_on_rename(monkeypatch, atomic_dir, 2)      # 1: prefill graph in; 2: decode graph
    with pytest.raises(KeyboardInterrupt):
        export_onnx(model / "fp", out, precision="fp32")
    assert listing(tmp_path) == []
    monkeypatch.undo()
    export_onnx(model / "fp", out, precision="fp32")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    interrupt_on_rename(monkeypatch, atomic_dir, 4)      # 1-3: the old files out; 4: new prefill in
    with pytest.raises(KeyboardInterrupt):
        export_onnx(model / "fp", out, precision="fp16", force=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert check_onnx(out) == []


def test_saving_a_model_never_replaces_a_directory(tmp_path):
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.loading import save_model
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("x")
    with pytest.raises(MQDeployError, match="not empty"):
        save_model(MambaLM(MambaConfig(vocab_size=16, hidden_size=16, num_hidden_layers=1)), tmp_path / "m")
    assert listing(tmp_path) == ["m", "m/keep.txt"]
