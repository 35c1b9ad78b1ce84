"""MambaQuant's static ranges replayed from its one statistics pass (quant/recipes/mambaquant.py,
_RangeReplay) against the reference: a second calibration pass over the transformed model
(quantize(..., range_pass="forward")), which runs the real transformed forward."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch

from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize
from mq_deploy.quant.spill import SpilledTensors, TensorSpill

SIZES = dict(vocab=256, hidden=64, layers=3, state=8, rank=12)


@pytest.fixture(scope="module")
def model_and_data():
    from conftest import random_mamba_lm, token_windows
    return (random_mamba_lm(**SIZES, seed=5), *token_windows(2, (12, 40), (3, 32)))


CONFIGS = {      # name: (config, quantized activation points a layer)
    "W8A8": (QuantConfig(), 4),
    "W8A8 conv": (QuantConfig(quantize_conv=True), 5),
    "W8A8 percentile": (QuantConfig(act_percentile=99.9), 4),
    "W4A8 rtn": (QuantConfig(w_bits=4, a_bits=8, weight_rounding="rtn"), 3),     # dt_proj stays FP at 4 bits
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_replayed_ranges_match_a_second_pass(model_and_data, name, tmp_path, monkeypatch):
    model, calib, ids = model_and_data
    config, per_layer = CONFIGS[name]
    reference = quantize(model, "mambaquant", calib, config, progress=False, range_pass="forward")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))       # where the spill files go
    replayed = quantize(model, "mambaquant", calib, config, progress=False)
    assert replayed.ranges_replayed and not reference.ranges_replayed

    points = sorted(reference.activation_ranges)
    assert sorted(replayed.activation_ranges) == points and len(points) == SIZES["layers"] * per_layer
    for point in points:
        ref, rep = reference.activation_ranges[point], replayed.activation_ranges[point]
        span = ref["observed_max"] - ref["observed_min"]
        # min/max agree to float rounding; a percentile may move by a histogram bin (2048 over the range)
        tol = 1e-5 * span if config.act_percentile == 100.0 else 2 * span / 2048
        assert abs(rep["observed_min"] - ref["observed_min"]) <= tol, (point, rep, ref)
        assert abs(rep["observed_max"] - ref["observed_max"]) <= tol, (point, rep, ref)
    # the transforms themselves are the same code in the same order: bit-identical weights
    assert all(torch.equal(replayed.transformed_weights[k], v) for k, v in reference.transformed_weights.items())
    with torch.no_grad():
        a, b = replayed.model(ids), reference.model(ids)
    # a scale one rounding off flips a few INT8 ties; a percentile a bin off moves every code a little
    assert ((a - b).norm() / b.norm()).item() < (1e-3 if config.act_percentile == 100.0 else 1e-2)


def replayed_against_second_pass(model, calib, inputs, config, tmp_path, monkeypatch, per_layer: int,
                                 range_tol: float, output_tol: float) -> list[str]:
    """quantize() with replayed ranges against the second pass over the transformed model: the same
    points, min and max within range_tol of each range's span, bit-identical weights, and outputs on
    `inputs` within output_tol (relative). Returns the points."""
    reference = quantize(model, "mambaquant", calib, config, progress=False, range_pass="forward")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    replayed = quantize(model, "mambaquant", calib, config, progress=False)
    assert replayed.ranges_replayed and not reference.ranges_replayed
    points = sorted(reference.activation_ranges)
    assert sorted(replayed.activation_ranges) == points and len(points) == len(model.backbone.layers) * per_layer
    for point in points:
        ref, rep = reference.activation_ranges[point], replayed.activation_ranges[point]
        tol = range_tol * (ref["observed_max"] - ref["observed_min"])
        assert abs(rep["observed_min"] - ref["observed_min"]) <= tol, (point, rep, ref)
        assert abs(rep["observed_max"] - ref["observed_max"]) <= tol, (point, rep, ref)
    assert all(torch.equal(replayed.transformed_weights[k], v) for k, v in reference.transformed_weights.items())
    with torch.no_grad():
        a, b = replayed.model(inputs), reference.model(inputs)
    assert ((a - b).norm() / b.norm()).item() < output_tol
    return points


@pytest.mark.parametrize("config, per_layer", [(QuantConfig(), 2), (QuantConfig(quantize_conv=True), 3)],
                         ids=["W8A8", "W8A8 conv"])
def test_a_mamba2_replays_its_ranges_too(config, per_layer, tmp_path, monkeypatch):
    """The bundled Mamba-2 demo: in_proj and out_proj inputs (and the conv's x/B/C input) from the one
    statistics pass, against the second pass over the transformed model."""
    from conftest import token_windows
    from mq_deploy.models.mamba2_loading import load_mamba2
    from mq_deploy.samples import demo_model_dir
    model = load_mamba2(demo_model_dir("mamba2")).model
    calib, ids = token_windows(3, (8, 48), (2, 40))
    replayed_against_second_pass(model, calib, ids, config, tmp_path, monkeypatch, per_layer, 1e-5, 1e-3)


@pytest.mark.parametrize("conv, per_layer", [(False, 6), (True, 8)], ids=["W8A8", "W8A8 conv"])
def test_a_vision_mamba_replays_both_paths(conv, per_layer, tmp_path, monkeypatch):
    """The bundled vision demo: every linear input of both SSM paths (x_proj_b, dt_proj_b with their
    own S5 + R5) and the conv inputs (no S7 on Vim) from the one statistics pass, against the second
    pass. In float64, where no INT8 tie can flip: the same ranges and logits to 1e-12 (in float32 the
    ranges agree to 3e-7 of their span, and a flipped tie moves one image's logits by up to 1 %)."""
    from mq_deploy.data.image_sources import load_image_source
    from mq_deploy.models.vim_loading import load_vim
    from mq_deploy.vision_demo import vision_demo_model_dir
    model = load_vim(vision_demo_model_dir(), dtype=torch.float64).model
    images = load_image_source("digits", model.config.img_size, 40, option="--calib").images.double()
    config = QuantConfig(quantize_conv=conv, calib_dtype="float64")
    points = replayed_against_second_pass(model, images[:32], images[32:], config, tmp_path, monkeypatch, per_layer,
                                          1e-12, 1e-12)
    assert any(p.endswith("dt_proj_input_b") for p in points)


def test_ranges_take_a_second_pass_where_a_replay_cannot_match(model_and_data):
    model, calib, _ = model_and_data
    cases = [("mambaquant", QuantConfig(w_bits=4, a_bits=8, weight_rounding="gptq"), model),  # Hessians: 2nd pass
             ("mambaquant", QuantConfig(quantize_lm_head=True), model),    # the head's input
             ("mambaquant", QuantConfig(), copy.deepcopy(model).to(torch.bfloat16)),  # a 16-bit model's own forward
             ("smoothquant", QuantConfig(), model)]                        # a recipe without a replay
    for recipe, config, m in cases:
        qm = quantize(m, recipe, calib, config, progress=False)
        assert qm.activation_ranges and not qm.ranges_replayed, (recipe, config)


def _open_files_under(folder) -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:         # the descriptor listdir itself used, closed by now
            pass
    return [link for link in links if link.startswith(str(folder))]


def test_temp_files_live_with_the_quantized_model_only(model_and_data, tmp_path, monkeypatch):
    """The replay's spill is gone when quantize returns; the artifact weights' spill when the
    QuantizedModel goes. Nothing ever has a name in the folder."""
    import gc
    model, calib, _ = model_and_data
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    qm = quantize(model, "mambaquant", calib, QuantConfig(), progress=False)
    assert qm.ranges_replayed and len(_open_files_under(tmp_path)) == 1      # the transformed weights
    assert os.listdir(tmp_path) == []
    del qm
    gc.collect()
    assert _open_files_under(tmp_path) == []


def test_the_float32_work_copy_matches_float64_folds(model_and_data):
    """quantize()'s work copy stores float32 between float64 folds: its transformed weights agree with
    those of a float64 model's (float64 storage throughout) to float32 rounding."""
    model, calib, _ = model_and_data
    exact = quantize(copy.deepcopy(model).double(), "mambaquant", calib, QuantConfig(), progress=False)
    stored = quantize(model, "mambaquant", calib, QuantConfig(), progress=False)
    assert next(iter(stored.transformed_weights.values())).dtype == torch.float32
    for key, value in exact.transformed_weights.items():
        error = (stored.transformed_weights[key].double() - value).norm() / max(value.norm(), 1e-30)
        assert error < 1e-6, (key, error.item())


def test_spill_gives_back_what_it_took():
    tensors = {"a": torch.randn(37, 5), "b": torch.arange(11, dtype=torch.float64), "c": torch.randn(3, 4)[:, 1:],
               "d": torch.randn(4, dtype=torch.bfloat16), "e": torch.zeros(0, 3)}
    with TensorSpill() as spill:
        for key, tensor in tensors.items():
            spill.put(key, tensor)
        for key in ("c", "a", "b", "a", "d", "e"):        # any order, any number of times
            assert torch.equal(spill.get(key), tensors[key]) and spill.describe(key) == (tensors[key].dtype, tensors[key].shape)
        spill.put("a", tensors["b"])                      # a key put again reads back the newer tensor
        assert torch.equal(spill.get("a"), tensors["b"]) and torch.equal(spill.get("c"), tensors["c"])


def test_spilled_tensors_behave_as_a_dict():
    tensors = {"x": torch.randn(5, 3), "y": torch.randn(2)}
    spilled = SpilledTensors(tensors)
    assert list(spilled) == ["x", "y"] and len(spilled) == 2
    assert all(torch.equal(spilled[k], v) for k, v in tensors.items())
    spilled["x"] = torch.ones(2, 2)
    view = spilled.subset(["x"])
    assert list(view) == ["x"] and torch.equal(view["x"], torch.ones(2, 2))
    with pytest.raises(KeyError):
        view["y"]
    with pytest.raises(KeyError):
        spilled.subset(["z"])


def test_a_full_temp_disk_is_one_clear_error(tmp_path):
    """A write that fails (here: over a file-size limit, as a full disk fails it) names the folder
    and the fix instead of a traceback from inside the spill."""
    import subprocess
    import sys
    script = ("import resource, signal, torch\n"
              "from mq_deploy.errors import MQDeployError\n"
              "from mq_deploy.quant.spill import TensorSpill\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "try:\n"
              "    TensorSpill().put('x', torch.zeros(100_000))\n"
              "except MQDeployError as e:\n"
              "    print('ERROR', e)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ERROR cannot write to a temporary file in " + str(tmp_path)), proc.stdout
    assert "TMPDIR" in proc.stdout
