"""samples/python/generate.py on ONNX Runtime: its prefill + decode loop must produce the tokens of
greedy decoding with the torch model's full forward (no state carry on the torch side)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.models import MambaConfig, MambaLM  # noqa: E402
from mq_deploy.models.init import init_mamba2_weights, init_mamba_weights  # noqa: E402
from mq_deploy.models.loading import save_model  # noqa: E402
from mq_deploy.models.mamba2 import Mamba2Config, Mamba2LM  # noqa: E402
from mq_deploy.models.mamba2_loading import save_mamba2  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "python" / "generate.py"


def greedy_full_forward(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


def mamba1(out):
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2, state_size=8,
                                                   time_step_rank=4, tokenizer="bytes")), seed=5).eval()
    save_model(model, out)
    return model


def mamba2(out):
    """Two groups of two heads, so the decode graph's [batch, heads, head_dim, N] state carries them."""
    config = Mamba2Config(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_heads=4, head_dim=16, n_groups=2,
                          state_size=8, chunk_size=8, tokenizer="bytes")
    model = init_mamba2_weights(Mamba2LM(config), seed=5).eval()
    save_mamba2(model, out)
    return model


@pytest.mark.parametrize("family", [mamba1, mamba2])
def test_sample_generates_the_torch_greedy_tokens(tmp_path, family):
    model = family(tmp_path / "fp")
    exported = export_onnx(tmp_path / "fp", tmp_path / "onnx" / "model.onnx", precision="fp32")
    prompt = "Mamba é"
    r = subprocess.run([sys.executable, str(SAMPLE), "--onnx", str(exported.onnx_path), "--prompt", prompt,
                        "--max-new-tokens", "12", "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["prompt_ids"] == list(prompt.encode("utf-8"))
    assert out["new_ids"] == greedy_full_forward(model, out["prompt_ids"], 12)
    r = subprocess.run([sys.executable, str(SAMPLE), "--onnx", str(exported.onnx_path), "--prompt", prompt,
                        "--max-new-tokens", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith(prompt) and "tokens/s" in r.stderr


def test_sample_takes_token_ids_for_a_model_without_a_tokenizer(tmp_path):
    """A checkpoint with no tokenizer (mamba_ssm ships none): --ids gives the prompt, the new ids are
    printed, and they are torch's greedy tokens."""
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, state_size=8,
                                                   time_step_rank=4)), seed=6).eval()
    save_model(model, tmp_path / "fp")
    exported = export_onnx(tmp_path / "fp", tmp_path / "onnx" / "model.onnx", precision="fp32")
    r = subprocess.run([sys.executable, str(SAMPLE), "--onnx", str(exported.onnx_path), "--prompt", "hi",
                        "--max-new-tokens", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "--ids 1,2,3" in r.stderr and r.stderr.count("\n") == 1
    r = subprocess.run([sys.executable, str(SAMPLE), "--onnx", str(exported.onnx_path), "--ids", "7, 299,0",
                        "--max-new-tokens", "9"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [int(t) for t in r.stdout.split()] == greedy_full_forward(model, [7, 299, 0], 9)
    for bad, message in (("7,300", "300 is not a token id of this model (0 .. 299)"), ("a,b", "comma-separated")):
        r = subprocess.run([sys.executable, str(SAMPLE), "--onnx", str(exported.onnx_path), "--ids", bad],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and message in r.stderr, r.stderr
    # a tokenizer that is not the model's (its ids past the vocabulary): one line before any graph runs
    from tokenizers import Tokenizer, models
    Tokenizer(models.WordLevel({"hi": 500, "[UNK]": 501}, unk_token="[UNK]")).save(str(tmp_path / "fp" /
                                                                                      "tokenizer.json"))
    r = subprocess.run([sys.executable, str(SAMPLE), "--onnx", str(exported.onnx_path), "--prompt", "hi"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "id 500, outside this model's vocabulary (0 .. 299)" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1



def test_sample_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(SAMPLE), "--onnx", str(tmp_path / "none.onnx")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'none.onnx'} does not exist"

def test_engine_path_errors_are_one_line(tmp_path):
    """--engine where the plugin library or TensorRT is missing: one line naming what to do, no traceback."""
    import importlib.util
    mamba1(tmp_path / "fp")
    exported = export_onnx(tmp_path / "fp", tmp_path / "onnx" / "model.onnx", precision="fp32")
    plan = exported.onnx_path.with_name("model.plan")
    plan.write_bytes(b"not a plan")
    plan.with_name("model.decode.plan").write_bytes(b"not a plan")
    missing = tmp_path / "nowhere" / "libmq_plugins.so"
    r = subprocess.run([sys.executable, str(SAMPLE), "--engine", str(plan), "--plugins", str(missing)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith(f"error: --plugins {missing}: no such file"), r.stderr
    # a sidecar that is not JSON, where the manifest has to be found through it: one line
    elsewhere = tmp_path / "elsewhere" / "model.plan"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"not a plan")
    Path(f"{elsewhere}.json").write_text("")
    r = subprocess.run([sys.executable, str(SAMPLE), "--engine", str(elsewhere), "--plugins", str(plan)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "is not the plan's sidecar JSON" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    if importlib.util.find_spec("tensorrt") is None:
        r = subprocess.run([sys.executable, str(SAMPLE), "--engine", str(plan), "--plugins", str(plan)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "pip install tensorrt" in r.stderr and "Traceback" not in r.stderr, r.stderr
