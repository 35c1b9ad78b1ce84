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


def test_session_inputs_a_library_user_passes(tmp_path):
    """A Session takes token ids as lists or int32 (the same logits as int64), and refuses a 1-D
    sequence, float ids, a multi-token decode step and a decode without the state in one line each,
    before the backend sees them."""
    import numpy as np
    pytest.importorskip("onnxruntime")
    from mq_deploy.deploy.onnxruntime_session import OnnxruntimeSession
    from mq_deploy.export import export_onnx
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    save_model(init_mamba_weights(MambaLM(MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                      state_size=8, time_step_rank=4)), seed=1), tmp_path / "m")
    session = OnnxruntimeSession(export_onnx(tmp_path / "m", tmp_path / "e" / "model.onnx", precision="fp32").onnx_path)
    ids = np.array([[3, 9, 27, 17]], dtype=np.int64)
    expected = session.prefill(ids)
    for same in (ids.tolist(), ids.astype(np.int32), torch.tensor(ids, dtype=torch.int32)):
        np.testing.assert_array_equal(session.prefill(same)["logits"], expected["logits"])
    step = session.decode([[5]], expected)
    assert step["logits"].shape[:2] == (1, 1)
    for call, message in ((lambda: session.prefill([3, 9, 27]), r"\[batch, seqlen\]; got shape \[3\]"),
                          (lambda: session.prefill(ids.astype(np.float32)), "integer token ids; got float32"),
                          (lambda: session.decode([[5, 6]], expected), r"one token per sequence, \[batch, 1\]"),
                          (lambda: session.decode([[5]], {}), "decode needs the state")):
        with pytest.raises(MQDeployError, match=message):
            call()
