"""Quantizer math against ONNX Runtime's QuantizeLinear/DequantizeLinear (the executor the exported
graph will run on), and observers against direct float64 computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.quant.observers import (OBSERVERS, ChannelAbsMaxObserver, CovarianceObserver, HistogramObserver,
                                        MinMaxObserver)
from mq_deploy.quant.quantizer import QuantSpec, fake_quantize, quantize, quantize_tensor, scale_and_zero_point

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def ort_qdq(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int | None, signed: bool):
    """QuantizeLinear -> (codes, DequantizeLinear(codes)) run by ONNX Runtime."""
    from onnx import TensorProto, helper, numpy_helper
    qtype = TensorProto.INT8 if signed else TensorProto.UINT8
    attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)]
    inits = [numpy_helper.from_array(scale.astype(np.float32), "s"),
             numpy_helper.from_array(zero_point.astype(np.int8 if signed else np.uint8), "z")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("q", qtype, list(x.shape)),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


@pytest.mark.parametrize("symmetric", [True, False])
def test_per_tensor_matches_onnx_runtime(symmetric):
    spec = QuantSpec(8, symmetric, "tensor")
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(0)) * 3
    scale, zp = scale_and_zero_point(x.min(), x.max(), spec)
    scale = torch.tensor(np.float32(scale.item()), dtype=torch.float64)   # what the graph stores
    q_ort, y_ort = ort_qdq(x.numpy(), scale.numpy().astype(np.float32), zp.numpy(), None, symmetric)
    q = quantize(x.double(), scale, zp, spec)
    np.testing.assert_array_equal(q.numpy(), q_ort.astype(np.float64))
    np.testing.assert_allclose(fake_quantize(x, scale, zp, spec).numpy(), y_ort, rtol=1e-6, atol=1e-7)


def test_ties_round_half_to_even_like_onnx_runtime():
    spec = QuantSpec(8, True)
    scale, zp = torch.tensor(0.125, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)  # exact in fp32
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5]) * 0.125
    q_ort, _ = ort_qdq(x.numpy(), np.array(0.125), np.array(0), None, True)
    q = quantize(x.double(), scale, zp, spec)
    assert q.tolist() == [0, 2, 2, 0, -2, -2, 4] == q_ort.tolist()


def test_per_channel_weight_matches_onnx_runtime():
    w = torch.randn(16, 40, generator=torch.Generator().manual_seed(1))
    qt = quantize_tensor(w, QuantSpec(8, True, "channel", axis=0))
    scale = qt.scale.flatten().float().numpy()
    q_ort, y_ort = ort_qdq(w.numpy(), scale, np.zeros(16), axis=0, signed=True)
    np.testing.assert_array_equal(qt.codes.numpy(), q_ort)
    np.testing.assert_allclose(qt.dequantize().numpy(), y_ort, rtol=1e-6, atol=1e-7)
    assert qt.codes.abs().amax(dim=1).eq(127).all()   # each row's absmax maps to the top code


def test_per_group_and_asymmetric_ranges():
    w = torch.randn(6, 32, generator=torch.Generator().manual_seed(2))
    qt = quantize_tensor(w, QuantSpec(4, True, "group", group_size=8))
    assert qt.codes.shape == (6, 4, 8) and qt.codes.min() >= -8 and qt.codes.max() <= 7
    err = (qt.dequantize() - w).abs().view(6, 4, 8)
    assert (err <= qt.scale / 2 + 1e-12).all()        # round to nearest within each group's step
    x = torch.rand(100) * 5 + 1                        # all positive: asymmetric must not waste codes
    spec = QuantSpec(8, False)
    scale, zp = scale_and_zero_point(x.min(), x.max(), spec)
    q = quantize(x.double(), scale, zp, spec)
    assert q.min() == 0 and q.max() == 255
    with pytest.raises(ValueError, match="unsupported bit width"):
        QuantSpec(bits=5)


def test_observers_against_direct_computation():
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(40, 100, 7, generator=g, dtype=torch.float64) * (i + 1) for i in range(3)]
    rows = torch.cat([b.reshape(-1, 7) for b in batches])
    mm, ca, cov, hist = MinMaxObserver(), ChannelAbsMaxObserver(), CovarianceObserver(), HistogramObserver()
    for b in batches:
        for o in (mm, ca, cov, hist):
            o.update(b)
    assert mm.range() == (rows.min(), rows.max())
    torch.testing.assert_close(ca.value(), rows.abs().amax(0))
    torch.testing.assert_close(cov.covariance(), torch.cov(rows.T), rtol=1e-10, atol=1e-12)
    assert hist.percentile_range(100.0) == (rows.min(), rows.max())
    lo, hi = hist.percentile_range(99.0)
    flat = rows.flatten()
    exact_lo, exact_hi = torch.quantile(flat, 0.01), torch.quantile(flat, 0.99)
    width = 2 * hist.limit / hist.bins
    assert abs(lo - exact_lo) <= 2 * width and abs(hi - exact_hi) <= 2 * width


def test_histogram_is_not_limited_in_size():
    """torch.quantile refuses > 16M elements; the histogram does not care."""
    hist = HistogramObserver()
    g = torch.Generator().manual_seed(4)
    for _ in range(3):
        hist.update(torch.randn(6_000_000, generator=g))
    lo, hi = hist.percentile_range(99.99)
    assert 3.5 < hi < 4.2 and -4.2 < lo < -3.5           # N(0,1) 0.01% tails: +-3.72


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("observer", sorted(OBSERVERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nan_in_activations_is_reported_with_its_place(observer, bad, dtype):
    """Every observer, whatever the activation's dtype, and even after good batches: one NaN or inf
    among many values is an error naming the place and the count."""
    obs = OBSERVERS[observer]("backbone.layers.3.mixer.x_proj_input")
    obs.update(torch.randn(64, 16, dtype=dtype))
    x = torch.randn(2, 32, 16, dtype=dtype)
    x[1, 7, 5] = bad
    with pytest.raises(MQDeployError, match=r"^1 NaN/inf .* backbone\.layers\.3\.mixer\.x_proj_input"):
        obs.update(x)


@pytest.mark.parametrize("observer", sorted(OBSERVERS))
def test_a_float32_activation_gives_the_statistics_of_its_float64_values(observer):
    """Observers read an activation in its own dtype: the statistics of a float32 tensor must be
    those of the same values in float64 (min, max, |max| and histogram counts exactly; the
    covariance from float64 sums)."""
    g = torch.Generator().manual_seed(8)
    batches = [torch.randn(300, 24, generator=g) * torch.linspace(0.1, 5, 24) for _ in range(3)]
    a, b = OBSERVERS[observer](), OBSERVERS[observer]()
    for x in batches:
        a.update(x)
        b.update(x.double())
    state = lambda o: {k: v for k, v in vars(o).items() if isinstance(v, torch.Tensor)}  # noqa: E731
    assert state(a).keys() == state(b).keys() and state(a)
    for key, value in state(a).items():
        assert value.dtype == torch.float64, key
        torch.testing.assert_close(value, state(b)[key], rtol=0, atol=0)
