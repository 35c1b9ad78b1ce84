"""Mamba-2 through export (issue 16, item 3's CPU part): the SSDScan op's local function and inline
form against the float64 reference scan; whole graphs from directories transformers wrote, run by
ONNX Runtime against our torch model (which tests/test_models_mamba2.py holds to transformers'),
prefill and decode steps; the mamba_ssm norm variants; a quantized artifact's FP16 export through
check and validate."""

from __future__ import annotations

import copy
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

from conftest import randomize_parameters  # noqa: E402
from mq_deploy.deploy.contract import carry  # noqa: E402
from mq_deploy.deploy.manifest import read_manifest  # noqa: E402
from mq_deploy.deploy.onnxruntime_session import onnxruntime_session  # noqa: E402
from mq_deploy.export import check_model, export_onnx  # noqa: E402
from mq_deploy.export import ssd_scan_node  # noqa: E402
from mq_deploy.export.onnx_builder import DOMAIN, OPSET, GraphBuilder  # noqa: E402
from mq_deploy.models.mamba2 import Mamba2Config, Mamba2LM  # noqa: E402
from mq_deploy.models.mamba2_loading import load_mamba2, save_mamba2  # noqa: E402
from mq_deploy.ops.ssd_scan import ssd_scan_ref  # noqa: E402
from mq_deploy.quant.artifact import save_quantized  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.validate.validation import validate_export  # noqa: E402

# 3 groups of 2 heads (a wrong head-to-group map shows), a dt limit that bites, a tied head
CONFIG = dict(vocab_size=61, hidden_size=24, num_hidden_layers=2, num_heads=6, head_dim=8, n_groups=3,
              state_size=16, chunk_size=16, conv_kernel=4, use_bias=True, tie_word_embeddings=True,
              time_step_limit=(0.02, 0.6))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def ids(vocab: int, shape, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def run(path, feeds: dict) -> dict:
    sess = onnxruntime_session(path)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {k: np.asarray(v) for k, v in feeds.items()})))


# ---- the op alone ---------------------------------------------------------------------------------
def op_model(form: str, heads, head_dim, groups, n, **attributes) -> onnx.ModelProto:
    b = GraphBuilder()
    names = list(ssd_scan_node.INPUTS)
    if form == "function":
        ssd_scan_node.emit_ssd_scan_node(b, names, "ssd", ["y", "h"], head_dim=head_dim, n_groups=groups, **attributes)
    else:
        ssd_scan_node.emit_ssd_body(b, names, ["y", "h"],
                                    attrs=ssd_scan_node.plugin_attributes(head_dim, groups, **attributes))
    shapes = {"x": ["b", "L", heads * head_dim], "dt": ["b", "L", heads], "A": [heads], "B": ["b", "L", groups * n],
              "C": ["b", "L", groups * n], "D": [heads], "dt_bias": [heads]}
    graph = helper.make_graph(
        b.nodes, "ssd", [helper.make_tensor_value_info(k, TensorProto.FLOAT, shapes[k]) for k in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "L", heads * head_dim]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, ["b", heads, head_dim, n])], b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, 1)],
                              functions=[ssd_scan_node.ssd_scan_function()] if form == "function" else [])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("form", ["function", "inline"])
@pytest.mark.parametrize("softplus,limit", [(True, (0.0, math.inf)), (True, (0.05, 0.4)), (False, (0.0, math.inf))])
def test_the_ssd_scan_op_computes_the_float64_reference(form, softplus, limit):
    batch, length, heads, head_dim, groups, n = 2, 11, 6, 4, 3, 5
    g = torch.Generator().manual_seed(3)
    x, dt = torch.randn(batch, length, heads * head_dim, generator=g), torch.randn(batch, length, heads, generator=g)
    A, D, bias = -torch.rand(heads, generator=g) * 2, torch.randn(heads, generator=g), torch.randn(heads, generator=g)
    B, C = (torch.randn(batch, length, groups * n, generator=g) for _ in range(2))
    model = op_model(form, heads, head_dim, groups, n, dt_softplus=softplus, dt_limit=limit)
    y, h = onnxruntime_session_of(model).run(None, dict(zip(ssd_scan_node.INPUTS, (t.numpy() for t in (
        x, dt, A, B, C, D, bias)))))
    y_ref, h_ref = ssd_scan_ref(x.double().view(batch, length, heads, head_dim), dt.double(), A.double(),
                                B.double().view(batch, length, groups, n), C.double().view(batch, length, groups, n),
                                D.double(), bias.double(), dt_softplus=softplus, dt_limit=limit)
    assert y.shape == (batch, length, heads * head_dim) and h.shape == (batch, heads, head_dim, n)
    assert rel_err(y, y_ref.reshape(batch, length, -1)) < 1e-5
    assert rel_err(h, h_ref) < 1e-5


def onnxruntime_session_of(model: onnx.ModelProto):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


