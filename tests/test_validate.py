"""`mq-deploy validate` without TensorRT: ONNX Runtime on the exported graph against torch, through
Polygraphy's Comparator, with real numbers; a broken graph must fail; bad input is one error line."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.models import MambaConfig, MambaLM  # noqa: E402
from mq_deploy.models.init import init_mamba_weights  # noqa: E402
from mq_deploy.models.loading import save_model  # noqa: E402
from mq_deploy.quant.artifact import load_quantized, save_quantized  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.validate.validation import format_report, validate_export  # noqa: E402

TEXT = ("The selective scan carries a state from token to token; quantization must not disturb it. " * 40)


def run(*args):
    return subprocess.run([sys.executable, "-m", "mq_deploy", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "MQ_PROGRESS": "0"})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=48, num_hidden_layers=2,
                                                   state_size=8, time_step_rank=12, tokenizer="bytes")), seed=7)
    save_model(model, root / "fp")
    calib = torch.tensor(list(TEXT.encode()))[:6 * 64].reshape(6, 64)
    qm = quantize(model, "mambaquant", calib, QuantConfig(), progress=False)
    save_quantized(qm, root / "q", source_dir=root / "fp")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    return {"root": root,
            "fp32": export_onnx(root / "q", root / "fp32" / "model.onnx", precision="fp32", decode=False),
            "fp16": export_onnx(root / "q", root / "fp16" / "model.onnx", precision="fp16", decode=False)}


def independent_nll(logits: np.ndarray, ids: np.ndarray) -> float:
    l, t = torch.from_numpy(logits[:, :-1]).double(), torch.from_numpy(ids[:, 1:])
    return torch.nn.functional.cross_entropy(l.reshape(-1, l.shape[-1]), t.reshape(-1)).item()


def test_onnxruntime_against_torch_passes_with_real_numbers(exported):
    root = exported["root"]
    report = validate_export(exported["fp32"].onnx_path, text=str(root / "text.txt"), samples=3, seq_len=96, batch=2)
    assert report["passed"] and report["subject"] == "onnxruntime"
    assert [r["reference"] for r in report["references"]] == ["torch fp32", "torch-fp fp32"]
    same, fp = report["references"]
    # the same fake-quant function in FP32; INT8 code flips at ties are possible (test_export_qdq
    # shows they are the only difference), so the bound is the flip-size one
    assert same["logits"]["relative"] < 2e-2 and same["logits"]["argmax_agreement"] >= 0.99
    assert set(same["median_abs_per_output"]) >= {"logits", "ssm_state_out.1", "conv_state_out.0"}
    assert list(fp["median_abs_per_output"]) == ["logits"]
    # recompute both NLLs outside the validation code: ORT and the fake-quant torch model directly
    from mq_deploy.deploy.onnxruntime_session import onnxruntime_session
    ids = torch.tensor(list(TEXT.encode()))[:3 * 96].reshape(3, 96)
    ours = onnxruntime_session(exported["fp32"].onnx_path).run(["logits"], {"input_ids": ids.numpy()})[0]
    with torch.no_grad():
        ref = load_quantized(root / "q").model(ids).numpy()
    assert same["nll"]["subject"] == pytest.approx(independent_nll(ours, ids.numpy()), rel=1e-6)
    assert same["nll"]["reference"] == pytest.approx(independent_nll(ref, ids.numpy()), rel=1e-6)
    assert report["inputs"] == {"batches": 2, "shape": [2, 96], "tokens": 288}


def test_fp16_graph_against_fp16_torch(exported):
    report = validate_export(exported["fp16"].onnx_path, text=str(exported["root"] / "text.txt"), samples=2,
                             seq_len=64, references=["torch"])
    (same,) = report["references"]
    assert report["passed"] and same["reference"] == "torch fp16"
    assert 0 < same["logits"]["relative"] < 2e-2


def planted(graph, folder, change):
    """A copy of the export set holding `graph` in `folder`, with each initializer that `change(name,
    values)` returns an array for replaced by it; the copied graph's path."""
    import onnx
    from onnx import numpy_helper
    shutil.copytree(graph.parent, folder)
    path = folder / graph.name
    model = onnx.load(str(path))
    for i, t in enumerate(model.graph.initializer):
        new = change(t.name, numpy_helper.to_array(t))
        if new is not None:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(new, t.name))
    onnx.save(model, str(path))
    return path


