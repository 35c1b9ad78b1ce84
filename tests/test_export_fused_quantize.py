"""`export --fuse-quantize`: out_proj's online Hadamard and its INT8 input quantizer as one
HadamardQuantize node (issue 15, item 3). Checked against independent references: the local
function against float64 numpy (signs, Sylvester/Paley Hadamard, round half to even, saturation),
the fused graph against the unfused one and against the torch fake-quant model in ONNX Runtime, and
the contracts TensorRT needs (every DequantizeLinear reads codes at the scale they were made with)."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")

from mq_deploy.deploy.manifest import read_manifest  # noqa: E402
from mq_deploy.deploy.onnxruntime_session import onnxruntime_session  # noqa: E402
from mq_deploy.errors import MQDeployError  # noqa: E402
from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.export.aligned_codes import compare_qdq_graph, run_with_codes  # noqa: E402
from mq_deploy.export.check import check_model  # noqa: E402
from mq_deploy.export.hadamard_node import hadamard_function, hadamard_quantize_function  # noqa: E402
from mq_deploy.export.onnx_builder import DOMAIN, DOMAIN_VERSION, OPSET  # noqa: E402
from mq_deploy.quant.artifact import load_quantized, save_quantized  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402

SIZES = dict(vocab=256, hidden=48, layers=2, state=8, rank=12)   # d_inner 96 = 12 * 8: a Paley base


def sylvester(p: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < p:
        h = np.block([[h, h], [h, -h]])
    return h


def paley_12() -> np.ndarray:
    """Paley I for q = 11, written out here: I + [[0, 1ᵀ], [-1, Q]], Q the Jacobsthal matrix."""
    q = 11
    residues = {(i * i) % q for i in range(1, q)}
    chi = lambda a: 0 if a % q == 0 else (1 if a % q in residues else -1)   # noqa: E731
    jacobsthal = np.array([[chi(j - i) for j in range(q)] for i in range(q)], dtype=np.float64)
    core = np.zeros((q + 1, q + 1))
    core[0, 1:], core[1:, 0], core[1:, 1:] = 1, -1, jacobsthal
    return core + np.eye(q + 1)


@functools.lru_cache(maxsize=4)
def hadamard_n(n: int) -> np.ndarray:
    """mq-deploy's H_n for the sizes used here: kron(H_12, S_p) / sqrt(n), or S_n / sqrt(n) for a power of two."""
    base = paley_12() if n % 12 == 0 else np.ones((1, 1))
    h = np.kron(base, sylvester(n // base.shape[0])) / np.sqrt(n)
    assert np.allclose(h @ h.T, np.eye(n))
    return h


@pytest.fixture(autouse=True, scope="module")
def _free_the_cached_matrices():
    yield
    hadamard_n.cache_clear()          # 6144² float64 is 300 MB: not for the rest of the test process


def reference_transform(x: np.ndarray, signs: np.ndarray, scale: float) -> np.ndarray:
    return (x.astype(np.float64) * signs) @ hadamard_n(x.shape[-1]) / scale


def reference_hadamard_quantize(x: np.ndarray, signs: np.ndarray, scale: float) -> np.ndarray:
    """float64: x·diag(signs)·H_n / scale, round half to even, saturate to int8."""
    return np.clip(np.rint(reference_transform(x, signs, scale)), -128, 127).astype(np.int8)


def run_function(x: np.ndarray, signs: np.ndarray, scale: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    x_type = helper.np_dtype_to_tensor_dtype(x.dtype)
    node = helper.make_node("HadamardQuantize", ["x", "signs", "scale"], ["y"], domain=DOMAIN,
                            plugin_version="1", plugin_namespace="mq_deploy")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", x_type, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, list(x.shape))],
                              [numpy_helper.from_array(signs, "signs"), numpy_helper.from_array(scale, "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
                              functions=[hadamard_quantize_function(n)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_local_function_is_the_float64_definition(dtype):
    rng = np.random.default_rng(0)
    n = 96
    x = (rng.standard_normal((3, 5, n)) * 2).astype(dtype)
    x[0, 0, :] *= 40                                   # one token far past the range: saturates
    signs = rng.choice([-1.0, 1.0], n).astype(np.float32)
    scale = np.array(0.03, dtype)
    ours = run_function(x, signs, scale)
    want = reference_hadamard_quantize(x, signs, float(scale))
    assert ours.dtype == np.int8 and ours.shape == x.shape
    assert (ours == 127).sum() > 0 and (ours == -128).sum() > 0
    # float32 against float64 arithmetic: a code may differ by one where the value sits within float32
    # rounding of a tie, nowhere else
    y = reference_transform(x, signs, float(scale))
    near_tie = np.abs(np.abs(y - np.floor(y)) - 0.5) < 1e-4
    differ = ours != want
    assert np.abs(ours.astype(int) - want).max() <= 1 and not (differ & ~near_tie).any()


def test_transform_function_runs_at_every_call_site_of_a_large_model():
    """64 HadamardTransform nodes of width 6144 (mamba-2.8b has 64 layers of d_inner 5120) in one
    graph: ONNX Runtime inlines the local function at each of them. With H_n as one n×n constant in
    the body that was 64 × 38 MB, past ONNX Runtime's cumulative inlining limit ("Function inlining
    exceeded the configured cumulative protobuf expansion limit"), as a mamba2-2.7b export hit; the
    two small factors keep it at a few MB. The chained result is the float64 product."""
    rng = np.random.default_rng(3)
    n, layers = 6144, 64                                  # 12 * 512: the independent reference above
    x = rng.standard_normal((2, n)).astype(np.float32)
    signs = [rng.choice([-1.0, 1.0], n).astype(np.float32) for _ in range(2)]
    nodes = [helper.make_node("HadamardTransform", [f"h{i}", f"signs{i % 2}"], [f"h{i + 1}"], domain=DOMAIN,
                              plugin_version="1", plugin_namespace="mq_deploy") for i in range(layers)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [2, n])],
                              [helper.make_tensor_value_info(f"h{layers}", TensorProto.FLOAT, [2, n])],
                              [numpy_helper.from_array(v, f"signs{i}") for i, v in enumerate(signs)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
                              functions=[hadamard_function(n)])
    model.ir_version = 10
    assert model.ByteSize() < 4 << 20
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ours = sess.run(None, {"h0": x})[0]
    h = hadamard_n(n)
    want = x.astype(np.float64)
    for i in range(layers):
        want = (want * signs[i % 2]) @ h
    assert np.abs(ours - want).max() / np.abs(want).max() < 1e-5



def inline_hadamard_model(n: int, layers: int, float_type: int, lead: list) -> onnx.ModelProto:
    """`layers` chained inline transforms (the `--scan onnx` form) with their own random signs."""
    from mq_deploy.export.hadamard_node import emit_hadamard_inline
    from mq_deploy.export.onnx_builder import GraphBuilder
    b, h = GraphBuilder(), "x"
    for i in range(layers):
        h = emit_hadamard_inline(b, h, torch.tensor(np.random.default_rng(i).choice([-1.0, 1.0], n)), float_type,
                                 f"layer{i}.hadamard", lead_dims=len(lead))
    b.node("Identity", [h], ["y"], name="y")
    graph = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info("x", float_type, [*lead, n])],
                              [helper.make_tensor_value_info("y", float_type, [*lead, n])], b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("n, lead", [(96, ["b", "L"]), (6144, ["b"]), (64, ["b", "L"])])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_inline_transform_is_the_float64_definition_with_factors_shared_by_every_layer(n, lead, dtype):
    """`--scan onnx` emits x·diag(signs)·H_n as two MatMuls with ~√n-wide factors that every layer
    shares (not one n×n constant a layer: 3.4 GB of FP16 at mamba-2.8b); FP16 keeps FP16 accuracy."""
    layers = 3                                           # (1 factor where Lᵀ/√|L| = R/√|R|, as at n = 64)
    float_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = inline_hadamard_model(n, layers, float_type, lead)
    # the reshapes copy the leading dims: shape inference keeps them (and n) through every layer
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.value_info}
    assert all(shapes[f"layer{i}.hadamard_out"] == [*lead, n] for i in range(layers)), shapes
    factors = [t for t in model.graph.initializer if t.name.startswith(f"hadamard_{n}_")]
    assert len(factors) in (1, 2) and sum(np.prod(t.dims) for t in factors) <= 3 * n   # n² for one matrix
    assert sum(np.prod(t.dims) for t in model.graph.initializer) < 3 * n + layers * n + 16   # + the signs
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, n) if len(lead) == 2 else (3, n))
    x[..., 3] *= 200                                     # an outlier channel, as out_proj's input has
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ours = sess.run(None, {"x": x.astype(dtype)})[0]
    want = x.astype(dtype).astype(np.float64)
    for i in range(layers):
        want = (want * np.random.default_rng(i).choice([-1.0, 1.0], n)) @ hadamard_n(n)
    error = np.linalg.norm(ours - want) / np.linalg.norm(want)
    assert ours.dtype == dtype and error < (2e-3 if dtype == np.float16 else 1e-6), error


def test_rounds_half_to_even_and_saturates_exactly():
    """n = 64: H_n = S_64 / 8 exactly, so a one-hot row 8k transforms to ±k with no rounding, and
    k / 2 lands on exact ties."""
    n = 64
    k = np.array([5, 7, -5, -7, 3, 1000, -1000, 0], np.float32)
    x = np.zeros((len(k), n), np.float32)
    x[:, 0] = 8 * k
    signs = np.ones(n, np.float32)
    got = run_function(x, signs, np.array(2.0, np.float32))
    # the first column of S_64 is all ones: every output of row r is k_r / 2
    expected = np.array([2, 4, -2, -4, 2, 127, -128, 0], np.int8)      # 2.5 -> 2, 3.5 -> 4, 1.5 -> 2
    assert (got == expected[:, None]).all(), got[:, :3]
    assert np.array_equal(got, reference_hadamard_quantize(x, signs, 2.0))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from conftest import random_mamba_lm, token_windows
    model = random_mamba_lm(**SIZES, seed=5)
    calib, ids = token_windows(0, (6, 64), (4, 48))
    root = tmp_path_factory.mktemp("fused")
    out = {recipe: save_quantized(quantize(model, recipe, calib, QuantConfig(), progress=False), root / recipe)
           for recipe in ("mambaquant", "rtn")}
    out["w4a16"] = save_quantized(quantize(model, "mambaquant", calib, QuantConfig(w_bits=4, a_bits=16),
                                           progress=False), root / "w4a16")
    return out, ids


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fused_graph_matches_the_unfused_one_and_the_torch_model(artifacts, precision, tmp_path):
    arts, ids = artifacts
    plain = export_onnx(arts["mambaquant"], tmp_path / "plain" / "model.onnx", precision=precision)
    fused = export_onnx(arts["mambaquant"], tmp_path / "fused" / "model.onnx", precision=precision,
                        fuse_quantize=True)
    model = onnx.load(str(fused.onnx_path))
    ops = [n.op_type for n in model.graph.node]
    # every online Hadamard took its quantizer with it: one Q and one kernel fewer per layer
    assert ops.count("HadamardQuantize") == SIZES["layers"] and "HadamardTransform" not in ops
    assert ops.count("QuantizeLinear") == 3 * SIZES["layers"]
    assert {f.name for f in model.functions} == {"SelectiveScan", "HadamardQuantize"}
    assert check_model(model, fused.onnx_path) == []
    manifest = read_manifest(fused.onnx_path)
    assert manifest["fused_quantize"] == [f"backbone.layers.{i}.mixer.out_proj.act_quantize"
                                          for i in range(SIZES["layers"])]
    assert "HadamardQuantize" in {p["name"] for p in manifest["plugins"]}
    assert read_manifest(plain.onnx_path)["fused_quantize"] == []
    # the same codes as the unfused graph (but where its FP16 rounding of the transform moves a tie)
    # and the same logits
    x = ids.numpy().astype(np.int64)
    plain_logits, plain_codes = run_with_codes(plain.onnx_path, x)
    fused_logits, fused_codes = run_with_codes(fused.onnx_path, x)
    assert plain_codes.keys() == fused_codes.keys() and len(fused_codes) == 4 * SIZES["layers"]
    if precision == "fp32":        # the same float32 transform feeds the same quantizer: the same codes
        assert all(np.array_equal(codes, plain_codes[p]) for p, codes in fused_codes.items())
        assert np.linalg.norm(fused_logits - plain_logits) / np.linalg.norm(plain_logits) < 1e-5
    else:   # the unfused graph rounds the transform to FP16 before quantizing: first-layer ties move by one
        point = "backbone.layers.0.mixer.out_proj_input"
        diff = np.abs(fused_codes[point].astype(int) - plain_codes[point])
        print("fp16 first-layer code flips:", diff.max(), diff.mean())
        assert diff.max() <= 1 and (diff > 0).mean() < 0.05
    # and the fused graph is the torch fake-quant model once the codes are aligned
    report = compare_qdq_graph(fused.onnx_path, load_quantized(arts["mambaquant"]).model, ids)
    assert report["codes"]["compared"] > 0
    assert report["aligned"]["relative"] < (1e-4 if precision == "fp32" else 5e-3)
    # the decode graph reads FP16 activations (linear_forms.py): nothing to fuse, the plain transform stays
    decode_ops = [n.op_type for n in onnx.load(str(fused.decode_path)).graph.node]
    assert decode_ops.count("HadamardTransform") == SIZES["layers"] and "HadamardQuantize" not in decode_ops


def test_fused_graph_runs_in_the_projects_session(artifacts, tmp_path):
    arts, ids = artifacts
    fused = export_onnx(arts["mambaquant"], tmp_path / "model.onnx", fuse_quantize=True)
    logits = onnxruntime_session(fused.onnx_path).run(["logits"], {"input_ids": ids.numpy().astype(np.int64)})[0]
    assert np.isfinite(logits).all()


def test_check_rejects_a_dequantize_at_another_scale(artifacts, tmp_path):
    arts, _ = artifacts
    fused = export_onnx(arts["mambaquant"], tmp_path / "model.onnx", precision="fp32", fuse_quantize=True,
                        decode=False)
    model = onnx.load(str(fused.onnx_path))
    fq = next(n for n in model.graph.node if n.op_type == "HadamardQuantize")
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == fq.output[0])
    other = numpy_helper.from_array(np.array(0.5, np.float32), "another_scale")
    model.graph.initializer.append(other)
    dq.input[1] = "another_scale"
    problems = check_model(model, fused.onnx_path)
    assert any("another scale" in p.what for p in problems), problems


def test_fuse_quantize_refuses_what_it_cannot_fuse(artifacts, tmp_path):
    arts, _ = artifacts
    with pytest.raises(MQDeployError, match="--fuse-quantize needs --scan plugin"):
        export_onnx(arts["mambaquant"], tmp_path / "a" / "model.onnx", scan="onnx", fuse_quantize=True)
    for name in ("rtn", "w4a16"):          # no online Hadamard; no INT8 activation after it
        with pytest.raises(MQDeployError, match="nothing to fuse"):
            export_onnx(arts[name], tmp_path / name / "model.onnx", fuse_quantize=True)
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir())
