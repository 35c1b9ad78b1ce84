"""ONNX export of quantized artifacts (deploy mode): ORT on the QDQ graph vs the torch fake-quant
model, the QDQ layout TensorRT needs, online transforms, the decode step, refused artifacts, and the
demo model end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from mq_deploy.errors import MQDeployError  # noqa: E402
from mq_deploy.deploy.manifest import read_manifest  # noqa: E402
from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.models import MambaConfig, MambaLM  # noqa: E402
from mq_deploy.quant.artifact import load_quantized, save_quantized  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.export.aligned_codes import compare_qdq_graph  # noqa: E402
from mq_deploy.deploy.onnxruntime_session import onnxruntime_session, onnxruntime_session_options  # noqa: E402

SIZES = dict(vocab=256, hidden=48, layers=2, state=8, rank=12)   # Hadamard-friendly: d_inner 96 = 12*8
RECIPES = ("rtn", "smoothquant", "quarot", "quamba", "mambaquant")


def session(path):
    """The project's session (ORT_ENABLE_BASIC): ORT's extended optimizations replace Q/DQ -> MatMul
    by integer kernels that compute something else (test_sessions_run_the_graph_as_written)."""
    return onnxruntime_session(path)


def assert_same_codes_up_to_ties(codes: dict, max_fraction: float, max_distance: float):
    """INT8 activation codes of ORT and torch agree but for values at a rounding tie, off by one."""
    assert codes["compared"] > 0 and codes["fraction"] <= max_fraction, codes
    if codes["differing"]:
        assert codes["max_code_difference"] == 1.0 and codes["max_distance_from_tie"] < max_distance, codes


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def model_and_data():
    from conftest import random_mamba_lm, token_windows
    return (random_mamba_lm(**SIZES, seed=5), *token_windows(0, (6, 64), (4, 48)))


@pytest.fixture(scope="module")
def artifacts(model_and_data, tmp_path_factory):
    model, calib, _ = model_and_data
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for recipe in RECIPES:   # rtn also quantizes lm_head
        qm = quantize(model, recipe, calib, QuantConfig(quantize_lm_head=recipe == "rtn"), progress=False)
        out[recipe] = save_quantized(qm, root / recipe)
    return out


@pytest.mark.parametrize("recipe", RECIPES)
def test_fp32_qdq_graph_matches_the_fake_quant_model(model_and_data, artifacts, recipe, tmp_path):
    _, _, ids = model_and_data
    result = export_onnx(artifacts[recipe], tmp_path / "model.onnx", precision="fp32")
    reference = load_quantized(artifacts[recipe]).model
    report = compare_qdq_graph(result.onnx_path, reference, ids)
    assert_same_codes_up_to_ties(report["codes"], max_fraction=1e-4, max_distance=1e-3)
    assert report["aligned"]["relative"] < 1e-4 and report["aligned"]["argmax_agreement"] == 1.0
    assert report["plain"]["argmax_agreement"] >= 0.995
    manifest = read_manifest(result.onnx_path)
    assert manifest["quantization"]["recipe"] == recipe
    model = onnx.load(str(result.onnx_path))
    ops = [n.op_type for n in model.graph.node]
    n_linear = 4 * SIZES["layers"] + (recipe == "rtn")
    assert ops.count("QuantizeLinear") == n_linear and ops.count("DequantizeLinear") == 2 * n_linear
    hadamards = ops.count("HadamardTransform")
    assert hadamards == (SIZES["layers"] if recipe in ("quarot", "quamba", "mambaquant") else 0)
    # SmoothQuant's online channel scale before x_proj (no op before it can absorb it): one Mul a layer
    smooth = [n for n in model.graph.node if n.op_type == "Mul" and n.name.endswith(".x_proj_smooth")]
    assert len(smooth) == (SIZES["layers"] if recipe == "smoothquant" else 0)
    assert sum(kind == "scale" for kind in manifest["quantization"]["online_transforms"].values()) == len(smooth)
    # the INT8 weight codes and scales, recomputed here from the artifact's FP weights with the
    # symmetric per-output-channel rule written out in numpy (not mq-deploy's quantizer): scale =
    # max|w| over the row / 127, code = round half to even (w / scale); stored transposed (K, N)
    from safetensors.numpy import load_file
    fp_weights = load_file(str(artifacts[recipe] / "model.safetensors"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name in ("backbone.layers.1.mixer.x_proj", "backbone.layers.0.mixer.out_proj",
                 "backbone.layers.1.mixer.in_proj"):
        w = fp_weights[f"{name}.weight"].astype(np.float64)             # (N, K) as torch stores it
        scale = np.abs(w).max(axis=1) / 127
        expected = np.rint(w / scale[:, None]).astype(np.int8).T
        codes, graph_scale = inits[f"{name}.weight_int8"], inits[f"{name}.weight_scale"]
        assert codes.dtype == np.int8 and inits[f"{name}.weight_zero_point"].dtype == np.int8
        assert codes.shape == expected.shape and (codes != expected).sum() == 0, name
        np.testing.assert_allclose(graph_scale, scale, rtol=1e-7, atol=0)


def test_fp16_and_standard_op_forms(model_and_data, artifacts, tmp_path):
    _, _, ids = model_and_data
    reference = load_quantized(artifacts["mambaquant"]).model
    with torch.no_grad():
        ref32 = reference(ids).numpy()
        ref16 = reference.half()(ids).float().numpy()
    torch_fp16_error = rel_err(ref16, ref32)
    fp16 = export_onnx(artifacts["mambaquant"], tmp_path / "fp16" / "model.onnx")
    out16 = session(fp16.onnx_path).run(["logits"], {"input_ids": ids.numpy()})[0]
    assert rel_err(out16, ref32) < max(2 * torch_fp16_error, 5e-3), (rel_err(out16, ref32), torch_fp16_error)
    # FP16 inputs to QuantizeLinear move more values across ties (all off by one); with the codes
    # aligned, the FP16 arithmetic alone stays within FP16 error of the FP32 fake-quant model
    report = compare_qdq_graph(fp16.onnx_path, load_quantized(artifacts["mambaquant"]).model, ids)
    # FP16 moves inputs by up to a few FP16 ulps of |x|/scale <= 128 (2^-4 each): well inside a step
    assert_same_codes_up_to_ties(report["codes"], max_fraction=2e-2, max_distance=0.3)
    assert report["aligned"]["relative"] < 2e-3 and report["aligned"]["argmax_agreement"] >= 0.995
    scales = [t for t in onnx.load(str(fp16.onnx_path)).graph.initializer if t.name.endswith(("act_scale", "weight_scale"))]
    assert scales and all(t.data_type == onnx.TensorProto.FLOAT16 for t in scales)
    plain = export_onnx(artifacts["mambaquant"], tmp_path / "plain" / "model.onnx", precision="fp32", scan="onnx")
    model = onnx.load(str(plain.onnx_path))
    assert not model.functions and all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    # the standard-op scan computes the fake-quant function: codes equal up to ties, and with them
    # aligned the FP32 tolerance; the graph as deployed (no codes exposed) within one tie flip's error
    report = compare_qdq_graph(plain.onnx_path, load_quantized(artifacts["mambaquant"]).model, ids)
    assert_same_codes_up_to_ties(report["codes"], max_fraction=1e-4, max_distance=1e-3)
    assert report["aligned"]["relative"] < 1e-4 and report["aligned"]["argmax_agreement"] == 1.0
    out = session(plain.onnx_path).run(["logits"], {"input_ids": ids.numpy()})[0]
    assert rel_err(out, ref32) < 1e-3


def test_sessions_run_the_graph_as_written(model_and_data, artifacts, tmp_path):
    """The project's ONNX Runtime sessions keep every Q/DQ -> MatMul a float MatMul on dequantized
    values. ORT's extended level would fuse them into QuantizeLinear + MatMulIntegerToFloat (UINT8
    activations), which on AVX2 CPUs without VNNI saturates int16 pair sums: 5e-2 relative logits
    error on the rtn graph below, instead of 1e-7; weight-only DQ -> MatMul into a dynamically
    quantized MatMul. The fusion is checked on any CPU, the logits where it would saturate."""
    model, calib, ids = model_and_data
    w8a16 = save_quantized(quantize(model, "rtn", calib, QuantConfig(a_bits=16), progress=False), tmp_path / "w8a16")
    for name, art in (("w8a8", artifacts["rtn"]), ("w8a16", w8a16)):
        # beside the artifact, not inside it: export refuses to write into its input
        path = export_onnx(art, tmp_path / f"{name}-onnx" / "model.onnx", precision="fp32", decode=False).onnx_path
        options = onnxruntime_session_options()
        options.optimized_model_filepath = str(tmp_path / f"{name}-onnx" / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath).graph
        assert not [n.op_type for n in optimized.node if n.domain not in ("", "ai.onnx")], name
        producers = {o: n.op_type for n in optimized.node for o in n.output}
        matmuls = [n for n in optimized.node if n.op_type == "MatMul" and producers.get(n.input[1]) == "DequantizeLinear"]
        assert len(matmuls) == 4 * SIZES["layers"] + (name == "w8a8"), name
        assert all(producers.get(n.input[0]) == "DequantizeLinear" for n in matmuls) == (name == "w8a8"), name
        with torch.no_grad():
            ref = load_quantized(art).model(ids).numpy()
        out = session(path).run(["logits"], {"input_ids": ids.numpy()})[0]
        assert rel_err(out, ref) < 1e-4, (name, rel_err(out, ref))


def step_through(step, ids: np.ndarray) -> np.ndarray:
    """Logits of a decode-graph session fed one token at a time, carrying every *_out state."""
    state = {i.name: np.zeros([ids.shape[0]] + i.shape[1:], np.float32) for i in step.get_inputs()
             if i.name != "input_ids"}
    logits = []
    for t in range(ids.shape[1]):
        res = dict(zip([o.name for o in step.get_outputs()], step.run(None, {"input_ids": ids[:, t:t + 1], **state})))
        logits.append(res.pop("logits"))
        state = {k.replace("_out", ""): v for k, v in res.items()}
    return np.concatenate(logits, axis=1)


def torch_decode_steps(model, ids: torch.Tensor) -> np.ndarray:
    """The torch reference of a decode graph: one token at a time from the carried state, with the
    linears' input quantizers off as the decode graph has them (export/linear_forms.py)."""
    from mq_deploy.quant.decode_form import as_decode_graph
    logits, state = [], None
    with torch.no_grad(), as_decode_graph(model):
        for t in range(ids.shape[1]):
            out, state = model(ids[:, t:t + 1], state, return_state=True)
            logits.append(out.numpy())
    return np.concatenate(logits, axis=1)