def test_a_broken_graph_fails(exported, tmp_path):
    """Triple one weight scale in the graph: the validation must fail and the CLI exit 1."""
    path = planted(exported["fp32"].onnx_path, tmp_path / "broken",
                   lambda name, v: v * 3 if name == "backbone.layers.0.mixer.in_proj.weight_scale" else None)
    r = run("validate", "--onnx", path, "--text", exported["root"] / "text.txt", "--samples", "2", "--seq-len", "64",
            "--reference", "torch", "--json", tmp_path / "report.json")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stdout and "validation FAILED" in r.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert not report["passed"] and report["references"][0]["failures"]
    # and validate says which failure it is: not tie flips, a graph that computes something else
    explanation = report["references"][0]["explanation"]
    assert not explanation["graph_correct"] and explanation["codes"]["max_code_difference"] > 1
    # the first wrong codes are those fed by the tripled scale: layer 0's in_proj output, at the conv
    assert re.search(r"why torch fp32 failed: graph differs from the model: .* first at "
                     r"backbone\.layers\.0\.mixer\.x_proj_input", r.stdout), r.stdout


def test_a_correct_graph_with_tie_flips_is_explained_as_correct(exported, tmp_path):
    """Plant tie flips in a correct graph: every activation scale 4e-6 larger (relative), so values
    within ~5e-4 of a step from a rounding tie get the neighbouring code while the function stays the
    model's to 4e-6. Held to a tolerance it cannot meet, validate must fail it and say it is correct."""
    from mq_deploy.validate.validation import Tolerance, validate
    scales = []
    path = planted(exported["fp32"].onnx_path, tmp_path / "ties",
                   lambda name, v: scales.append(name) or v * (1 + 4e-6) if name.endswith("act_scale") else None)
    assert scales
    ids = np.frombuffer(TEXT.encode(), dtype=np.uint8)[:8 * 96].astype(np.int64).reshape(8, 96)
    feeds = [{"input_ids": ids[i:i + 2]} for i in range(0, 8, 2)]
    impossible = Tolerance(median_abs=0.0, min_argmax_agreement=1.0, max_nll_increase=0.0, outputs="all")
    report = validate(path, feeds, references=["torch"], tolerances={"same-graph": impossible})
    (same,) = report["references"]
    assert not same["passed"]
    explanation = same["explanation"]
    assert explanation["graph_correct"], explanation
    codes = explanation["codes"]
    assert codes["differing"] > 0 and codes["max_code_difference"] == 1, codes
    assert explanation["aligned"]["relative"] < 1e-4
    assert explanation["explanation"].startswith(f"graph correct; {codes['differing']:,} of {codes['compared']:,} "
                                                 "INT8 codes flipped at rounding ties")
    # the clean graph under the same impossible tolerance: correct too, with (almost) no flips
    clean = validate(exported["fp32"].onnx_path, feeds, references=["torch"], tolerances={"same-graph": impossible})
    assert clean["references"][0]["explanation"]["codes"]["differing"] < codes["differing"]


def test_a_correct_fp16_graph_is_explained_as_correct(exported):
    """FP16 arithmetic moves codes by more than ties do; a correct FP16 graph held to a tolerance it
    cannot meet is still called correct, with the FP16 wording."""
    from mq_deploy.validate.validation import Tolerance, validate
    ids = np.frombuffer(TEXT.encode(), dtype=np.uint8)[:4 * 96].astype(np.int64).reshape(4, 96)
    impossible = Tolerance(median_abs=0.0, min_argmax_agreement=1.0, max_nll_increase=0.0, outputs="all")
    report = validate(exported["fp16"].onnx_path, [{"input_ids": ids}], references=["torch"],
                      tolerances={"same-graph": impossible})
    explanation = report["references"][0]["explanation"]
    assert explanation["graph_correct"], explanation
    assert explanation["codes"]["differing"] == 0 or "by FP16 rounding" in explanation["explanation"]


