"""ONNX export of FP models: ORT vs torch (FP32 / FP16, plugin and standard-op scan), graph layout,
dynamic dims, the decode step, the graph check, atomic writes and bad inputs."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from mq_deploy.errors import MQDeployError  # noqa: E402
from mq_deploy.deploy.contract import carry  # noqa: E402
from mq_deploy.deploy.manifest import read_manifest  # noqa: E402
from mq_deploy.export import check_model, check_onnx, export_onnx  # noqa: E402
from mq_deploy.models import MambaConfig, MambaLM  # noqa: E402
from mq_deploy.models.loading import save_model  # noqa: E402

SIZES = dict(vocab=256, hidden=48, layers=2, state=8, rank=12)


def session(path):
    from mq_deploy.deploy.onnxruntime_session import onnxruntime_session
    return onnxruntime_session(path)


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def fp_model(tmp_path_factory):
    from conftest import random_hf_mamba
    hf = random_hf_mamba(**SIZES, seed=5)
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    path = tmp_path_factory.mktemp("models") / "fp"
    save_model(model, path)
    return model, path


@pytest.fixture(scope="module")
def exports(fp_model, tmp_path_factory):
    _, path = fp_model
    out = tmp_path_factory.mktemp("onnx")
    return {(p, s): export_onnx(path, out / f"{p}_{s}" / "model.onnx", precision=p, scan=s)
            for p, s in (("fp32", "plugin"), ("fp32", "onnx"), ("fp16", "plugin"))}


@pytest.mark.parametrize("scan", ["plugin", "onnx"])
def test_fp32_graph_matches_torch_at_several_shapes_from_one_file(fp_model, exports, scan):
    model, _ = fp_model
    sess = session(exports["fp32", scan].onnx_path)
    g = torch.Generator().manual_seed(1)
    for batch, length in ((1, 1), (4, 17), (1, 512)):
        ids = torch.randint(0, 256, (batch, length), generator=g)
        with torch.no_grad():
            ref, state = model(ids, return_state=True)
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input_ids": ids.numpy()})))
        assert out["logits"].shape == (batch, length, 256)
        assert rel_err(out["logits"], ref.numpy()) < 1e-4, (batch, length)
        for i in range(SIZES["layers"]):   # the states a decode graph continues from
            np.testing.assert_allclose(out[f"conv_state_out.{i}"], state.conv[i].numpy(), atol=1e-5)
            np.testing.assert_allclose(out[f"ssm_state_out.{i}"], state.ssm[i].numpy(), atol=1e-4, rtol=1e-4)


def test_fp16_graph_within_the_fp16_reference_error(fp_model, exports):
    model, _ = fp_model
    ids = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref32 = model(ids).numpy()
        ref16 = copy.deepcopy(model).half()(ids).float().numpy()
    out = session(exports["fp16", "plugin"].onnx_path).run(["logits"], {"input_ids": ids.numpy()})[0]
    assert out.dtype == np.float32
    torch_fp16_error = rel_err(ref16, ref32)
    assert rel_err(out, ref32) < max(2 * torch_fp16_error, 1e-3), (rel_err(out, ref32), torch_fp16_error)


def test_graph_layout_plugin_nodes_and_manifest(exports):
    result = exports["fp16", "plugin"]
    model = onnx.load(str(result.onnx_path))
    scans = [n for n in model.graph.node if n.op_type == "SelectiveScan"]
    assert len(scans) == SIZES["layers"]
    for node in scans:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.domain == "mq_deploy" and len(node.input) == 9 and all(node.input)
        assert attrs == {"plugin_version": b"1", "plugin_namespace": b"mq_deploy", "delta_softplus": 1, "reverse": 0}
    assert {(f.domain, f.name) for f in model.functions} == {("mq_deploy", "SelectiveScan")}
    assert {o.domain: o.version for o in model.opset_import} == {"": 19, "mq_deploy": 1}
    inits = {t.name: t for t in model.graph.initializer}
    assert list(inits["backbone.layers.0.mixer.in_proj.weight"].dims) == [48, 192]     # (K, N)
    assert inits["backbone.layers.0.mixer.in_proj.weight"].data_type == onnx.TensorProto.FLOAT16
    assert inits["backbone.layers.0.mixer.A"].data_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "seqlen"]
    manifest = read_manifest(result.onnx_path)
    assert manifest["plugins"] == [{"name": "SelectiveScan", "version": "1", "namespace": "mq_deploy",
                                    "domain": "mq_deploy"}]
    assert manifest["graphs"]["prefill"]["inputs"] == [{"name": "input_ids", "dtype": "int64",
                                                         "shape": ["batch", "seqlen"]}]
    assert manifest["graphs"]["decode"]["file"] == "model.decode.onnx"
    assert manifest["model"]["hidden_size"] == 48 and len(manifest["source"]["sha256"]) == 64
    # --scan onnx: standard ops only, no custom domain
    plain = onnx.load(str(exports["fp32", "onnx"].onnx_path))
    assert not plain.functions and all(n.domain in ("", "ai.onnx") for n in plain.graph.node)


def test_decode_steps_reproduce_prefill(fp_model, exports):
    model, _ = fp_model
    result = exports["fp32", "plugin"]
    prefill, step = session(result.onnx_path), session(result.decode_path)
    ids = torch.randint(0, 256, (3, 12), generator=torch.Generator().manual_seed(3)).numpy()
    full = prefill.run(["logits"], {"input_ids": ids})[0]
    # prefill the first 5 tokens, then step through the rest carrying the states
    names = [o.name for o in prefill.get_outputs()]
    out = dict(zip(names, prefill.run(None, {"input_ids": ids[:, :5]})))
    logits = [out["logits"]]
    state = {k.replace("_out", ""): v for k, v in out.items() if k != "logits"}
    for t in range(5, 12):
        res = dict(zip([o.name for o in step.get_outputs()], step.run(None, {"input_ids": ids[:, t:t + 1], **state})))
        logits.append(res["logits"])
        state = {k.replace("_out", ""): v for k, v in res.items() if k != "logits"}
    assert rel_err(np.concatenate(logits, axis=1), full) < 1e-5
    # FP16 step graph: FP16 conv state in, FP32 SSM state in
    step16 = session(exports["fp16", "plugin"].decode_path)
    types = {i.name: i.type for i in step16.get_inputs()}
    assert types["conv_state.0"] == "tensor(float16)" and types["ssm_state.0"] == "tensor(float)"
    state = {k: v.astype(np.float16) if k.startswith("conv") else v for k, v in state.items()}
    res = step16.run(["logits"], {"input_ids": ids[:, :1], **state})[0]
    assert res.shape == (3, 1, 256) and np.isfinite(res).all()


def test_export_is_deterministic(fp_model, exports, tmp_path):
    again = export_onnx(fp_model[1], tmp_path / "model.onnx", precision="fp32", scan="plugin")
    assert again.onnx_path.read_bytes() == exports["fp32", "plugin"].onnx_path.read_bytes()


def _problems_after(path, edit):
    model = onnx.load(str(path))
    edit(model)
    return [str(p) for p in check_model(model)]


def test_check_finds_what_is_wrong(exports):
    path = exports["fp16", "plugin"].onnx_path
    assert check_onnx(path) == []

    def drop_namespace(m):
        node = next(n for n in m.graph.node if n.op_type == "SelectiveScan")
        node.attribute.remove(next(a for a in node.attribute if a.name == "plugin_namespace"))
    assert any("plugin_namespace" in p for p in _problems_after(path, drop_namespace))

    def fix_seqlen(m):
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 17
    assert any("seqlen" in p for p in _problems_after(path, fix_seqlen))

    # FP32 islands: the FP32 graph's MatMuls and scan inputs, were it declared an FP16 graph
    model = onnx.load(str(exports["fp32", "plugin"].onnx_path))
    onnx.helper.set_model_props(model, {"mq_deploy.graph": "prefill", "mq_deploy.precision": "fp16"})
    problems = [str(p) for p in check_model(model)]
    assert any("MatMul backbone.layers.0.mixer.in_proj.matmul: runs in FP32" in p for p in problems)
    assert any("SelectiveScan" in p and "input x" in p for p in problems)


def test_cli_export_and_check(fp_model, tmp_path):
    env = {**os.environ, "MQ_PROGRESS": "0"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "mq_deploy", *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, env=env, timeout=300)
    r = run("export", "--model", fp_model[1], "--onnx", tmp_path / "m.onnx", "--precision", "fp32", "--no-decode")
    assert r.returncode == 0, r.stderr
    assert "check: ok" in r.stdout and not (tmp_path / "m.decode.onnx").exists()
    model = onnx.load(str(tmp_path / "m.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(tmp_path / "bad.onnx"))
    r = run("check", "--onnx", tmp_path / "bad.onnx")     # not part of the export set beside it
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "describes m.onnx, not bad.onnx" in r.stderr
    onnx.save(model, str(tmp_path / "m.onnx"))             # edited in place: the contract problem and the edit
    r = run("check", "--onnx", tmp_path / "m.onnx")
    assert r.returncode == 2 and "batch" in r.stdout and "m.onnx: is not the file export wrote" in r.stdout
    r = run("export", "--model", tmp_path / "missing", "--onnx", tmp_path / "x.onnx")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "does not exist" in r.stderr


def test_bad_outputs_leave_nothing_behind(fp_model, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(MQDeployError, match="a_file is a file, not a directory"):
        export_onnx(fp_model[1], blocker / "model.onnx")
    with pytest.raises(MQDeployError, match="must end in .onnx"):
        export_onnx(fp_model[1], tmp_path / "model.bin")
    with pytest.raises(MQDeployError, match="unknown precision"):
        export_onnx(fp_model[1], tmp_path / "model.onnx", precision="int4")
    # a write that fails half way: no .onnx, no temporary file, not even the directory it made
    import mq_deploy.atomic_dir as atomic_dir

    def failing_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(atomic_dir.os, "fsync", failing_fsync)
    with pytest.raises(MQDeployError, match="No space left"):
        export_onnx(fp_model[1], tmp_path / "out" / "model.onnx", precision="fp32")
    assert not (tmp_path / "out").exists()


def test_one_weights_file_for_both_graphs(fp_model, tmp_path):
    """The default export stores the weights once, in <prefill>.onnx.data, and the decode graph
    points at the same bytes: same logits as self-contained graphs, check passes from the files,
    the manifest hashes the data file."""
    import hashlib
    import onnx
    _, path = fp_model
    single = export_onnx(path, tmp_path / "single" / "model.onnx", precision="fp32", external_data=False)
    tmp_path = tmp_path / "shared"
    result = export_onnx(path, tmp_path / "model.onnx", precision="fp32")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["manifest.json", "model.decode.onnx", "model.onnx", "model.onnx.data"]
    data = (tmp_path / "model.onnx.data").read_bytes()
    assert (tmp_path / "model.onnx").stat().st_size < len(data) / 4     # the weights moved out
    manifest = read_manifest(result.onnx_path)
    entry = {"file": "model.onnx.data", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["graphs"]["prefill"]["external_data"] == manifest["graphs"]["decode"]["external_data"] == entry
    large = [t for t in onnx.load(str(single.onnx_path)).graph.initializer
             if len(t.raw_data) >= 4096 and not t.name.endswith(("_scale", "_zero_point"))]
    assert len(data) == sum(len(t.raw_data) for t in large)     # the prefill weights once; decode added none
    decode = onnx.load(str(result.decode_path), load_external_data=False)
    shared = [t for t in decode.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert shared and all({e.key: e.value for e in t.external_data}["location"] == "model.onnx.data" for t in shared)
    assert check_onnx(result.onnx_path) == [] and check_onnx(result.decode_path) == []
    ids = np.random.default_rng(1).integers(0, 97, (2, 9), dtype=np.int64)
    ref = session(single.onnx_path).run(None, {"input_ids": ids})
    np.testing.assert_array_equal(session(result.onnx_path).run(None, {"input_ids": ids})[0], ref[0])
    step = {"input_ids": ids[:, -1:], **carry(dict(zip([o.name for o in session(single.onnx_path).get_outputs()],
                                                       ref)))}
    np.testing.assert_array_equal(session(result.decode_path).run(["logits"], step)[0],
                                  session(single.decode_path).run(["logits"], step)[0])
    # moved away from its data, the set is incomplete: one error, not a check that passes
    (tmp_path / "model.onnx.data").rename(tmp_path / "elsewhere.data")
    with pytest.raises(MQDeployError, match="incomplete export set: model.onnx.data"):
        check_onnx(result.onnx_path)


def test_self_contained_export_leaves_a_users_data_file_alone(fp_model, tmp_path):
    """Only the files an export will write are claimed: a self-contained set does not write
    model.onnx.data, so a user's file of that name neither blocks it nor is touched."""
    _, path = fp_model
    (tmp_path / "model.onnx.data").write_bytes(b"the user's own")
    export_onnx(path, tmp_path / "model.onnx", precision="fp32", external_data=False, probe=False)
    assert (tmp_path / "model.onnx.data").read_bytes() == b"the user's own"
    with pytest.raises(MQDeployError, match="model.onnx.data already exist.* not from an mq-deploy export set"):
        export_onnx(path, tmp_path / "model.onnx", precision="fp32", force=True, probe=False)
    assert (tmp_path / "model.onnx.data").read_bytes() == b"the user's own"


def test_demo_export_set_stores_its_weights_once(demo_model_dir, tmp_path):
    """The whole export set of the demo model (both graphs, their data) is at most 1.1x the weights
    of one graph (measured: 1.05x in FP16, 1.02x in FP32; graph structure is the rest)."""
    import onnx
    for precision in ("fp16", "fp32"):
        shared = export_onnx(demo_model_dir, tmp_path / precision / "model.onnx", precision=precision)
        single = export_onnx(demo_model_dir, tmp_path / f"{precision}-single" / "model.onnx", precision=precision,
                             external_data=False)
        weights = sum(len(t.raw_data) for t in onnx.load(str(single.onnx_path)).graph.initializer)
        set_bytes = sum(p.stat().st_size for p in shared.onnx_path.parent.iterdir() if p.name != "manifest.json")
        assert set_bytes <= 1.1 * weights, (precision, set_bytes, weights)
