"""The bundled vision comparison model (samples/models/vim-mnist-comparison): a Vision Mamba at Vim-T's
width trained in-repo on the 4,000 training images of the bundled MNIST sample. What it must be: that
size, trained on that set, a good classifier of the 1,000 held-out images (scored here against
MNIST's own labels), and a carrier of larger out_proj outliers than the digits demo, which
MambaQuant's transforms flatten."""

from __future__ import annotations

import importlib.util
import json
import shlex

import pytest
import torch

from mq_deploy.data.image_sources import load_image_source
from mq_deploy.models.vim_loading import load_vim
from mq_deploy.quant.artifact import save_quantized
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize
from mq_deploy.reports.inspection import inspect_model
from mq_deploy.samples import comparison_model_dir, samples_dir

DEMO = samples_dir() / "models" / "vim-digits-demo"


@pytest.fixture(scope="module")
def model():
    return load_vim(comparison_model_dir("vim")).model


def test_it_is_vim_t_wide_and_trained_on_the_mnist_training_split():
    path = comparison_model_dir("vim")
    config = json.loads((path / "config.json").read_text())
    assert config["hidden_size"] == 192 and config["num_hidden_layers"] >= 6 and config["img_size"] == 32
    record = json.loads((path / "training.json").read_text())
    assert record["settings"]["data"] == "mnist"
    # the recorded command, parsed as train.py parses it, gives the recorded settings
    spec = importlib.util.spec_from_file_location("vision_train", samples_dir().parent / "scripts" / "vision_demo" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    parsed = vars(train.parser().parse_args(shlex.split(record["command"])[2:]))
    assert {k: str(v) if k == "out" else v for k, v in parsed.items()} == record["settings"]
    assert record["train_images"] == 4000 and record["heldout_images"] == 1000


def test_it_classifies_held_out_mnist(model):
    held = load_image_source("mnist:heldout", 32, 100)
    with torch.no_grad():
        predicted = model(held.images).argmax(-1)
    assert (predicted == held.labels).double().mean().item() >= 0.95


def test_its_outliers_exceed_the_demos_and_mambaquant_flattens_them(model, tmp_path):
    """Each model on its own held-out images: the comparison model's worst out_proj-input channel
    ratio is more than twice the demo's, and MambaQuant's transforms bring it down tenfold or more."""
    calib = load_image_source("mnist", 32, 32).images
    art = save_quantized(quantize(model, "mambaquant", calib, QuantConfig(), progress=False), tmp_path / "q",
                         source_dir=comparison_model_dir("vim"))
    ours = inspect_model(comparison_model_dir("vim"), tmp_path / "p", quantized_dir=art, images="mnist:heldout",
                         samples=16, progress=False)["points"]["out_proj_input"]
    demo = inspect_model(DEMO, tmp_path / "d", images="digits:heldout", samples=16,
                         progress=False)["points"]["out_proj_input"]
    assert ours["outlier_ratio_before"] > 2 * demo["outlier_ratio_before"]
    assert ours["outlier_ratio_after"] < ours["outlier_ratio_before"] / 10


def test_without_images_a_bundled_model_is_read_on_the_set_it_was_trained_on(model, tmp_path, capsys):
    """validate and inspect default to the held-out split of the set in the model's training.json
    (through a quantized artifact to its source checkpoint); the MNIST model used to be read on
    the digits, where it scores 68 %."""
    from mq_deploy.data.image_sources import images_or_default
    from mq_deploy.deploy.source import bundled_training_set
    from mq_deploy.samples import demo_model_dir
    path = comparison_model_dir("vim")
    assert bundled_training_set(path) == "mnist" and bundled_training_set(DEMO) == "digits"
    art = save_quantized(quantize(model, "rtn", load_image_source("mnist", 32, 4).images, QuantConfig(),
                                  progress=False), tmp_path / "q", source_dir=path)
    assert bundled_training_set(art) == "mnist"
    assert bundled_training_set(demo_model_dir()) is None          # a language model's training.json
    assert bundled_training_set(tmp_path) is None                  # nothing says
    assert images_or_default(None, 32, "x", "mnist") == "mnist:heldout"
    assert "mnist:heldout, the held-out split of the bundled set this model was trained on" in capsys.readouterr().err
    assert images_or_default(None, 32, "x", None) == "digits:heldout"
    assert inspect_model(path, tmp_path / "p", samples=4, progress=False)["data"] == "4 images of bundled mnist (heldout split)"