def test_w8a8_decode_graph_is_fp_gemvs_over_the_prefill_weights(model_and_data, artifacts, tmp_path):
    """Decode (M = batch) runs W8A8 linears as FP GEMVs over the same INT8 weights: no activation
    Q/DQ on a linear, the prefill graph's INT8 codes and scales, the torch model with its linear
    input quantizers off as reference; the manifest says what every linear became in each graph."""
    _, _, ids = model_and_data
    result = export_onnx(artifacts["quarot"], tmp_path / "model.onnx", precision="fp32")
    prefill_graph, decode_graph = onnx.load(str(result.onnx_path)), onnx.load(str(result.decode_path))
    assert not [n for n in decode_graph.graph.node if n.op_type == "QuantizeLinear"]
    assert len([n for n in prefill_graph.graph.node if n.op_type == "QuantizeLinear"]) == 4 * SIZES["layers"]
    weights = lambda g: {t.name: onnx.numpy_helper.to_array(t) for t in g.graph.initializer  # noqa: E731
                         if t.name.endswith((".weight_int8", ".weight_scale"))}
    prefill_w, decode_w = weights(prefill_graph), weights(decode_graph)
    assert prefill_w.keys() == decode_w.keys() and len(prefill_w) == 8 * SIZES["layers"]
    assert all(np.array_equal(prefill_w[k], decode_w[k]) for k in prefill_w)
    forms = read_manifest(result.onnx_path)["graphs"]
    assert forms["prefill"]["linear_forms"] == {"float": 1, "int8": 4 * SIZES["layers"]}       # lm_head is FP
    assert forms["decode"]["linear_forms"] == {"float": 1, "int8-weights-fp-gemv": 4 * SIZES["layers"]}
    assert forms["decode"]["linears"]["backbone.layers.0.mixer.out_proj"] == "int8-weights-fp-gemv"
    short = ids[:2, :10]
    stepped = step_through(session(result.decode_path), short.numpy())
    reference = torch_decode_steps(load_quantized(artifacts["quarot"]).model, short)
    assert rel_err(stepped, reference) < 1e-4
    # and the decode form is not the prefill form: the activation quantizers really are off
    full = session(result.onnx_path).run(["logits"], {"input_ids": short.numpy()})[0]
    assert rel_err(stepped, full) > 10 * rel_err(stepped, reference)


