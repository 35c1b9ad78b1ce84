"""The recipes on Vision Mamba: every transform exact in float64 (the transformed model's logits
against the untouched model's, which tests/test_models_vim.py holds to the official forward), each
SSM path transformed with its own statistics, and quantize() end to end on images."""

from __future__ import annotations

import copy

import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models.vim_loading import load_vim
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize
from mq_deploy.quant.recipes import RECIPES, get_recipe
from mq_deploy.quant.transforms import ChannelScale, HadamardRotation
from test_models_vim import official_state, save_official

SMALL = dict(d=64, depth=2, classes=10, patch=8, grid=4)        # 32 x 32 images, 17 tokens


@pytest.fixture(scope="module")
def small_vim(tmp_path_factory):
    """A random Vim in the official key layout, read by the official-checkpoint loader, in float64."""
    path = save_official(official_state(**SMALL, seed=3), tmp_path_factory.mktemp("vim") / "vim_small.pth")
    model = load_vim(path, img_size=32, stride=8, dtype=torch.float64).model
    with torch.no_grad():
        for layer in model.backbone.layers:       # an out_proj that matters as much as the residual
            layer.mixer.out_proj.weight.mul_(4)
    return model


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def transformed(recipe: str, model, seed: int = 0):
    work = copy.deepcopy(model)
    get_recipe(recipe).transform(work, images(6, 1), QuantConfig(calib_dtype="float64", seed=seed), progress=False)
    return work


def captured(model, x, names):
    out, handles = {}, []
    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(
            lambda m, a, o, name=name: out.__setitem__(name, o.detach().clone())))
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    return logits, out


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_keeps_the_vim_logits_in_float64(small_vim, recipe):
    x = images(3, 7)
    with torch.no_grad():
        reference = small_vim(x)
    assert rel(transformed(recipe, small_vim)(x).detach(), reference) <= 1e-10


def test_mambaquant_transforms_both_paths_with_their_own_statistics(small_vim):
    m = "backbone.layers.1.mixer."
    points = [m + p for p in ("in_proj_input", "dt_proj_input", "dt_proj_input_b", "out_proj_input")]
    x = images(3, 7)
    _, before = captured(small_vim, x, points)
    work = transformed("mambaquant", small_vim)
    _, after = captured(work, x, points)
    mixer = work.get_submodule(m[:-1])
    assert isinstance(mixer.out_proj_input, HadamardRotation)        # R2 once, after the two paths are averaged
    for point in points:                                           # every one of them moved
        assert rel(after[point], before[point]) > 0.1, point
    # R5 = K·H per path, each from its own path's covariance: on the calibration images every
    # channel of each path's dt_proj input has the same variance (the mean eigenvalue). One K for
    # both paths, or the official code's transposed fold, leaves them uneven.
    calib = images(6, 1)
    _, on_calib = captured(work, calib, points)
    for suffix in ("", "_b"):
        variances = torch.var(on_calib[m + "dt_proj_input" + suffix].flatten(0, 1), dim=0)
        assert ((variances.max() - variances.min()) / variances.mean()).item() < 1e-9, suffix


def test_r1_is_the_klt_of_the_last_layers_input(small_vim):
    """The paper's Vim R1 = K·H with K from the last layer's in_proj input (γ divided out): read
    R1 back off in_proj's x rows (W·diag(γ)·R1; nothing else touches them on a Vim) and check
    that Kᵀ·R1 is a Hadamard, every entry ±1/sqrt(d). K from the first layer fails this."""
    from mq_deploy.quant.transforms import klt_basis
    work = transformed("mambaquant", small_vim)
    _, before = captured(small_vim, images(6, 1), [f"backbone.layers.{i}.mixer.in_proj_input" for i in (0, 1)])
    d_inner = small_vim.backbone.layers[0].mixer.d_inner
    old = small_vim.backbone.layers[1].mixer.in_proj.weight[:d_inner] * small_vim.backbone.layers[1].norm.weight
    r1 = torch.linalg.pinv(old) @ work.backbone.layers[1].mixer.in_proj.weight[:d_inner].detach()

    def hadamard_after_klt_of(layer):
        u = (before[f"backbone.layers.{layer}.mixer.in_proj_input"] / small_vim.backbone.layers[layer].norm.weight)
        u = u.flatten(0, 1)
        k = klt_basis(torch.cov(u.T))
        return torch.allclose((k.T @ r1).abs(), torch.full_like(r1, 64 ** -0.5), atol=1e-6)

    assert hadamard_after_klt_of(1) and not hadamard_after_klt_of(0)


def test_smoothquant_scales_each_paths_x_proj_input_from_its_own_activations(small_vim):
    """Each path's online x_proj scale is SmoothQuant's max|x|^α / max|W|^(1-α) (α = 1: max|x|) from
    that path's own x_proj input: using the forward path's statistics for both fails this."""
    from mq_deploy.quant.recipes.smoothquant import ALPHA
    m = "backbone.layers.0.mixer."
    _, fp = captured(small_vim, images(6, 1), [m + "x_proj_input", m + "x_proj_input_b"])
    work = transformed("smoothquant", small_vim)
    mixer = work.backbone.layers[0].mixer
    assert isinstance(mixer.x_proj_input, ChannelScale) and isinstance(mixer.x_proj_input_b, ChannelScale)
    for suffix in ("", "_b"):
        act = fp[m + "x_proj_input" + suffix].abs().flatten(0, 1).amax(0)
        w = getattr(small_vim.backbone.layers[0].mixer, "x_proj" + suffix).weight.abs().amax(0)
        expected = act ** ALPHA / w ** (1 - ALPHA)
        assert torch.allclose(1 / getattr(mixer, "x_proj_input" + suffix).scale.double(), expected, rtol=1e-6), suffix