def test_wrong_arithmetic_between_quantizers_is_explained(exported, tmp_path):
    """The last layer's out_proj weight scale 1.5x: no activation quantizer follows it (the head is
    FP), so every code agrees and only the aligned logits show that the graph is not the model."""
    path = planted(exported["fp32"].onnx_path, tmp_path / "wrong",
                   lambda name, v: v * 1.5 if name == "backbone.layers.1.mixer.out_proj.weight_scale" else None)
    report = validate_export(path, text=str(exported["root"] / "text.txt"), samples=4, seq_len=64,
                             references=["torch"])
    (same,) = report["references"]
    assert not same["passed"]
    explanation = same["explanation"]
    assert not explanation["graph_correct"] and explanation["codes"]["max_code_difference"] <= 1
    assert explanation["aligned"]["relative"] > 1e-3
    assert explanation["explanation"].startswith("graph differs from the model (aligned error")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_one_channel_scale_off_by_ten_percent_fails(exported, tmp_path, precision):
    """A subtle deployment fault: one output channel's weight scale 10 % off in one linear of one
    layer (an x row of layer 1's in_proj). The logits barely move (the median and argmax checks
    alone pass it), but that channel of the layer's conv-window state is scaled by exactly 1.1."""
    import onnx
    from onnx import numpy_helper
    shutil.copytree(exported[precision].onnx_path.parent, tmp_path / "faulty")
    path = tmp_path / "faulty" / "model.onnx"
    model = onnx.load(str(path))
    for i, t in enumerate(model.graph.initializer):
        if t.name == "backbone.layers.1.mixer.in_proj.weight_scale":
            scale = numpy_helper.to_array(t).copy()
            scale[5] *= 1.1
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(scale, t.name))
    onnx.save(model, str(path))
    report = validate_export(path, text=str(exported["root"] / "text.txt"), samples=4, seq_len=64,
                             references=["torch"])
    (same,) = report["references"]
    assert not report["passed"]
    assert same["channel_scale_error"]["conv_state_out.1"]["worst_channel"] == 5
    assert same["channel_scale_error"]["conv_state_out.1"]["scale"] == pytest.approx(1.1, abs=0.01)
    assert any(re.search(r"conv_state_out.1 channel 5 is scaled by 1\.(09|10)", f) for f in same["failures"])
    clean = validate_export(exported[precision].onnx_path, text=str(exported["root"] / "text.txt"), samples=4,
                            seq_len=64, references=["torch"])
    assert clean["passed"], clean["references"][0]["failures"]


def test_nan_in_the_graph_is_the_first_reason_given(exported, tmp_path):
    """A NaN weight scale in the graph: validation fails, and says NaN first (not an argmax figure)."""
    import onnx
    from onnx import numpy_helper
    shutil.copytree(exported["fp32"].onnx_path.parent, tmp_path / "nan")
    path = tmp_path / "nan" / "model.onnx"
    model = onnx.load(str(path))
    for i, t in enumerate(model.graph.initializer):
        if t.name == "backbone.layers.0.mixer.out_proj.weight_scale":
            scale = numpy_helper.to_array(t).copy()
            scale[0] = np.nan
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(scale, t.name))
    onnx.save(model, str(path))
    report = validate_export(path, text=str(exported["root"] / "text.txt"), samples=2, seq_len=64,
                             references=["torch"])
    (same,) = report["references"]
    assert not report["passed"] and same["failures"][0].startswith("NaN in logits: the subject's logits hold")