def test_weight_only_and_refused_artifacts(model_and_data, tmp_path):
    model, calib, ids = model_and_data
    w8a16 = save_quantized(quantize(model, "rtn", calib, QuantConfig(a_bits=16), progress=False), tmp_path / "w8a16")
    result = export_onnx(w8a16, tmp_path / "w8a16.onnx", precision="fp32", decode=False)
    ops = [n.op_type for n in onnx.load(str(result.onnx_path)).graph.node]
    assert "QuantizeLinear" not in ops and ops.count("DequantizeLinear") == 4 * SIZES["layers"]
    with torch.no_grad():
        ref = load_quantized(w8a16).model(ids).numpy()
    assert rel_err(session(result.onnx_path, ).run(["logits"], {"input_ids": ids.numpy()})[0], ref) < 1e-3
    for config, message in ((QuantConfig(mode="paper"), "paper-mode"),
                            (QuantConfig(w_bits=4, a_bits=8), "no INT4 x INT8 GEMM")):
        art = save_quantized(quantize(model, "rtn", calib, config, progress=False), tmp_path / config.mode / str(config.w_bits))
        with pytest.raises(MQDeployError, match=message):
            export_onnx(art, tmp_path / "refused" / "model.onnx")
    meta = json.loads((w8a16 / "quant.json").read_text())
    meta["format_version"] = 99
    (w8a16 / "quant.json").write_text(json.dumps(meta))
    with pytest.raises(MQDeployError, match="unknown quantized-artifact format version"):
        export_onnx(w8a16, tmp_path / "refused" / "model.onnx")
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").iterdir())


