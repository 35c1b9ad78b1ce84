"""scripts/demo_model: the compiled training scan against the float64 reference, and a resumed
training run against an uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mq_deploy.ops.reference_scan import selective_scan_ref

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "demo_model"
sys.path.insert(0, str(SCRIPTS))
import fast_scan  # noqa: E402

needs_compiler = pytest.mark.skipif(fast_scan.compiler() is None, reason="no C compiler")


def scan_inputs(batch=2, length=37, dim=100, dstate=16):
    """dim=100 leaves a partial 64-channel tile; length spans many steps of the adjoint."""
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return dict(x=r(batch, length, dim), delta=r(batch, length, dim) * 0.5,
                A=-torch.rand(dim, dstate, generator=g, dtype=torch.float64) * 2 - 0.1,
                B=r(batch, length, dstate), C=r(batch, length, dstate), D=r(dim), delta_bias=r(dim) * 0.1,
                z=r(batch, length, dim), initial_state=r(batch, dim, dstate))


def rel(a, ref):
    return ((a.double() - ref).norm() / ref.norm()).item()


@needs_compiler
@pytest.mark.parametrize("reverse", [False, True])
def test_compiled_scan_values_and_gradients_match_the_float64_reference(reverse):
    base = scan_inputs()
    ref = {k: v.clone().requires_grad_() for k, v in base.items()}
    ours = {k: v.float().clone().requires_grad_() for k, v in base.items()}
    y_ref, h_ref = selective_scan_ref(**ref, reverse=reverse, return_final_state=True)
    y, h = fast_scan.compiled_selective_scan(**ours, reverse=reverse, return_final_state=True)
    assert rel(y, y_ref) < 1e-5 and rel(h, h_ref) < 1e-5
    wy, wh = torch.randn_like(y_ref), torch.randn_like(h_ref)
    ((y_ref * wy).sum() + (h_ref * wh).sum()).backward()
    ((y * wy.float()).sum() + (h * wh.float()).sum()).backward()
    for name in base:
        assert rel(ours[name].grad, ref[name].grad) < 1e-5, name


@needs_compiler
def test_compiled_scan_without_gradient_and_its_refusals():
    base = {k: v.float() for k, v in scan_inputs(length=5).items()}
    y = fast_scan.compiled_selective_scan(**base)
    assert rel(y, selective_scan_ref(**{k: v.double() for k, v in base.items()})) < 1e-5
    with pytest.raises(ValueError, match="float32 on the CPU"):
        fast_scan.compiled_selective_scan(**{k: v.double() for k, v in base.items()})


def train(tmp_path, out, *extra):
    text = tmp_path / "train.txt"
    if not text.exists():
        text.write_text("The quick brown fox jumps over the lazy dog. " * 400, encoding="utf-8")
    cmd = [sys.executable, str(SCRIPTS / "train.py"), "--train", str(text), "--out", str(tmp_path / out),
           "--d-model", "32", "--layers", "2", "--steps", "6", "--batch", "2", "--seq-len", "32", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", **_env()})


def _env():
    import os
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SCRIPTS.parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@needs_compiler
def test_a_stopped_and_resumed_run_ends_with_the_same_weights(tmp_path):
    whole = train(tmp_path, "whole", "--fast-scan")
    assert whole.returncode == 0, whole.stderr
    checkpoint = ["--fast-scan", "--checkpoint", str(tmp_path / "ck"), "--checkpoint-every", "2"]
    first = train(tmp_path, "parts", *checkpoint, "--stop-after-minutes", "0")
    assert first.returncode == 3 and "rerun the same command" in first.stdout, first.stderr
    assert not (tmp_path / "parts").exists()
    second = train(tmp_path, "parts", *checkpoint)
    assert second.returncode == 0 and "resuming" in second.stdout, second.stderr
    assert (tmp_path / "whole" / "model.safetensors").read_bytes() == \
        (tmp_path / "parts" / "model.safetensors").read_bytes()
    record = json.loads((tmp_path / "parts" / "training.json").read_text())
    assert [s["steps"] for s in record["segments"]] == [1, 5]
    changed = train(tmp_path, "other", "--checkpoint", str(tmp_path / "ck"), "--lr", "1e-3")
    assert changed.returncode != 0 and "other settings" in changed.stderr and "lr" in changed.stderr


def test_float16_weights_load_as_float32(tmp_path):
    done = train(tmp_path, "half", "--save-dtype", "float16", "--steps", "2")
    assert done.returncode == 0, done.stderr
    from safetensors import safe_open

    from mq_deploy.models.loading import load_model
    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    loaded = load_model(tmp_path / "half").model
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
