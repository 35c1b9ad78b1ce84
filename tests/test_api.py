"""mq_deploy.api as a library user calls it: mistakes are one MQDeployError naming the fix, and the
inputs a user naturally has (numpy arrays) are taken."""

from __future__ import annotations

import pytest
import torch

from mq_deploy.api import classify, quantize_checkpoint
from mq_deploy.errors import MQDeployError


def test_a_misspelled_quantize_option_names_the_options(demo_model_dir, tmp_path):
    with pytest.raises(MQDeployError, match=r"unknown option\(s\) weight_roundin; .*weight_rounding"):
        quantize_checkpoint(demo_model_dir, tmp_path / "q", weight_roundin="gptq")
    assert not (tmp_path / "q").exists()


def test_classify_takes_numpy_images_and_refuses_other_shapes():
    from mq_deploy.data.image_sources import load_image_source
    from mq_deploy.models.vim_loading import load_vim
    from mq_deploy.samples import samples_dir
    model = load_vim(samples_dir() / "models" / "vim-digits-demo").model
    held = load_image_source("digits:heldout", model.config.img_size)
    images = held.images[:10]
    with torch.no_grad():
        expected = model(images)                          # the model itself, one batch
    torch.testing.assert_close(classify(model, images.numpy(), batch_size=3), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(MQDeployError, match=r"\[n, 3, H, W\]; got shape \(10, 32, 32\)"):
        classify(model, images[:, 0].numpy())


def test_the_readmes_python_block_runs(tmp_path, monkeypatch):
    """README's "From Python" block, executed as written (in a scratch directory): it is what a library
    user copies first."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MQ_PROGRESS", "0")
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["out"]["logits"].shape[:2] == (1, 1) and (tmp_path / "out" / "q-onnx" / "manifest.json").is_file()