def test_quantized_conv_prefill_and_decode(model_and_data, tmp_path):
    """--quantize-conv: INT8 per-channel conv weights and a Q/DQ on the conv window; the codes match
    torch's, and decode steps (carrying the quantized window, the conv input still quantized)
    reproduce the torch decode form."""
    model, calib, ids = model_and_data
    art = save_quantized(quantize(model, "mambaquant", calib, QuantConfig(quantize_conv=True), progress=False),
                         tmp_path / "art")
    result = export_onnx(art, tmp_path / "model.onnx", precision="fp32")
    graph = onnx.load(str(result.onnx_path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    producers = {o: n for n in graph.node for o in n.output}
    assert len(convs) == SIZES["layers"]
    assert all(producers[c.input[0]].op_type == producers[c.input[1]].op_type == "DequantizeLinear" for c in convs)
    report = compare_qdq_graph(result.onnx_path, load_quantized(art).model, ids)
    assert_same_codes_up_to_ties(report["codes"], max_fraction=1e-4, max_distance=1e-3)
    assert report["aligned"]["relative"] < 1e-4
    decode_graph = onnx.load(str(result.decode_path)).graph
    quantized = [n.name for n in decode_graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantized) == SIZES["layers"] and all(".conv1d." in q for q in quantized)   # the conv's only
    short = ids[:2, :10]
    stepped = step_through(session(result.decode_path), short.numpy())
    assert rel_err(stepped, torch_decode_steps(load_quantized(art).model, short)) < 1e-4


@pytest.mark.parametrize("recipe", ["rtn", "mambaquant"])
def test_w4a16_graph_int4_blocked_weights(model_and_data, recipe, tmp_path):
    """W4A16: INT4 codes blocked along K (opset 21), the fake-quant model's exact weights; no
    activation quantization, so the FP32 graph meets the FP tolerance directly."""
    from onnx import numpy_helper
    from conftest import random_hf_mamba
    _, calib, ids = model_and_data
    hf = random_hf_mamba(vocab=256, hidden=64, layers=2, state=8, seed=7)   # K: 64, 128, 128 take INT4 blocks
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    art = save_quantized(quantize(model, recipe, calib, QuantConfig(w_bits=4, a_bits=16), progress=False),
                         tmp_path / "w4a16")
    result = export_onnx(art, tmp_path / "fp32" / "model.onnx", precision="fp32")
    graph = onnx.load(str(result.onnx_path))
    assert {i.domain: i.version for i in graph.opset_import}[""] == 21 and graph.ir_version == 10
    assert read_manifest(result.onnx_path)["opset"]["ai.onnx"] == 21
    reference = load_quantized(art).model
    inits = {t.name: t for t in graph.graph.initializer}
    dqs = {n.name: n for n in graph.graph.node if n.op_type == "DequantizeLinear"}
    # dt_proj (K = dt_rank) stays FP: three INT4 linears per layer, in both graphs
    assert len(dqs) == 3 * SIZES["layers"] and not any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    assert "backbone.layers.0.mixer.dt_proj.weight" in inits
    for graph_kind in ("prefill", "decode"):
        assert read_manifest(result.onnx_path)["graphs"][graph_kind]["linear_forms"] == {
            "float": 1 + SIZES["layers"], "int4-weight-only": 3 * SIZES["layers"]}
    for name in ("backbone.layers.0.mixer.in_proj", "backbone.layers.1.mixer.x_proj"):
        w = inits[f"{name}.weight_int4"]
        assert w.data_type == onnx.TensorProto.INT4
        codes = numpy_helper.to_array(w).astype(np.float64)
        scale = numpy_helper.to_array(inits[f"{name}.weight_scale"]).astype(np.float64)
        block = {a.name: a.i for a in dqs[f"{name}.weight_dequantize"].attribute}["block_size"]
        assert codes.min() >= -8 and codes.max() <= 7 and scale.shape == (codes.shape[0] // block, codes.shape[1])
        dequantized = codes * np.repeat(scale, block, axis=0)          # ONNX blocked DequantizeLinear, by hand
        np.testing.assert_allclose(dequantized, reference.get_submodule(name).weight.detach().double().numpy().T,
                                   rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        ref = reference(ids).numpy()
    out = session(result.onnx_path, ).run(["logits"], {"input_ids": ids.numpy()})[0]
    assert rel_err(out, ref) < 1e-4
    fp16 = export_onnx(art, tmp_path / "fp16" / "model.onnx", precision="fp16")
    out16 = session(fp16.onnx_path, ).run(["logits"], {"input_ids": ids.numpy()})[0]
    assert rel_err(out16, ref) < 5e-3


def test_demo_model_end_to_end(demo_model_dir_or_skip, tmp_path):
    """The bundled demo model, mambaquant W8A8: ORT vs fake-quant on held-out text."""
    from mq_deploy.data.calibration import calibration_batches
    from mq_deploy.models.loading import load_model
    from mq_deploy.samples import HELDOUT_TEXT, sample_text
    loaded = load_model(demo_model_dir_or_skip)
    calib, _ = calibration_batches(loaded.tokenizer, str(sample_text("wiki_calib.txt")), 2, 128)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # the float64 folds are small; a second thread only contends (measured 5x faster)
    try:
        qm = quantize(loaded.model, "mambaquant", calib, QuantConfig(), progress=False)
    finally:
        torch.set_num_threads(threads)
    art = save_quantized(qm, tmp_path / "art", source_dir=demo_model_dir_or_skip)
    text = sample_text(HELDOUT_TEXT).read_text(encoding="utf-8")[:4096]
    ids = torch.tensor([list(text.encode("utf-8"))[:1024]]).reshape(2, 512)
    reference = load_quantized(art).model
    fp32 = export_onnx(art, tmp_path / "fp32" / "model.onnx", precision="fp32", decode=False)
    report = compare_qdq_graph(fp32.onnx_path, reference, ids)
    # flips at ties happen here (~4e-6 of the codes), so the plain error is ~1e-2; aligned: last ulps
    assert_same_codes_up_to_ties(report["codes"], max_fraction=1e-4, max_distance=1e-3)
    assert report["aligned"]["relative"] < 1e-4 and report["aligned"]["argmax_agreement"] == 1.0
    # plain: a code flipped at a tie moves a logit by ~1e-2, enough to swap near-tied top tokens
    # (5-6 of these 1024, depending on the calibration's last bits); the aligned check is the exact one
    assert report["plain"]["argmax_agreement"] >= 0.99
    assert abs(report["nll"]["onnx"] - report["nll"]["torch"]) < 1e-3 * report["nll"]["torch"]
    fp16 = export_onnx(art, tmp_path / "fp16" / "model.onnx", precision="fp16", decode=False)
    report16 = compare_qdq_graph(fp16.onnx_path, reference, ids)
    assert report16["aligned"]["argmax_agreement"] >= 0.995 and report16["aligned"]["relative"] < 2e-3
    assert abs(report16["nll"]["onnx"] - report16["nll"]["torch"]) < 5e-3 * report16["nll"]["torch"]
    fp_export = export_onnx(demo_model_dir_or_skip, tmp_path / "fp" / "model.onnx", precision="fp32", decode=False)
    # INT8 linears; the embedding (the tied head, R1ᵀ before it) and the SSM parameters stay FP
    assert fp32.bytes["prefill"] < 0.5 * fp_export.bytes["prefill"]


@pytest.fixture
def demo_model_dir_or_skip():
    from mq_deploy.samples import demo_model_dir
    try:
        path = demo_model_dir()
    except MQDeployError:
        pytest.skip("the demo model (samples/models/mamba-byte-demo) is not built yet")
    if not (path / "config.json").is_file():
        pytest.skip("the demo model directory has no config.json yet")
    return path


def test_polygraphy_runs_the_file_and_matches_saved_torch_outputs(model_and_data, artifacts, tmp_path):
    """`polygraphy run --onnxrt` on the exported file unchanged, against saved fake-quant outputs.

    At the project's ORT level (ORT_ENABLE_BASIC; polygraphy's default, ORT_ENABLE_ALL, fuses the
    Q/DQ MatMuls into an INT8 GEMM that saturates on AVX2 without VNNI: 0.41 max abs here). The
    saved outputs are the fake-quant model's with its quantizers emitting ONNX Runtime's codes (equal
    to its own but for ties, checked): one code flipped at a tie moves a logit by 0.0125 here, more
    than an elementwise bound can allow, while the graph's arithmetic stays within 1e-5."""
    import shutil
    import subprocess
    pytest.importorskip("polygraphy")
    from polygraphy.comparator import IterationResult, RunResults
    from polygraphy.json import save_json
    from mq_deploy.export.aligned_codes import aligned_torch_logits, run_with_codes
    if shutil.which("polygraphy") is None:
        pytest.skip("the polygraphy command is not on PATH")
    _, _, ids = model_and_data
    result = export_onnx(artifacts["mambaquant"], tmp_path / "model.onnx", precision="fp32", decode=False)
    _, codes = run_with_codes(result.onnx_path, ids.numpy())
    logits, code_stats = aligned_torch_logits(load_quantized(artifacts["mambaquant"]).model, ids, codes)
    assert_same_codes_up_to_ties(code_stats, max_fraction=1e-4, max_distance=1e-3)
    save_json([{"input_ids": ids.numpy()}], str(tmp_path / "inputs.json"))
    reference = RunResults()
    reference.append(("torch-fake-quant", [IterationResult({"logits": logits.astype(np.float32)},
                                                           runner_name="torch-fake-quant")]))
    reference.save(str(tmp_path / "reference.json"))
    r = subprocess.run(["polygraphy", "run", str(result.onnx_path), "--onnxrt", "--load-inputs",
                        str(tmp_path / "inputs.json"), "--load-outputs", str(tmp_path / "reference.json"),
                        "--graph-optimization-level", "ORT_ENABLE_BASIC",
                        # elementwise, logits O(10): FP32 summation order only
                        "--atol", "1e-4", "--rtol", "1e-4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "PASSED" in r.stdout
