"""A Vision Mamba through export, check, validate and the engine build plan, without TensorRT: the
ONNX graph run by ONNX Runtime against the torch model (which tests/test_models_vim.py holds to the
official forward), the backward paths as SelectiveScan nodes with reverse = 1, dynamic batch."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from mq_deploy.deploy.onnxruntime_session import onnxruntime_session  # noqa: E402
from mq_deploy.errors import MQDeployError  # noqa: E402
from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.models.vim_loading import load_vim, save_vim  # noqa: E402
from mq_deploy.quant.artifact import save_quantized  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.validate.validation import validate_export  # noqa: E402
from test_models_vim import official_state, save_official  # noqa: E402


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("vim_export")
    state = official_state(d=64, depth=2, classes=10, patch=8, grid=4, seed=3)
    model = load_vim(save_official(state, root / "vim_small.pth"), img_size=32, stride=8).model
    save_vim(model, root / "fp")
    qm = quantize(copy.deepcopy(model), "mambaquant", images(16, 1), QuantConfig(w_bits=8, a_bits=8), progress=False)
    save_quantized(qm, root / "q", source_dir=root / "fp")
    np.save(root / "images.npy", images(24, 5).numpy())
    out = {"root": root, "model": model, "fake_quant": qm.model}
    for name, source in (("fp", "fp"), ("q", "q")):
        for precision in ("fp32", "fp16"):
            out[f"{name}-{precision}"] = export_onnx(root / source, root / f"{name}-{precision}" / "model.onnx",
                                                     precision=precision)
    return out


def run_graph(path, x: torch.Tensor) -> np.ndarray:
    return onnxruntime_session(path).run(["logits"], {"images": x.numpy()})[0]


@pytest.mark.parametrize("name", ["fp", "q"])
def test_the_fp32_graph_computes_the_torch_model(exported, name):
    reference = exported["model"] if name == "fp" else exported["fake_quant"]
    x = images(5, 9)
    with torch.no_grad():
        expected = reference(x).double().numpy()
    for batch in (x[:1], x):                                       # the batch dim is dynamic
        got = run_graph(exported[f"{name}-fp32"].onnx_path, batch)
        want = expected[:len(batch)]
        assert got.shape == want.shape
        error = np.abs(got - want) / np.abs(want).max()
        if name == "fp":
            assert error.max() < 1e-5
        else:       # the same INT8 codes, but float32's order of sums can flip one at a rounding tie
            assert np.median(error) < 1e-6 and error.max() < 1e-2
            assert (got.argmax(-1) == want.argmax(-1)).all()


def test_backward_paths_are_reverse_scan_nodes_and_the_patches_a_conv(exported):
    import onnx
    graph = onnx.load(str(exported["q-fp16"].onnx_path), load_external_data=False).graph
    scans = [n for n in graph.node if n.op_type == "SelectiveScan"]
    reverse = {n.name: next(a.i for a in n.attribute if a.name == "reverse") for n in scans}
    assert len(scans) == 4                                         # 2 layers x 2 directions
    assert {name for name, r in reverse.items() if r == 1} == {f"backbone.layers.{i}.mixer_b.selective_scan"
                                                                 for i in range(2)}
    assert [n.op_type for n in graph.node if n.name == "backbone.patch_embed.proj"] == ["Conv"]
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["logits"]
    manifest = exported["q-fp16"].manifest
    assert manifest["model"]["model_type"] == "vim" and set(manifest["graphs"]) == {"prefill"}
    assert manifest["graphs"]["prefill"]["linears"]["backbone.layers.0.mixer.x_proj_b"] == "int8"


def test_the_fp16_graph_agrees_on_top1_and_validate_passes(exported):
    report = validate_export(exported["q-fp16"].onnx_path, images=str(exported["root"] / "images.npy"), batch=8)
    assert report["passed"], report
    torch_ref = next(r for r in report["references"] if r["reference"] == "torch fp16")
    assert torch_ref["kind"] == "same-graph" and torch_ref["logits"]["argmax_agreement"] >= 0.99
    assert report["inputs"]["images"] == 24


def test_validate_reports_top1_on_labelled_images_and_fails_a_broken_graph(exported, tmp_path):
    """Labelled images (an ImageFolder tree) give top-1 per model; a graph whose classifier bias is
    shifted must fail against torch."""
    import onnx
    from onnx import numpy_helper
    pytest.importorskip("PIL")
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "imgs" / f"class{c}").mkdir(parents=True)
        for k in range(4):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"class{c}" / f"{k}.png")
    report = validate_export(exported["fp-fp32"].onnx_path, images=str(tmp_path / "imgs"), batch=4)
    ref = report["references"][0]
    assert report["passed"] and "top1" in ref and ref["top1"]["subject"] == ref["top1"]["reference"]
    # break the graph: add 3 to one class's bias (the export set's own file, copied)
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(exported["fp-fp32"].onnx_path.parent, broken)
    model = onnx.load(str(broken / "model.onnx"))
    bias = next(t for t in model.graph.initializer if t.name.startswith("classifier.bias"))
    values = numpy_helper.to_array(bias).copy()
    values[0] += 3.0
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(broken / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    report = validate_export(broken / "model.onnx", images=str(tmp_path / "imgs"), batch=4,
                             model_dir=exported["root"] / "fp")
    assert not report["passed"]


def test_cli_quantize_export_check_validate_on_images(exported, tmp_path):
    env = {**os.environ, "MQ_PROGRESS": "0"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mq_deploy", *map(str, args)], capture_output=True, text=True,
                              timeout=600, env=env)
    root = exported["root"]
    done = cli("quantize", "--model", root / "fp", "--calib", root / "images.npy", "--calib-samples", 16,
               "--out", tmp_path / "q", "--recipe", "quarot")
    assert done.returncode == 0, done.stderr
    assert "16 images of" in done.stdout and "note:" not in done.stderr
    done = cli("quantize", "--model", root / "fp", "--calib", root / "images.npy", "--calib-samples", 100,
               "--out", tmp_path / "q-all", "--recipe", "rtn")
    assert done.returncode == 0 and "24 images of" in done.stdout, done.stderr
    assert "holds 24 images, not the 100 asked for" in done.stderr      # said, not silently capped
    assert cli("export", "--model", tmp_path / "q", "--onnx", tmp_path / "e" / "model.onnx").returncode == 0
    assert not (tmp_path / "e" / "model.decode.onnx").exists()
    assert cli("check", "--onnx", tmp_path / "e" / "model.onnx").returncode == 0
    done = cli("validate", "--onnx", tmp_path / "e" / "model.onnx", "--images", root / "images.npy", "--batch", 8)
    assert done.returncode == 0 and "validation passed" in done.stdout, done.stdout + done.stderr
    # token text given to a vision model: one line naming the fix, nothing written
    done = cli("quantize", "--model", root / "fp", "--out", tmp_path / "q2")
    assert done.returncode != 0 and "calibrates on images" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "q2").exists()


def test_the_engine_plan_of_a_vision_export_is_one_batch_profiled_engine(exported, tmp_path):
    from mq_deploy.trt.build_request import prepare_build
    request = prepare_build(exported["q-fp16"].onnx_path, tmp_path / "model.plan")
    assert [job.kind for job in request.jobs] == ["prefill"] and not request.notes
    (profile,) = request.jobs[0].profile
    assert (profile.name, profile.min, profile.max) == ("images", (1, 3, 32, 32), (8, 3, 32, 32))


def test_images_of_the_wrong_size_are_one_error(exported, tmp_path):
    np.save(tmp_path / "big.npy", np.zeros((2, 3, 64, 64), np.float32))
    with pytest.raises(MQDeployError, match=r"shape \(2, 3, 64, 64\).*\[n, 3, 32, 32\]"):
        validate_export(exported["fp-fp32"].onnx_path, images=str(tmp_path / "big.npy"))


def test_bench_times_images_for_each_backend(exported, tmp_path):
    from mq_deploy.bench.benchmark import format_table, run_bench, write_outputs
    report = run_bench(exported["q-fp32"].onnx_path, batch=4, iterations=2, warmup=1, device="cpu", progress=False)
    assert [r["phase"] for r in report["rows"]] == ["classify", "classify"]       # ONNX Runtime, then torch FP
    assert all(r["batch"] == 4 and r["tokens_per_s"] > 0 for r in report["rows"])
    assert "images/s" in format_table(report)
    written = write_outputs(report, tmp_path / "bench")
    assert [p.suffix for p in written] == [".md", ".json"] and "10 classes" in written[0].read_text()


def test_a_vision_export_refuses_language_model_options_and_partners(exported, tmp_path):
    from mq_deploy.bench.benchmark import run_bench
    onnx_path = exported["q-fp16"].onnx_path
    with pytest.raises(MQDeployError, match="takes images, not text"):
        validate_export(onnx_path, text="pydoc-topics")
    with pytest.raises(MQDeployError, match="--lengths and --decode-steps are for language models"):
        run_bench(onnx_path, lengths=[7, 9], progress=False)
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.loading import save_model
    save_model(MambaLM(MambaConfig(vocab_size=256, hidden_size=32, num_hidden_layers=1)), tmp_path / "lm")
    lm = export_onnx(tmp_path / "lm", tmp_path / "lm_onnx" / "model.onnx", decode=False)
    with pytest.raises(MQDeployError, match="different kinds of model"):
        run_bench(onnx_path, fp_onnx=lm.onnx_path, progress=False)
    with pytest.raises(MQDeployError, match="same kind of model"):
        validate_export(onnx_path, references=[f"onnx:{lm.onnx_path}"], images=str(exported["root"] / "images.npy"))
    from mq_deploy.deploy.onnxruntime_session import OnnxruntimeSession
    with pytest.raises(MQDeployError, match=r"classifies whole images: .*decode=False"):
        OnnxruntimeSession(onnx_path)               # a library user's first try: decode graph by default
    assert OnnxruntimeSession(onnx_path, decode=False).run("prefill", {"images": images(2, 1).numpy()})


def test_labels_beyond_the_models_classes_are_one_error(exported, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image
    for c in range(12):                                          # the model has 10 classes
        (tmp_path / "imgs" / f"c{c:02d}").mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "imgs" / f"c{c:02d}" / "0.png")
    with pytest.raises(MQDeployError, match="labels go up to 11 but the model has 10 classes"):
        validate_export(exported["fp-fp32"].onnx_path, images=str(tmp_path / "imgs"))


def test_quantize_from_an_official_pth_and_eval_refuses_a_vision_model(exported, tmp_path):
    from mq_deploy.api import evaluate_text, quantize_checkpoint
    root = exported["root"]
    report = quantize_checkpoint(root / "vim_small.pth", tmp_path / "q", recipe="rtn", calib=str(root / "images.npy"),
                                 calib_samples=8, progress=False)
    assert report["calibration"]["samples"] == 8 and (tmp_path / "q" / "quant.json").is_file()
    with pytest.raises(MQDeployError, match="is a Vision Mamba: perplexity and text tasks are for language models"):
        evaluate_text(tmp_path / "q", "some text " * 100)
    # the FP baseline straight from the official file: the graph computes load_vim's model, and validate
    # finds its source (the .pth) through the manifest, unchanged
    fp = export_onnx(root / "vim_small.pth", tmp_path / "e" / "model.onnx", precision="fp32")
    x = images(6, 9)
    np.testing.assert_allclose(run_graph(fp.onnx_path, x), exported["model"](x).detach().numpy(), rtol=1e-4,
                               atol=1e-4)
    report = validate_export(fp.onnx_path, images=str(root / "images.npy"))
    assert report["passed"] and report["references"][0]["kind"] == "same-graph"


def test_decided_agreement_forgives_near_ties_only():
    from mq_deploy.validate.validation import decided_agreement
    ref = np.array([[1.0, 0.99, 0.0], [2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])
    ours = np.array([[0.99, 1.0, 0.0], [2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])      # row 0 flips a 0.01 near-tie
    assert decided_agreement(ours, ref, tie=0.05) == 1.0
    assert decided_agreement(ours, ref, tie=0.001) == 2 / 3
    ours[2] = [3.5, 3.0, 1.0]                                                   # row 2 flips a 3-logit decision
    assert decided_agreement(ours, ref, tie=0.05) == 0.5


def test_standard_op_export_keeps_shapes_and_computes_the_model(exported):
    """`--scan onnx` of a MambaQuant Vim: no custom op (the reverse scans inline too), the inline
    Hadamard before each out_proj keeps batch, tokens and width through shape inference, and the
    graph computes the fake-quant model."""
    import onnx
    root = exported["root"]
    result = export_onnx(root / "q", root / "q-plain" / "model.onnx", precision="fp32", scan="onnx")
    model = onnx.load(str(result.onnx_path))
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.value_info}
    outs = [n.output[0] for n in model.graph.node if n.op_type == "Reshape" and n.name.endswith(".hadamard")]
    d_inner = exported["model"].backbone.layers[0].mixer.d_inner
    assert len(outs) == 2, outs                          # one online R2 per layer, after the directions average
    for o in outs:
        batch, tokens, width = shapes[o]
        assert isinstance(batch, str) and tokens == 17 and width == d_inner, (o, shapes[o])
    x = images(5, 9)
    with torch.no_grad():
        expected = exported["fake_quant"](x).double().numpy()
    got = run_graph(result.onnx_path, x)
    assert np.median(np.abs(got - expected) / np.abs(expected).max()) < 1e-6
    assert (got.argmax(-1) == expected.argmax(-1)).all()