def test_cli_with_token_file_and_json(exported, tmp_path):
    ids = np.frombuffer(TEXT.encode()[:128], np.uint8).astype(np.int64).reshape(2, 64)
    (tmp_path / "ids.json").write_text(json.dumps(ids.tolist()))
    r = run("validate", "--onnx", exported["fp32"].onnx_path, "--tokens", tmp_path / "ids.json",
            "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| torch fp32 | same-graph |" in r.stdout and "validation passed" in r.stdout
    assert json.loads((tmp_path / "r.json").read_text())["inputs"]["tokens"] == 128


@pytest.mark.parametrize("extra, message", [
    (["--reference", "tflite"], "unknown --reference 'tflite'"),
    (["--reference", "onnxruntime"], "without --engine"),
    (["--reference", "onnx:/no/such.onnx"], "does not exist"),
    (["--tokens", "{tmp}/bad.json"], "must lie in [0, 256)"),
    (["--tokens", "{tmp}/missing.json"], "does not exist"),
    (["--model", "{tmp}/nowhere", "--reference", "torch"], "is not at"),
    (["--reference", "onnx:{tmp}/bad.json"], "no manifest.json beside"),      # an export set of ours, checked first
    (["--seq-len", "1"], "at least 2"),
    (["--tokens", "{tmp}/one.json"], "at least 2 tokens"),
    (["--tokens", "{tmp}/bad.json", "--text", "{tmp}/bad.json"], "not both"),
    pytest.param(["--engine", "{tmp}/model.plan"], "pip install tensorrt", marks=pytest.mark.skipif(
        __import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")),
])
def test_bad_input_is_one_error_line(exported, tmp_path, extra, message):
    (tmp_path / "bad.json").write_text("[[1, 2, 999]]")
    (tmp_path / "one.json").write_text("[[1], [2]]")
    (tmp_path / "model.plan").write_bytes(b"not a plan")
    r = run("validate", "--onnx", exported["fp32"].onnx_path, "--samples", "1", "--seq-len", "32",
            *[e.replace("{tmp}", str(tmp_path)) for e in extra])
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error:") and message in r.stderr and "Traceback" not in r.stderr


def test_missing_manifest_and_missing_graph(exported, tmp_path):
    shutil.copy(exported["fp32"].onnx_path, tmp_path / "model.onnx")
    r = run("validate", "--onnx", tmp_path / "model.onnx")
    assert r.returncode == 2 and "no manifest.json" in r.stderr
    r = run("validate", "--onnx", tmp_path / "none.onnx")
    assert r.returncode == 2 and "does not exist" in r.stderr


def _scale_state_output(graph, folder, name: str, factor: float):
    """A copy of the export set whose graph returns `name` multiplied by `factor` (the logits untouched)."""
    import onnx
    from onnx import helper, numpy_helper
    shutil.copytree(graph.parent, folder)
    path = folder / graph.name
    model = onnx.load(str(path))
    producer = next(n for n in model.graph.node if name in n.output)
    producer.output[list(producer.output).index(name)] = name + "_unscaled"
    model.graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "planted_factor"))
    model.graph.node.append(helper.make_node("Mul", [name + "_unscaled", "planted_factor"], [name], name="planted"))
    onnx.save(model, str(path))
    return path


def test_failing_states_are_covered_by_the_aligned_comparison_only_when_the_graph_computes_them(exported, tmp_path):
    """A correct graph's state outputs agree with torch once the codes are aligned, so a state
    failure that came from amplified flips is explained with the logits; a graph that returns a
    wrong state (conv_state_out.0 scaled by 1.1, logits untouched) is not covered, and says so."""
    from mq_deploy.validate.explain import explain_qdq_failure
    model = load_quantized(exported["root"] / "q").model.eval()
    ids = np.frombuffer(TEXT.encode(), dtype=np.uint8)[:2 * 96].astype(np.int64).reshape(2, 96)
    failures = ["conv_state_out.0 channel 3 is scaled by 0.7 against the reference, beyond ±5 %"]
    good = explain_qdq_failure(exported["fp32"].onnx_path, model, [{"input_ids": ids}], "fp32", failures)
    assert good["graph_correct"] and max(good["aligned_states"].values()) < 1e-4, good
    assert set(good["aligned_states"]) == {f"{k}_state_out.{i}" for k in ("conv", "ssm") for i in range(2)}
    assert "The failing states (conv_state_out.0) are covered too" in good["explanation"]
    wrong = _scale_state_output(exported["fp32"].onnx_path, tmp_path / "wrong_state", "conv_state_out.0", 1.1)
    bad = explain_qdq_failure(wrong, model, [{"input_ids": ids}], "fp32", failures)
    assert bad["graph_correct"] and bad["aligned_states"]["conv_state_out.0"] == pytest.approx(0.1, rel=1e-3)
    assert ("the failure at conv_state_out.0 is not covered by it (with the codes aligned, conv_state_out.0 still "
            "differs by 0.1)") in bad["explanation"], bad["explanation"]


def test_language_model_agreement_forgives_near_ties_per_token_position():
    """[batch, seq, vocab] logits: a flip at a position the reference all but ties is not counted, a
    decided flip is; the report shows both figures."""
    from mq_deploy.validate.validation import _agreement, decided_agreement
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 5, 11)) * 3
    ours = ref.copy()
    top = ref.argmax(-1)
    ours[0, 1, top[0, 1]] -= 10                 # a decided flip: the reference's top token loses 10 logits
    second = np.argsort(ref[1, 3])[-2]
    ref[1, 3, second] = ref[1, 3, top[1, 3]] - 0.01        # a near-tie in the reference ...
    ours[1, 3] = ref[1, 3]
    ours[1, 3, second] += 0.02                             # ... that the subject flips
    assert decided_agreement(ours, ref, tie=0.05) == pytest.approx(8 / 9)
    assert decided_agreement(ours, ref, tie=0.001) == pytest.approx(8 / 10)
    metrics = {"argmax_agreement": 0.8, "decided_top1_agreement": 8 / 9}
    assert _agreement(metrics) == "80.00% (88.89% near-ties aside)"


