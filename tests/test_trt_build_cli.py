"""`mq-deploy build` and the checks that run before TensorRT: missing ONNX or manifest, bad shape
strings and options, the jobs planned from a real export (prefill + decode engines, required plugins),
and, where TensorRT is not installed, one `error:` line, exit status 2 and no engine file."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys

import pytest

from mq_deploy.cli import main
from mq_deploy.errors import MQDeployError
from mq_deploy.trt.build_request import prepare_build
from mq_deploy.trt.plugin_layers import plugin_nodes_of

pytest.importorskip("onnx")
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random model exported to <tmp>/onnx/model.onnx (+ model.decode.onnx, manifest.json)."""
    from mq_deploy.export import export_onnx
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    root = tmp_path_factory.mktemp("trt_build")
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2,
                                                   state_size=4)), seed=1).eval()
    save_model(model, root / "fp")
    return export_onnx(root / "fp", root / "onnx" / "model.onnx").onnx_path


@pytest.fixture
def copy_of(exported, tmp_path):
    """A private copy of the export's directory, to break."""
    target = tmp_path / "onnx"
    shutil.copytree(exported.parent, target)
    return target / exported.name


def run_build(capsys, *args):
    code = main(["build", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def test_plugin_nodes_of_a_real_export(exported):
    nodes = plugin_nodes_of(exported)
    assert [(n.name, n.op_type, n.version, n.namespace) for n in nodes] == [
        (f"backbone.layers.{i}.mixer.selective_scan", "SelectiveScan", "1", "mq_deploy") for i in range(2)]
    assert plugin_nodes_of(exported.with_name("model.decode.onnx")) == []     # decode: standard ops only


def test_prepare_plans_prefill_and_decode_engines(exported, tmp_path):
    request = prepare_build(exported, tmp_path / "out" / "model.plan", shapes={"max": "input_ids:2x128"},
                            timing_cache=tmp_path / "cache.bin", workspace_mib=1024, optimization_level=3)
    assert [(j.kind, j.engine_path.name, j.onnx_path.name) for j in request.jobs] == [
        ("prefill", "model.plan", "model.onnx"), ("decode", "model.decode.plan", "model.decode.onnx")]
    assert all(j.matches_manifest for j in request.jobs) and request.notes == []
    assert request.required_plugins == [("SelectiveScan", "1", "mq_deploy")]
    assert request.jobs[0].profile[0].max == (2, 128) and request.jobs[1].profile[0].max == (2, 1)
    assert not (tmp_path / "out").exists()
    only = prepare_build(exported, tmp_path / "model.plan", decode=False)
    assert [j.kind for j in only.jobs] == ["prefill"]
    decode_alone = prepare_build(exported.with_name("model.decode.onnx"), tmp_path / "step.plan")
    assert [(j.kind, j.engine_path.name) for j in decode_alone.jobs] == [("decode", "step.plan")]


def _write_engine_set(request, plans: dict) -> dict:
    """The sidecars `build` writes for `plans` ({kind: plan bytes}), through the shipped record and
    file layer; the plan bytes stand for plans only as bytes (nothing here deserializes them)."""
    from mq_deploy.atomic_dir import atomic_files
    from mq_deploy.trt.builder import sidecar_record
    from mq_deploy.trt.engine_files import stage_engine_files
    sidecars = {}
    with atomic_files() as stage:
        for job in request.jobs:
            sidecars[job.kind] = sidecar_record(
                request, job, plans[job.kind], 1.25, tensorrt={"version": "n/a"}, inputs=[], outputs=[],
                plugin_layers=[n.name for n in job.plugin_nodes], library_info=None, gpu=None)
            stage_engine_files(stage, job.engine_path, plans[job.kind], sidecars[job.kind])
    return sidecars


def test_sidecars_carry_what_their_readers_read(exported, tmp_path, capsys):
    """Each sidecar names its plan, its size and sha256 (computed here independently), the set it was
    built with, and reads back through the shipped readers: build's summary, is_own_engine_file and
    TensorRTSession's choice of decode plan."""
    from mq_deploy.cli.deploy_verbs import print_build_summary
    from mq_deploy.trt.engine_files import is_own_engine_file
    from mq_deploy.trt.session import decode_plan_of
    request = prepare_build(exported, tmp_path / "model.plan")
    plans = {"prefill": b"p" * 3_000_000, "decode": b"d" * 1_000_000}
    sidecars = _write_engine_set(request, plans)
    for kind, name in (("prefill", "model.plan"), ("decode", "model.decode.plan")):
        on_disk = json.loads((tmp_path / f"{name}.json").read_text())
        assert on_disk["engine"] == name and on_disk["graph"] == kind
        assert on_disk["bytes"] == len(plans[kind]) == (tmp_path / name).stat().st_size
        assert on_disk["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert on_disk["engine_set"] == {"prefill": "model.plan", "decode": "model.decode.plan"}
        assert is_own_engine_file(tmp_path / name)
    assert decode_plan_of(tmp_path / "model.plan") == tmp_path / "model.decode.plan"
    print_build_summary({"tensorrt": "n/a", "plugin_library": None, "engines": sidecars})
    out = capsys.readouterr().out
    assert "prefill  model.plan  3.0 MB in 1.2 s, 2 plugin layers" in out
    assert "decode   model.decode.plan  1.0 MB in 1.2 s, 0 plugin layers" in out


def test_a_sidecar_missing_a_key_is_never_written(exported, tmp_path):
    from mq_deploy.atomic_dir import atomic_files
    from mq_deploy.trt.builder import sidecar_record
    from mq_deploy.trt.engine_files import stage_engine_files
    request = prepare_build(exported, tmp_path / "model.plan", decode=False)
    job = request.jobs[0]
    sidecar = sidecar_record(request, job, b"plan", 1.0, tensorrt={}, inputs=[], outputs=[], plugin_layers=[],
                             library_info=None, gpu=None)
    del sidecar["bytes"]
    with pytest.raises(MQDeployError, match=r"lacks \['bytes'\]"):
        with atomic_files() as stage:
            stage_engine_files(stage, job.engine_path, b"plan", sidecar)
    assert list(tmp_path.iterdir()) == []


def test_session_pairs_the_prefill_plan_with_its_own_decode_plan(exported, tmp_path):
    """A prefill plan built with --no-decode is never paired with a decode plan left beside it."""
    from mq_deploy.trt.session import decode_plan_of
    _write_engine_set(prepare_build(exported, tmp_path / "model.plan"), {"prefill": b"1", "decode": b"2"})
    _write_engine_set(prepare_build(exported, tmp_path / "model.plan", decode=False, force=True), {"prefill": b"3"})
    assert (tmp_path / "model.decode.plan").is_file()           # an earlier build's, not this set's
    with pytest.raises(MQDeployError, match="built without a decode engine .*--decode-steps 0"):
        decode_plan_of(tmp_path / "model.plan")


def test_export_without_decode_graph_is_a_note(copy_of, tmp_path):
    manifest_file = copy_of.with_name("manifest.json")
    manifest = json.loads(manifest_file.read_text())
    del manifest["graphs"]["decode"]
    manifest_file.write_text(json.dumps(manifest))
    request = prepare_build(copy_of, tmp_path / "model.plan")
    assert [j.kind for j in request.jobs] == ["prefill"] and "no decode graph" in request.notes[0]


def test_modified_onnx_is_a_note_not_an_error(copy_of, tmp_path):
    import onnx
    model = onnx.load(str(copy_of))
    model.doc_string = "edited by hand"
    onnx.save(model, str(copy_of))
    request = prepare_build(copy_of, tmp_path / "model.plan", decode=False)
    assert not request.jobs[0].matches_manifest and "sha256 mismatch" in request.notes[0]


@pytest.mark.parametrize("breakage, message", [
    ("no manifest", "no manifest.json beside .*re-export with `mq-deploy export`"),
    ("bad json", "cannot read .*manifest.json"),
    ("other version", "is not a version-1 mq-deploy manifest"),
    ("renamed", "describes model.onnx, model.decode.onnx, not renamed.onnx"),
    ("decode missing", "lists the decode graph .*missing; re-export, or pass --no-decode"),
])
def test_broken_exports_are_one_clear_error(copy_of, tmp_path, breakage, message):
    manifest_file = copy_of.with_name("manifest.json")
    onnx_path = copy_of
    if breakage == "no manifest":
        manifest_file.unlink()
    elif breakage == "bad json":
        manifest_file.write_text("{")
    elif breakage == "other version":
        manifest_file.write_text(json.dumps({"manifest_version": 99, "graphs": {}}))
    elif breakage == "renamed":
        onnx_path = copy_of.rename(copy_of.with_name("renamed.onnx"))
    else:
        copy_of.with_name("model.decode.onnx").unlink()
    with pytest.raises(MQDeployError, match=message):
        prepare_build(onnx_path, tmp_path / "model.plan")


@pytest.mark.parametrize("kwargs, message", [
    ({"workspace_mib": 0}, "--workspace-mib 0: give a positive number"),
    ({"optimization_level": 6}, "--opt-level 6: .* 0 to 5"),
    ({"timing_cache": "{tmp}"}, "--timing-cache .* is not a file"),
    ({"shapes": {"best": "input_ids:1x1"}}, "unknown shape selector"),
])
def test_bad_options(exported, tmp_path, kwargs, message):
    kwargs = {k: (v.format(tmp=tmp_path) if isinstance(v, str) else v) for k, v in kwargs.items()}
    with pytest.raises(MQDeployError, match=message):
        prepare_build(exported, tmp_path / "model.plan", **kwargs)


@pytest.mark.parametrize("args, message", [
    (["--onnx", "{dir}/missing.onnx"], "--onnx .*missing.onnx does not exist; export one with mq-deploy export"),
    (["--onnx", "{onnx}", "--min", "input_ids:1xa"], "--min 'input_ids:1xa': 'input_ids:1xa' is not NAME:DIMS"),
    (["--onnx", "{onnx}", "--max", "input_ids:1x1x1"], "has 3 dims but input_ids is \\[batch, seqlen\\]"),
    (["--onnx", "{onnx}", "--opt", "tokens:1x8"], "unknown input 'tokens'"),
    (["--onnx", "{onnx}", "--min", "input_ids:2x8", "--max", "input_ids:1x8"], "batch needs min <= opt <= max"),
])
def test_cli_argument_errors_are_one_line_exit_2(exported, tmp_path, capsys, args, message):
    args = [a.format(dir=tmp_path, onnx=exported) for a in args]
    code, err = run_build(capsys, *args, "--engine", tmp_path / "out" / "model.plan")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "out").exists()


def test_cli_missing_manifest(copy_of, tmp_path, capsys):
    copy_of.with_name("manifest.json").unlink()
    code, err = run_build(capsys, "--onnx", copy_of, "--engine", tmp_path / "model.plan")
    assert code == 2 and len(err) == 1 and "no manifest.json beside" in err[0]


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_one_line_exit_2_and_no_engine(exported, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "mq_deploy", "build", "--onnx", str(exported), "--engine",
                           str(out / "model.plan"), "--max", "input_ids:2x64"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        ("error: TensorRT's Python package is not installed: pip install tensorrt (10.x or 11.x; or pip install -e "
         "'.[trt]') on a machine with an NVIDIA GPU and driver")]
    assert not out.exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_runtime_without_tensorrt_is_one_error(tmp_path):
    from mq_deploy.trt.runtime import load_engine
    with pytest.raises(MQDeployError, match="does not exist; build it with mq-deploy build"):
        load_engine(tmp_path / "missing.plan")
    (tmp_path / "model.plan").write_bytes(b"not a plan")
    with pytest.raises(MQDeployError, match="pip install tensorrt"):
        load_engine(tmp_path / "model.plan")


def test_plugin_library_resolution_errors(tmp_path, monkeypatch):
    from mq_deploy.trt.plugin_loading import resolve_plugin_library
    monkeypatch.delenv("MQ_PLUGIN_PATH", raising=False)
    with pytest.raises(MQDeployError, match="--plugins .*does not exist; give the path of libmq_plugins.so.*cmake -S"):
        resolve_plugin_library(tmp_path / "nowhere.so")
    with pytest.raises(MQDeployError, match="libmq_plugins.so"):
        resolve_plugin_library(tmp_path)                       # a directory without the library
    monkeypatch.setenv("MQ_PLUGIN_PATH", str(tmp_path / "gone"))
    with pytest.raises(MQDeployError, match="MQ_PLUGIN_PATH=.*does not exist"):
        resolve_plugin_library()
    library = tmp_path / "libmq_plugins.so"
    library.write_bytes(b"")
    monkeypatch.setenv("MQ_PLUGIN_PATH", str(tmp_path))
    assert resolve_plugin_library() == library and resolve_plugin_library(library) == library


def test_build_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["build", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "usage: mq-deploy build" in out
    for option in ("--onnx", "--engine", "--plugins", "--min", "--opt", "--max", "--timing-cache",
                   "--workspace-mib", "--opt-level", "--no-decode"):
        assert option in out


def test_ctrl_c_during_a_build_cancels_through_the_monitor():
    """While TensorRT builds, SIGINT must not raise inside a callback (the bindings would swallow it and
    report a failed build), and TensorRT may call the monitor from its own threads, where no Python
    signal handler runs: the monitor's step_complete, called from another thread, sees the Ctrl-C and
    stops the build; afterwards the monitor says cancelled and the previous handler is back.
    (The monitor class is ours; its TensorRT base class is replaced by `object`, which it only
    subclasses: nothing of TensorRT's behaviour is stood in for.)"""
    import os
    import signal
    import threading
    from types import SimpleNamespace

    from mq_deploy.trt.progress_monitor import interrupts_cancel, make_progress_monitor
    monitor = make_progress_monitor(SimpleNamespace(IProgressMonitor=object), "build prefill", show=False)
    before = signal.getsignal(signal.SIGINT)
    answers = []
    with interrupts_cancel(monitor):
        worker = threading.Thread(target=lambda: answers.append(monitor.step_complete("Building", 0)))
        worker.start()
        worker.join()
        os.kill(os.getpid(), signal.SIGINT)
        # the wakeup socket alone (no Python handler involved) tells a TensorRT thread
        worker = threading.Thread(target=lambda: answers.append((monitor.interrupt.pending(),
                                                                 monitor.step_complete("Building", 1))))
        worker.start()
        worker.join()
    assert answers == [True, (True, False)]      # going on before Ctrl-C, stopping after, off the main thread
    assert monitor.cancelled and signal.getsignal(signal.SIGINT) is before and monitor.interrupt is None