# ---- whole models ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(2)
    hf = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(use_conv_bias=True, expand=2, **CONFIG))
    randomize_parameters(hf.eval(), a_log=(-1.0, 2.0), dt_bias=("dt_bias", (-3.0, 1.0)), other_bias_std=0.3)
    path = tmp_path_factory.mktemp("mamba2") / "hf"
    hf.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def exports(hf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mamba2_onnx")
    return {(p, s): export_onnx(hf_dir, out / f"{p}_{s}" / "model.onnx", precision=p, scan=s)
            for p, s in (("fp32", "plugin"), ("fp32", "onnx"), ("fp16", "plugin"))}


@pytest.mark.parametrize("scan", ["plugin", "onnx"])
def test_fp32_graph_computes_the_torch_model_and_its_state(hf_dir, exports, scan):
    model = load_mamba2(hf_dir).model.eval()
    for batch, length in ((1, 1), (3, 37), (1, 130)):
        tokens = ids(CONFIG["vocab_size"], (batch, length), seed=length)
        with torch.no_grad():
            logits, state = model(tokens, return_state=True)
        out = run(exports["fp32", scan].onnx_path, {"input_ids": tokens.numpy()})
        assert out["logits"].shape == (batch, length, CONFIG["vocab_size"])
        assert rel_err(out["logits"], logits) < 1e-4, (batch, length)
        for i in range(CONFIG["num_hidden_layers"]):
            assert rel_err(out[f"conv_state_out.{i}"], state.conv[i]) < 1e-5
            assert out[f"ssm_state_out.{i}"].shape == (batch, 6, 8, 16)
            assert rel_err(out[f"ssm_state_out.{i}"], state.ssm[i]) < 1e-4


def test_decode_steps_continue_the_prefill(hf_dir, exports):
    result = exports["fp32", "plugin"]
    tokens = ids(CONFIG["vocab_size"], (3, 14), seed=4).numpy()
    full = run(result.onnx_path, {"input_ids": tokens})["logits"]
    out = run(result.onnx_path, {"input_ids": tokens[:, :6]})
    logits = [out["logits"]]
    for t in range(6, 14):
        out = run(result.decode_path, {"input_ids": tokens[:, t:t + 1], **carry(out)})
        logits.append(out["logits"])
    assert rel_err(np.concatenate(logits, axis=1), full) < 1e-5
    # the FP16 step: FP16 conv window, FP32 SSM state [b, heads, head_dim, N]
    inputs = {i.name: i for i in onnxruntime_session(exports["fp16", "plugin"].decode_path).get_inputs()}
    assert inputs["conv_state.0"].type == "tensor(float16)" and inputs["conv_state.0"].shape[1:] == [24 * 2 + 2 * 48, 3]
    assert inputs["ssm_state.0"].type == "tensor(float)" and inputs["ssm_state.0"].shape[1:] == [6, 8, 16]


def test_graph_layout_check_and_manifest(exports):
    result = exports["fp16", "plugin"]
    model = onnx.load(str(result.onnx_path))
    nodes = [n for n in model.graph.node if n.op_type == "SSDScan"]
    assert len(nodes) == CONFIG["num_hidden_layers"] and all(n.domain == DOMAIN for n in nodes)
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["head_dim"] == 8 and attrs["n_groups"] == 3 and attrs["dt_softplus"] == 1
    assert (round(attrs["dt_min"], 6), round(attrs["dt_max"], 6)) == (0.02, 0.6)
    assert check_model(model, path=result.onnx_path) == []
    decode = onnx.load(str(result.decode_path))
    assert not any(n.domain == DOMAIN for n in decode.graph.node)       # the step is standard ops
    manifest = read_manifest(result.onnx_path)
    assert manifest["model"]["model_type"] == "mamba2" and manifest["plugins"][0]["name"] == "SSDScan"
    assert "[batch, num_heads, head_dim, state_size]" in manifest["state"]["ssm"]
    # a broken node is found: no head_dim, and no local function to run it
    del nodes[0].attribute[[a.name for a in nodes[0].attribute].index("head_dim")]
    del model.functions[:]
    problems = " ".join(str(p) for p in check_model(model))
    assert "head_dim must be a positive int" in problems and "no local function mq_deploy.SSDScan" in problems


def test_fp16_graph_tracks_the_fp32_model(hf_dir, exports):
    model = load_mamba2(hf_dir).model.eval()
    tokens = ids(CONFIG["vocab_size"], (2, 48), seed=7)
    with torch.no_grad():
        ref32 = model(tokens)
        ref16 = copy.deepcopy(model).half()(tokens).float()
    out = run(exports["fp16", "plugin"].onnx_path, {"input_ids": tokens.numpy()})["logits"]
    assert rel_err(out, ref32) < 3 * max(rel_err(ref16, ref32), 1e-3)


@pytest.mark.parametrize("variant", [dict(norm_before_gate=True), dict(rms_norm=False)])
def test_mamba_ssm_norm_variants_export(variant, tmp_path):
    """mamba_ssm's options transformers cannot express: the gate after the norm, and no norm."""
    config = Mamba2Config(**CONFIG, **variant)
    torch.manual_seed(9)
    model = randomize_parameters(Mamba2LM(config).eval(), a_log=(-1.0, 2.0), dt_bias=("dt_bias", (-3.0, 1.0)),
                                 other_bias_std=0.3)
    save_mamba2(model, tmp_path / "model")
    result = export_onnx(tmp_path / "model", tmp_path / "onnx" / "model.onnx", precision="fp32")
    tokens = ids(CONFIG["vocab_size"], (2, 21), seed=1)
    with torch.no_grad():
        expected = load_mamba2(tmp_path / "model").model.eval()(tokens)
    assert rel_err(run(result.onnx_path, {"input_ids": tokens.numpy()})["logits"], expected) < 1e-4


@pytest.fixture(scope="module")
def quantized(hf_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("mamba2_q")
    model = load_mamba2(hf_dir).model
    qm = quantize(copy.deepcopy(model), "mambaquant", ids(CONFIG["vocab_size"], (8, 64), seed=3),
                  QuantConfig(w_bits=8, a_bits=8), progress=False)
    save_quantized(qm, root / "q", source_dir=hf_dir)
    np.save(root / "tokens.npy", ids(CONFIG["vocab_size"], (4, 96), seed=11).numpy())
    return root, qm


def test_quantized_fp32_graph_computes_the_fake_quant_model(quantized):
    root, qm = quantized
    result = export_onnx(root / "q", root / "fp32" / "model.onnx", precision="fp32")
    ops = {n.op_type for n in onnx.load(str(result.onnx_path)).graph.node}
    assert {"SSDScan", "HadamardTransform", "QuantizeLinear", "DequantizeLinear"} <= ops
    tokens = ids(CONFIG["vocab_size"], (2, 40), seed=8)
    with torch.no_grad():
        expected = qm.model.eval()(tokens)
    out = run(result.onnx_path, {"input_ids": tokens.numpy()})["logits"]
    # the same codes up to float32 rounding at a code boundary: agreement far below the INT8 error
    assert rel_err(out, expected) < 2e-3


def test_quantized_fp16_export_passes_check_and_validate(quantized):
    root, _ = quantized
    result = export_onnx(root / "q", root / "fp16" / "model.onnx", precision="fp16")
    report = validate_export(result.onnx_path, token_file=str(root / "tokens.npy"), seq_len=96, samples=4)
    assert report["passed"], report
    torch_ref = next(r for r in report["references"] if r["reference"] == "torch fp16")
    assert torch_ref["kind"] == "same-graph" and torch_ref["logits"]["argmax_agreement"] >= 0.97


def test_standard_op_export_of_quantized_mamba2_keeps_shapes_and_computes_the_model(quantized):
    """`--scan onnx` of a MambaQuant Mamba-2: no custom op; the inline Hadamard before each out_proj
    keeps batch, sequence and width through shape inference (prefill and decode), and the graph
    computes the fake-quant model."""
    root, qm = quantized
    result = export_onnx(root / "q", root / "plain" / "model.onnx", precision="fp32", scan="onnx")
    d_inner = CONFIG["num_heads"] * CONFIG["head_dim"]
    for path, decode in ((result.onnx_path, False), (result.onnx_path.with_name("model.decode.onnx"), True)):
        model = onnx.load(str(path))
        assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
        inferred = onnx.shape_inference.infer_shapes(model)
        shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                  for v in inferred.graph.value_info}
        outs = [n.output[0] for n in model.graph.node if n.op_type == "Reshape" and n.name.endswith(".hadamard")]
        assert len(outs) == CONFIG["num_hidden_layers"], path
        for o in outs:     # [batch, sequence (1 in decode), d_inner], all known
            batch, seq, width = shapes[o]
            assert isinstance(batch, str) and width == d_inner and (seq == 1 if decode else isinstance(seq, str)), \
                (path.name, shapes[o])
    tokens = ids(CONFIG["vocab_size"], (2, 40), seed=8)
    with torch.no_grad():
        expected = qm.model.eval()(tokens)
    assert rel_err(run(result.onnx_path, {"input_ids": tokens.numpy()})["logits"], expected) < 2e-3


def test_fused_quantize_export_of_mamba2_validates(quantized):
    """--fuse-quantize on Mamba-2: the Hadamard after the gated norm takes out_proj's quantizer, and
    validate (ONNX Runtime against the torch fake-quant model) still passes."""
    root, qm = quantized
    result = export_onnx(root / "q", root / "fused" / "model.onnx", precision="fp32", fuse_quantize=True)
    ops = [n.op_type for n in onnx.load(str(result.onnx_path)).graph.node]
    assert ops.count("HadamardQuantize") == CONFIG["num_hidden_layers"] and "HadamardTransform" not in ops
    tokens = ids(CONFIG["vocab_size"], (2, 40), seed=8)
    with torch.no_grad():
        expected = qm.model.eval()(tokens)
    assert rel_err(run(result.onnx_path, {"input_ids": tokens.numpy()})["logits"], expected) < 2e-3
    report = validate_export(result.onnx_path, token_file=str(root / "tokens.npy"), seq_len=96, samples=4)
    assert report["passed"], report