def test_the_decode_graph_is_validated_and_a_broken_state_carry_fails(exported, tmp_path):
    """With a decode graph in the set, validate also runs the first window's last tokens one decode
    step at a time, against torch doing the same. The correct set passes both; a decode graph whose
    carried SSM state is scaled by 1.5 on the way in (a prefill graph untouched) fails the decode
    pass alone, and the CLI exits 1."""
    import onnx
    from onnx import helper, numpy_helper
    from mq_deploy.validate.validation import validate_export
    root = exported["root"]
    onnx_path = export_onnx(root / "fp", tmp_path / "good" / "model.onnx", precision="fp32").onnx_path
    report = validate_export(onnx_path, text=str(root / "text.txt"), samples=2, seq_len=64, references=["torch"])
    assert report["passed"], report
    decode = report["decode"]
    assert decode["prefill_tokens"] == 32 and decode["steps"] == 32 and decode["references"][0]["passed"]
    assert decode["references"][0]["logits"]["relative"] < 1e-5       # FP32 graph vs FP32 torch, step by step

    shutil.copytree(onnx_path.parent, tmp_path / "bad")
    path = tmp_path / "bad" / "model.decode.onnx"
    model = onnx.load(str(path), load_external_data=False)
    state = next(i.name for i in model.graph.input if i.name.startswith("ssm_state"))
    for node in model.graph.node:
        node.input[:] = [f"{state}.scaled" if name == state else name for name in node.input]
    model.graph.initializer.append(numpy_helper.from_array(np.array(1.5, np.float32), "planted_scale"))
    model.graph.node.insert(0, helper.make_node("Mul", [state, "planted_scale"], [f"{state}.scaled"]))
    onnx.save(model, str(path))
    r = run("validate", "--onnx", tmp_path / "bad" / "model.onnx", "--text", root / "text.txt", "--samples", "2",
            "--seq-len", "64", "--reference", "torch", "--json", tmp_path / "report.json")
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["references"][0]["passed"] and not report["decode"]["references"][0]["passed"], report
    assert "decode graph: the first window's last 32 tokens" in r.stdout and "validation FAILED" in r.stdout


