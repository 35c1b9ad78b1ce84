"""`mq-deploy inspect` on a Vision Mamba (the bundled digits demo): the channel ranges it reports are
the ones forward hooks written here see on the same images, both directions' points are plotted,
and MambaQuant's transforms flatten the demo's out_proj outlier."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mq_deploy.data.image_sources import load_image_source
from mq_deploy.models.vim_loading import load_vim
from mq_deploy.quant.artifact import save_quantized
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize
from mq_deploy.reports.inspection import inspect_model
from mq_deploy.samples import samples_dir

VIM_DEMO = samples_dir() / "models" / "vim-digits-demo"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inspect")
    model = load_vim(VIM_DEMO).model
    calib = load_image_source("digits", 32, 32).images
    art = save_quantized(quantize(model, "mambaquant", calib, QuantConfig(), progress=False), tmp / "q",
                         source_dir=VIM_DEMO)
    return inspect_model(VIM_DEMO, tmp / "plots", quantized_dir=art, images="digits:heldout", samples=16,
                         progress=False), tmp


def hooked_out_proj_ratio(images) -> float:
    """max over layers of (largest channel max|x|) / (median channel max|x|) at out_proj's input."""
    model = load_vim(VIM_DEMO).model
    seen = {}
    handles = [layer.mixer.out_proj.register_forward_pre_hook(
        lambda m, args, i=i: seen.setdefault(i, []).append(args[0].detach().double().reshape(-1, args[0].shape[-1])))
        for i, layer in enumerate(model.backbone.layers)]
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    ratios = []
    for rows in seen.values():
        absmax = torch.cat(rows).abs().amax(0)
        ratios.append((absmax.max() / absmax.median()).item())
    return max(ratios)


def test_its_ranges_are_what_hooks_see_and_the_rotation_flattens_them(report):
    result, tmp = report
    images = load_image_source("digits:heldout", 32, 16).images
    before = result["points"]["out_proj_input"]["outlier_ratio_before"]
    assert before == pytest.approx(hooked_out_proj_ratio(images), rel=1e-6)
    assert before > 10                                     # the demo's out_proj outlier
    assert result["points"]["out_proj_input"]["outlier_ratio_after"] < before / 5
    assert result["samples"] == 16 and "16 images of bundled digits (heldout split)" == result["data"]


def test_both_directions_are_plotted(report):
    result, tmp = report
    names = sorted(p.name for p in (tmp / "plots").iterdir())
    assert names == sorted(["channels_in_proj_input.png", "channels_out_proj_input.png", "channels_x_proj_input.png",
                            "channels_x_proj_input_b.png", "channels_dt_proj_input.png",
                            "channels_dt_proj_input_b.png", "layer_error.png"])
    assert len(result["layer_errors"]) == 4 and all(0 < e < 0.1 for e in result["layer_errors"])


def test_the_command_line_defaults_to_the_held_out_digits(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mq_deploy", "inspect", "--model", str(VIM_DEMO), "--plot",
                        str(tmp_path / "p"), "--samples", "8"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MQ_PROGRESS": "0"})
    assert r.returncode == 0, r.stderr
    assert "statistics on 8 images of bundled digits (heldout split)" in r.stdout
    assert "| out_proj_input |" in r.stdout