def test_awq_scales_both_paths_x_proj_and_keeps_the_function(small_vim):
    model = copy.deepcopy(small_vim).float()
    qm = quantize(model, "rtn", images(8, 1).float(), QuantConfig(w_bits=4, a_bits=16, weight_scales="awq",
                                                                  weight_rounding="rtn"), progress=False)
    m = "backbone.layers.0.mixer."
    assert {m + "x_proj", m + "x_proj_b", m + "in_proj"} <= set(qm.awq_alpha)
    assert qm.online_transforms.get(m + "x_proj_input_b") == "scale"
    # the folded FP model (before rounding) computes the same function
    from mq_deploy.quant.artifact import load_quantized, save_quantized
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        save_quantized(qm, f"{tmp}/q")
        folded = load_quantized(f"{tmp}/q", with_quantizers=False).model
        x = images(3, 9).float()
        with torch.no_grad():
            assert rel(folded(x).double(), model(x).double()) < 1e-5


@pytest.mark.parametrize("recipe", ["rtn", "quarot", "mambaquant"])
def test_quantize_runs_on_images_and_covers_the_backward_path(small_vim, recipe):
    model = small_vim.float()
    calib = images(8, 1).float()
    qm = quantize(copy.deepcopy(model), recipe, calib, QuantConfig(w_bits=8, a_bits=8), progress=False)
    m = "backbone.layers.0.mixer."
    assert {m + "x_proj_b", m + "dt_proj_b", m + "x_proj", m + "in_proj", m + "out_proj"} <= set(qm.weight_specs)
    assert {m + "x_proj_input_b", m + "dt_proj_input_b"} <= set(qm.activation_ranges)
    x = images(4, 9).float()
    with torch.no_grad():
        fp, fq = model(x), qm.model(x)
    assert 0 < rel(fq.double(), fp.double()) < 0.1        # quantized, and still the same classifier


def test_quantize_names_token_ids_given_to_a_vision_model(small_vim):
    with pytest.raises(MQDeployError, match=r"calibration data: images must be .*\[batch, 3, 32, 32\]"):
        quantize(small_vim, "rtn", torch.randint(0, 10, (4, 16)), progress=False)


@pytest.mark.parametrize("recipe", ["smoothquant", "mambaquant"])
def test_the_vim_artifact_round_trip_is_bit_exact(small_vim, recipe, tmp_path):
    from mq_deploy.quant.artifact import load_quantized, save_quantized
    model = copy.deepcopy(small_vim).float()
    qm = quantize(model, recipe, images(8, 1).float(), QuantConfig(w_bits=8, a_bits=8), progress=False)
    save_quantized(qm, tmp_path / "q")
    loaded = load_quantized(tmp_path / "q")
    assert type(loaded.model).__name__ == "VisionMamba"
    x = images(4, 9).float()
    with torch.no_grad():
        assert torch.equal(loaded.model(x), qm.model(x))
    fp = load_quantized(tmp_path / "q", with_quantizers=False).model     # the transformed FP model: the FP function
    with torch.no_grad():
        assert rel(fp(x).double(), model(x).double()) < 1e-5


def test_paper_mode_smooths_and_rotates_each_paths_contraction_s3_r4(small_vim, tmp_path):
    """Paper mode on a Vision Mamba: S3 (h smoothed per channel) + R4 at each path's h·C contraction,
    from that path's own ranges (the backward path is the reversed scan), exact in float64, and the
    artifact round trip."""
    from mq_deploy.quant.artifact import load_quantized, save_quantized
    from mq_deploy.quant.paper_scan import install_paper_scan
    small_vim = copy.deepcopy(small_vim).double()       # (an earlier test casts the shared fixture in place)
    x = images(3, 7)
    work = copy.deepcopy(small_vim)
    get_recipe("mambaquant").transform(work, images(6, 1), QuantConfig(mode="paper", calib_dtype="float64"),
                                       progress=False)
    install_paper_scan(work, quantize=False)
    with torch.no_grad():
        assert rel(work(x), small_vim(x)) <= 1e-10
    mixer = work.backbone.layers[1].mixer
    assert mixer.hc_channel_scale.shape == mixer.hc_channel_scale_b.shape == (mixer.d_inner,)
    assert not torch.allclose(mixer.hc_channel_scale, mixer.hc_channel_scale_b)        # each path its own
    assert getattr(mixer, "hc_scale", None) is None                                     # no S4 on a Vim
    # S3 is each channel's largest |h| on the calibration images: the forward path's, recomputed here
    # from the FP model's own reference scan
    from mq_deploy.ops import selective_scan_ref
    seen = []
    fp = copy.deepcopy(small_vim)
    fp.backbone.layers[1].mixer.scan_impl = lambda *a, reverse=False, **k: selective_scan_ref(
        *a, reverse=reverse, output_fn=(None if reverse else lambda h, c: seen.append(h.abs().amax(dim=(0, 2))) or
                                        (h * c[:, None]).sum(-1)), **k)
    with torch.no_grad():
        fp(images(6, 1))
    torch.testing.assert_close(mixer.hc_channel_scale, torch.stack(seen).amax(0).clamp_min(1e-2))

    model = copy.deepcopy(small_vim).float()
    qm = quantize(model, "mambaquant", images(8, 1).float(), QuantConfig(mode="paper"), progress=False)
    save_quantized(qm, tmp_path / "q")
    loaded = load_quantized(tmp_path / "q")
    with torch.no_grad():
        assert torch.equal(loaded.model(x.float()), qm.model(x.float()))
        assert 0 < rel(qm.model(x.float()).double(), small_vim(x)) < 0.1
