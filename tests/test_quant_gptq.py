"""GPTQ weight rounding: round-to-nearest when the inputs are uncorrelated (H = I), a lower output
error than round-to-nearest when they are not, weights that survive the artifact (round-to-nearest
from their own absmax gives back the same codes), and a better 4-bit model on the trained demo."""

from __future__ import annotations

import pytest
import torch

from mq_deploy.quant.gptq import gptq_quantize
from mq_deploy.quant.quantizer import QuantSpec, quantize_tensor

SPECS = [QuantSpec(4, True, "group", group_size=64), QuantSpec(8, True, "channel", axis=0)]


def correlated_inputs(n=4096, k=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(k, dtype=torch.float64) + torch.randn(k, k, generator=g, dtype=torch.float64) / 16
    x = torch.randn(n, k, generator=g, dtype=torch.float64) @ mix
    x[:, :8] *= 10                                       # a few outlier channels, as activations have
    return x


@pytest.mark.parametrize("spec", SPECS, ids=["int4-group64", "int8-channel"])
def test_uncorrelated_inputs_give_round_to_nearest(spec):
    w = torch.randn(48, 256, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = quantize_tensor(w, spec).dequantize(torch.float64)
    assert torch.equal(gptq_quantize(w, torch.eye(256, dtype=torch.float64), spec), expected)


@pytest.mark.parametrize("spec", SPECS, ids=["int4-group64", "int8-channel"])
def test_lower_output_error_and_codes_that_survive_the_artifact(spec):
    w = torch.randn(48, 256, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = correlated_inputs()
    rounded = gptq_quantize(w, x.T @ x / len(x), spec)
    nearest = quantize_tensor(w, spec).dequantize(torch.float64)
    error = lambda q: float(((x @ (q - w).T) ** 2).sum())      # noqa: E731 - the layer's output error
    assert error(rounded) < 0.6 * error(nearest), (error(rounded), error(nearest))
    # an artifact stores float32 weights; every reader re-derives codes from their absmax
    stored = rounded.float()
    again = quantize_tensor(stored, spec).dequantize(torch.float64)
    assert torch.allclose(again, stored.double(), rtol=1e-6, atol=0)
    view = stored.double().reshape(48, -1, spec.group_size) if spec.granularity == "group" else stored.double()
    scale = quantize_tensor(stored, spec).scale
    assert torch.equal(torch.round(view / scale).abs().amax(dim=-1), torch.full(view.shape[:-1], spec.qmax,
                                                                               dtype=torch.float64))


def test_non_symmetric_specs_are_refused():
    with pytest.raises(ValueError, match="symmetric"):
        gptq_quantize(torch.zeros(4, 64), torch.eye(64), QuantSpec(4, False, "group", group_size=64))


def test_artifact_export_and_accuracy_on_the_demo_model(demo_model_dir, tmp_path):
    """The default 4-bit rounding on the trained demo model: the artifact reloads to the same model,
    its ONNX export computes it, and it beats round-to-nearest on held-out text."""
    pytest.importorskip("onnxruntime")
    from mq_deploy.data.calibration import calibration_batches
    from mq_deploy.eval import evaluate_model
    from mq_deploy.export import export_onnx
    from mq_deploy.export.aligned_codes import compare_onnx_with_torch
    from mq_deploy.models.loading import load_model
    from mq_deploy.quant.artifact import load_quantized, save_quantized
    from mq_deploy.quant.config import QuantConfig
    from mq_deploy.quant.quantize import quantize
    from mq_deploy.samples import HELDOUT_TEXT, sample_text
    loaded = load_model(demo_model_dir)
    calib, _ = calibration_batches(loaded.tokenizer, str(sample_text("wiki_calib.txt")), 16, 512)
    config = QuantConfig(w_bits=4)
    assert config.weight_rounding == "gptq" and config.a_bits == 16
    gptq = quantize(loaded.model, "mambaquant", calib, config, progress=False)
    nearest = quantize(loaded.model, "mambaquant", calib, QuantConfig(w_bits=4, weight_rounding="rtn"), progress=False)
    save_quantized(gptq, tmp_path / "q", source_dir=demo_model_dir)
    reloaded = load_quantized(tmp_path / "q").model
    ids = torch.tensor(list(sample_text(HELDOUT_TEXT).read_bytes()[:4 * 256])).view(4, 256)
    with torch.no_grad():
        assert torch.allclose(reloaded(ids), gptq.model(ids), rtol=0, atol=1e-5)
    result = export_onnx(tmp_path / "q", tmp_path / "onnx" / "model.onnx", precision="fp32", decode=False)
    assert compare_onnx_with_torch(result.onnx_path, reloaded, ids)["relative"] < 1e-4
    # validate's torch-fp reference is the FP checkpoint itself, not the artifact's weights unquantized
    # (GPTQ stored them rounded: that "FP" model would hide the rounding error)
    from mq_deploy.deploy.manifest import Manifest
    from mq_deploy.validate.validation import _parse_reference
    reference = _parse_reference("torch-fp", result.onnx_path, None, Manifest.load(result.onnx_path), None,
                                 "cpu", None)
    with torch.no_grad():
        fp_logits = loaded.model(ids)
        rounded_logits = load_quantized(tmp_path / "q", with_quantizers=False).model(ids)
    got = torch.as_tensor(reference.open_session(False).prefill(ids.numpy())["logits"])
    assert torch.allclose(got, fp_logits, rtol=0, atol=1e-4)
    assert (rounded_logits - fp_logits).abs().max() > 100 * 1e-4      # what the old reference was
    # with the source gone, the fallback (the artifact unquantized) is said to carry the rounding
    import shutil

    from mq_deploy.deploy.source import fp_fallback_note
    shutil.copytree(demo_model_dir, tmp_path / "fp")
    save_quantized(gptq, tmp_path / "q2", source_dir=tmp_path / "fp")
    assert fp_fallback_note(tmp_path / "q2") is None and fp_fallback_note(tmp_path / "q") is None
    shutil.rmtree(tmp_path / "fp")
    assert "GPTQ-rounded" in fp_fallback_note(tmp_path / "q2")
    text = str(sample_text(HELDOUT_TEXT))
    ppl = {name: evaluate_model(qm.model, loaded.tokenizer, text, max_tokens=32768, progress=False)["perplexity"]
           for name, qm in (("gptq", gptq), ("rtn", nearest))}
    assert ppl["gptq"] < ppl["rtn"], ppl


@pytest.mark.parametrize("spec", SPECS, ids=["int4-group64", "int8-channel"])
def test_all_zero_rows_and_groups_stay_zero(spec):
    w = torch.randn(8, 256, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    w[3] = 0.0                         # a pruned row
    w[5, :64] = 0.0                    # an all-zero group (a part of a row at 8 bits)
    x = correlated_inputs(n=1024)
    rounded = gptq_quantize(w, x.T @ x / len(x), spec)
    assert torch.equal(rounded[3], torch.zeros(256, dtype=torch.float64))
    assert torch.equal(gptq_quantize(w, torch.eye(256, dtype=torch.float64), spec),
                       quantize_tensor(w, spec).dequantize(torch.float64))


def test_an_old_artifact_without_the_setting_reads_as_round_to_nearest():
    from pathlib import Path
    from mq_deploy.quant.artifact import quant_config_of
    old = {"config": {"w_bits": 4, "a_bits": 16, "mode": "deploy"}}
    assert quant_config_of(old, Path("x")).weight_rounding == "rtn"