def test_the_decode_pass_judges_the_decode_steps_alone(exported, tmp_path):
    """A decode graph whose logits alone are off (x 3, the state right) fails at the default 256-token
    windows, where the 32 decode steps are an eighth of the positions: judged among all 256 positions
    their median |Δ| would be 0; judged by themselves it is ~0.18 > 0.05."""
    import onnx
    from onnx import helper, numpy_helper
    from mq_deploy.validate.validation import validate_export
    root = exported["root"]
    onnx_path = export_onnx(root / "fp", tmp_path / "good" / "model.onnx", precision="fp32").onnx_path
    shutil.copytree(onnx_path.parent, tmp_path / "bad")
    path = tmp_path / "bad" / "model.decode.onnx"
    model = onnx.load(str(path), load_external_data=False)
    producer = next(n for n in model.graph.node if "logits" in n.output)
    producer.output[:] = ["logits.unscaled" if o == "logits" else o for o in producer.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(3.0, np.float32), "planted_scale"))
    model.graph.node.append(helper.make_node("Mul", ["logits.unscaled", "planted_scale"], ["logits"]))
    onnx.save(model, str(path))
    report = validate_export(tmp_path / "bad" / "model.onnx", text=str(root / "text.txt"), samples=1, seq_len=256,
                             references=["torch"])
    assert report["references"][0]["passed"] and not report["decode"]["references"][0]["passed"], report
    assert report["decode"]["steps"] == 32 and not report["passed"]


def test_sets_without_a_decode_graph_skip_the_decode_pass(exported, tmp_path):
    from mq_deploy.validate.validation import validate_export
    root = exported["root"]
    with_decode = export_onnx(root / "fp", tmp_path / "d" / "model.onnx", precision="fp32").onnx_path
    report = validate_export(exported["fp32"].onnx_path, text=str(root / "text.txt"), samples=1, seq_len=64,
                             references=["torch"])
    assert "no decode graph" in report["decode"]["skipped"] and report["passed"]
    # an onnx: reference whose set has no decode graph: skipped too, not an error mid-run
    report = validate_export(with_decode, text=str(root / "text.txt"), samples=1, seq_len=64,
                             references=["torch", f"onnx:{exported['fp32'].onnx_path}"])
    assert "no decode graph" in report["decode"]["skipped"] and report["references"]


def test_a_long_one_dimensional_token_file_is_cut_into_windows(exported, tmp_path):
    """--tokens with a 1-D file of 2,000 ids: --samples windows of --seq-len, as a text gives (as one
    2,000-token window it held a 50k vocabulary's 0.4 GB of logits per runner and 10x that for 20,000)."""
    from mq_deploy.validate.validation import validate_export
    ids = np.frombuffer((TEXT * 2).encode(), dtype=np.uint8)[:2000].astype(np.int64)
    np.save(tmp_path / "ids.npy", ids)
    report = validate_export(exported["fp32"].onnx_path, token_file=str(tmp_path / "ids.npy"), samples=3, seq_len=64,
                             references=["torch"])
    assert report["inputs"]["batches"] == 3 and report["inputs"]["shape"] == [1, 64] and report["passed"]
    np.save(tmp_path / "rows.npy", ids[:4 * 50].reshape(4, 50))          # rows: the windows as given
    report = validate_export(exported["fp32"].onnx_path, token_file=str(tmp_path / "rows.npy"), samples=3,
                             seq_len=64, references=["torch"])
    assert report["inputs"]["batches"] == 4 and report["inputs"]["shape"] == [1, 50]


def test_channel_scales_on_too_few_values_are_not_judged(exported):
    """Two windows give 6 values a channel (the conv state holds the last 3 tokens): a least-squares
    scale of that few values is noise (a correct random-init FP16 export read 0.943 on one channel), so
    the check says it did not judge instead of failing or passing it; four windows are judged."""
    text = str(exported["root"] / "text.txt")
    two = validate_export(exported["fp16"].onnx_path, text=text, samples=2, seq_len=64, references=["torch"])
    (same,) = two["references"]
    assert all("not_judged" in v for v in same["channel_scale_error"].values()) and same["channel_scale_error"]
    assert any("channel scales not judged: 6 values a channel" in n for n in same["notes"])
    assert "note (torch fp16): conv-state channel scales not judged" in format_report(two)
    four = validate_export(exported["fp16"].onnx_path, text=text, samples=4, seq_len=64, references=["torch"])
    assert all("scale" in v for v in four["references"][0]["channel_scale_error"].values())
