"""`mq-deploy bench` without TensorRT: ONNX Runtime on the exported graphs vs torch on the CPU.
The backends' prefill/decode carry must compute what the torch model computes; the report must be
consistent with its own timings; files are written; bad input is one error line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from mq_deploy.deploy.onnxruntime_session import OnnxruntimeSession  # noqa: E402
from mq_deploy.deploy.torch_session import TorchSession  # noqa: E402
from mq_deploy.bench.benchmark import run_bench  # noqa: E402
from mq_deploy.bench.timing import latency_stats  # noqa: E402
from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.models import MambaConfig, MambaLM  # noqa: E402
from mq_deploy.models.init import init_mamba_weights  # noqa: E402
from mq_deploy.models.loading import save_model  # noqa: E402


def run(*args):
    return subprocess.run([sys.executable, "-m", "mq_deploy", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "MQ_PROGRESS": "0"})


@pytest.fixture(scope="module")
def fp_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                   state_size=8, time_step_rank=4)), seed=11)
    save_model(model, root / "fp")
    return model, export_onnx(root / "fp", root / "onnx" / "model.onnx", precision="fp32")


def test_session_prefill_then_decode_is_the_full_forward(fp_export):
    model, exported = fp_export
    ids = np.random.default_rng(0).integers(0, 64, (2, 12), dtype=np.int64)
    for session in (OnnxruntimeSession(exported.onnx_path, "ort"), TorchSession(model, "fp32", "cpu")):
        out = session.prefill(ids[:, :8])
        logits = [session.numpy(out)["logits"]]
        for t in range(8, 12):
            out = session.decode(ids[:, t:t + 1], out)
            logits.append(session.numpy(out)["logits"])
        with torch.no_grad():
            full = model(torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(np.concatenate(logits, axis=1), full, rtol=1e-4, atol=1e-4)


def test_latency_statistics_by_hand():
    """Ten runs of 1..10 ms: the median is 5.5 ms, p90 9.1 ms and p99 9.91 ms (linear interpolation
    between order statistics: p90 sits 0.1 of the way from the 9th to the 10th value), tokens/s is
    tokens per call over the median, never over the mean (5.5 ms here too, so a skewed set below)."""
    stats = latency_stats([k / 1000 for k in range(1, 11)], tokens_per_call=64)
    assert stats["median_ms"] == pytest.approx(5.5) and stats["p90_ms"] == pytest.approx(9.1)
    assert stats["p99_ms"] == pytest.approx(9.91) and stats["iterations"] == 10
    assert stats["tokens_per_s"] == pytest.approx(64 / 0.0055)
    skewed = latency_stats([0.001, 0.001, 0.001, 0.001, 0.100], tokens_per_call=1)
    assert skewed["median_ms"] == pytest.approx(1.0) and skewed["tokens_per_s"] == pytest.approx(1000.0)
    assert skewed["p90_ms"] == pytest.approx(60.4)          # 0.6 of the way from 1 ms to 100 ms


class SleepingBackend:
    """A backend whose prefill takes `length` x 1 ms and a decode step 3 ms; it records its calls and
    checks that each decode step receives the outputs of the call before it (the state carry)."""

    name = "sleeper"

    def __init__(self):
        self.prefills, self.decodes, self.last = [], 0, None

    def synchronize(self):
        pass

    def prefill(self, ids):
        import time
        time.sleep(ids.shape[1] * 1e-3)
        self.prefills.append(ids.shape)
        self.last = {"step": 0}
        return self.last

    def decode(self, token, outputs):
        import time
        assert outputs is self.last and token.shape == (2, 1)
        time.sleep(3e-3)
        self.decodes += 1
        self.last = {"step": outputs["step"] + 1}
        return self.last


def test_bench_times_each_call_of_the_backend():
    from mq_deploy.bench.benchmark import DECODE_PROMPT, bench_backend
    backend = SleepingBackend()
    rows = bench_backend(backend, vocab=64, lengths=[4, 16], batch=2, iterations=3, warmup=1, decode_steps=5)
    assert [(r["phase"], r["length"], r["batch"], r["iterations"]) for r in rows] == [
        ("prefill", 4, 2, 3), ("prefill", 16, 2, 3), ("decode", 1, 2, 5)]
    # (1 warm-up + 3 timed) per length, then the decode prompt; 1 warm-up + 5 timed decode steps
    assert backend.prefills == [(2, 4)] * 4 + [(2, 16)] * 4 + [(2, DECODE_PROMPT)] and backend.decodes == 6
    for row, floor_ms in zip(rows, (4, 16, 3)):
        assert floor_ms <= row["median_ms"] < floor_ms + 50, row      # the call is inside the timed span
        assert row["tokens_per_s"] == pytest.approx(row["batch"] * row["length"] / (row["median_ms"] / 1e3))


def test_bench_report_structure(fp_export):
    _, exported = fp_export
    report = run_bench(exported.onnx_path, lengths=[4, 32], batch=2, iterations=3, warmup=1, decode_steps=5,
                       device="cpu", progress=False)
    backends = {r["backend"] for r in report["rows"]}
    assert backends == {"ONNX Runtime FP FP32", "PyTorch FP32 (cpu)"}
    for backend in backends:
        rows = [r for r in report["rows"] if r["backend"] == backend]
        assert [(r["phase"], r["length"], r["iterations"]) for r in rows] == [
            ("prefill", 4, 3), ("prefill", 32, 3), ("decode", 1, 5)]


def test_cli_writes_table_json_and_plot(fp_export, tmp_path):
    _, exported = fp_export
    r = run("bench", "--onnx", exported.onnx_path, "--lengths", "8,16", "--iterations", "2", "--decode-steps", "3",
            "--device", "cpu", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    assert "| ONNX Runtime FP FP32 | decode | 1 × 1 |" in r.stdout
    report = json.loads((tmp_path / "b.json").read_text())
    assert len(report["rows"]) == 6 and "| backend | phase |" in (tmp_path / "b.md").read_text()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, message", [
    (["--lengths", "8,x"], "comma-separated integers"),
    (["--iterations", "0"], "--iterations >= 1"),
    (["--fp-onnx", "/no/such/model.onnx"], "does not exist"),
    (["--engine", "/no/such/model.plan"], "does not exist; build it with mq-deploy build"),
    pytest.param(["--engine", "{tmp}/model.plan"], "pip install tensorrt", marks=pytest.mark.skipif(
        __import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")),
])
def test_bad_input_is_one_error_line(fp_export, tmp_path, extra, message):
    _, exported = fp_export
    (tmp_path / "model.plan").write_bytes(b"not a plan")
    r = run("bench", "--onnx", exported.onnx_path, "--out", tmp_path / "b",
            *[e.replace("{tmp}", str(tmp_path)) for e in extra])
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "b.json").exists()


def test_a_moved_model_is_found_again_with_model(fp_export, tmp_path):
    """The model the export came from has moved: bench says so and names --model, and --model with the
    moved directory (the same files, checked by sha256) puts the torch row back."""
    import shutil
    _, exported = fp_export
    shutil.copytree(exported.onnx_path.parent, tmp_path / "onnx")
    source = exported.onnx_path.parent.parent / "fp"
    moved = tmp_path / "fp-moved"
    shutil.copytree(source, moved)
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    manifest["source"]["path"] = str(tmp_path / "fp-gone")
    (tmp_path / "onnx" / "manifest.json").write_text(json.dumps(manifest))
    args = ("bench", "--onnx", tmp_path / "onnx" / "model.onnx", "--lengths", "4", "--iterations", "1",
            "--decode-steps", "1", "--device", "cpu")
    r = run(*args, "--out", tmp_path / "b1")
    assert r.returncode == 2 and "pass --model DIR" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run(*args, "--model", moved, "--out", tmp_path / "b2")
    assert r.returncode == 0, r.stderr
    assert "PyTorch FP32 (cpu)" in {row["backend"] for row in json.loads((tmp_path / "b2.json").read_text())["rows"]}


@pytest.mark.parametrize("out", [".", "..", "/", "reports/", "{tmp}"])
def test_out_must_be_a_file_prefix(out, tmp_path):
    from mq_deploy.errors import MQDeployError
    from mq_deploy.outputs import report_prefix
    with pytest.raises(MQDeployError, match="takes a file prefix"):
        report_prefix(out.replace("{tmp}", str(tmp_path)))
    assert report_prefix(tmp_path / "bench") == tmp_path / "bench"
