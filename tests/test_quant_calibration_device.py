"""Calibration on another device or dtype must not change the result beyond float rounding: the
statistics are float64 sums whatever the forward dtype, the folds are float64. On a CPU: float32
forwards vs the exact float64 ones; on a GPU (skipped without one): cuda vs cpu."""

from __future__ import annotations

import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize

SIZES = dict(vocab=256, hidden=48, layers=2, state=8, rank=12)


@pytest.fixture(scope="module")
def model_and_data():
    from conftest import random_mamba_lm, token_windows
    return (random_mamba_lm(**SIZES, seed=11), *token_windows(1, (8, 64), (4, 48)))


def _compare(a, b, ids):
    """Scales, transformed FP weights and fake-quant logits of two quantizations of one model."""
    scale = lambda qm: torch.tensor([r["scale"] for _, r in sorted(qm.activation_ranges.items())], dtype=torch.float64)  # noqa: E731
    scales = ((scale(a) - scale(b)).abs() / scale(b)).max().item()
    weights = max((a.transformed_weights[k].double() - b.transformed_weights[k].double()).norm().item()
                  / max(b.transformed_weights[k].double().norm().item(), 1e-30) for k in b.transformed_weights)
    with torch.no_grad():
        la, lb = a.model(ids), b.model(ids)
    return scales, weights, ((la - lb).norm() / lb.norm()).item(), (la.argmax(-1) == lb.argmax(-1)).double().mean().item()


@pytest.mark.parametrize("recipe", ["mambaquant", "smoothquant"])
def test_float32_forwards_match_float64(model_and_data, recipe):
    model, calib, ids = model_and_data
    exact = quantize(model, recipe, calib, QuantConfig(calib_dtype="float64"), progress=False)
    fast = quantize(model, recipe, calib, QuantConfig(calib_dtype="float32"), progress=False)
    scales, weights, logits, agreement = _compare(fast, exact, ids)
    assert scales < 1e-4 and weights < 1e-4, (scales, weights)
    assert logits < 1e-3 and agreement >= 0.99, (logits, agreement)
    assert scales > 0 or weights > 0      # the float32 forwards did run: not bit-identical


def test_device_and_dtype_are_checked(model_and_data):
    with pytest.raises(MQDeployError, match="unknown calibration dtype"):
        QuantConfig(calib_dtype="bfloat16")   # bf16 statistics move the KLT bases by ~40%: not offered
    with pytest.raises(MQDeployError, match="unknown device"):
        QuantConfig(device="tpu")
    if not torch.cuda.is_available():
        model, calib, _ = model_and_data
        with pytest.raises(MQDeployError, match="no CUDA GPU"):
            quantize(model, "rtn", calib, QuantConfig(device="cuda"), progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("recipe", ["mambaquant", "quamba"])
def test_cuda_calibration_matches_cpu(model_and_data, recipe):
    model, calib, ids = model_and_data
    cpu = quantize(model, recipe, calib, QuantConfig(), progress=False)
    gpu = quantize(model, recipe, calib, QuantConfig(device="cuda"), progress=False)
    assert next(gpu.model.parameters()).device.type == "cpu"
    scales, weights, logits, agreement = _compare(gpu, cpu, ids)
    assert scales < 1e-4 and weights < 1e-4, (scales, weights)
    assert logits < 1e-3 and agreement >= 0.99, (logits, agreement)


def test_one_device_rule_for_every_verb():
    """mq_deploy.devices.torch_device is what quantize, eval, validate and bench resolve --device with."""
    from mq_deploy.devices import torch_device
    assert torch_device("auto") == torch_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(MQDeployError, match="gpu0: not a device; use auto, cpu, cuda or cuda:N"):
        torch_device("gpu0")
    with pytest.raises(MQDeployError, match="runs on cpu or cuda"):
        torch_device("meta")
