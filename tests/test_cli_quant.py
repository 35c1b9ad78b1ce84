"""quantize / eval / inspect / compare-recipes through the command line, on a small byte-level model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.models.init import init_mamba_weights
from mq_deploy.models.loading import save_model


def run(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "mq_deploy", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "MQ_PROGRESS": "0"})


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny"
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=48, num_hidden_layers=2,
                                                   state_size=8, time_step_rank=12, tokenizer="bytes")), seed=3)
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    from mq_deploy.data.text import pydoc_topics_text
    path = tmp_path_factory.mktemp("data") / "calib.txt"
    path.write_text(pydoc_topics_text()[:40000], encoding="utf-8")
    return path


def test_quantize_then_eval_the_artifact(byte_model, text_file, tmp_path):
    out = tmp_path / "q"
    r = run("quantize", "--model", byte_model, "--recipe", "mambaquant", "--calib", text_file,
            "--calib-samples", "4", "--calib-seq-len", "128", "--eval", text_file, "--eval-max-tokens", "4096",
            "--out", out)
    assert r.returncode == 0, r.stderr
    assert "perplexity on" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "quant.json", "report.json",
                                                    "transforms.safetensors"]
    report = json.loads((out / "report.json").read_text())
    assert report["calibration"]["samples"] == 4 and report["eval"]["tokens"] > 0
    # the random-init model has not learned the text: perplexity cannot judge it, the KL can
    assert 0 < report["eval"]["kl_per_token"] < 1 and "KL(FP || quantized)" in r.stdout
    assert report["eval"]["fp_perplexity"] > report["eval"]["unigram_perplexity"]
    assert "no better than its unigram frequencies" in r.stdout
    r = run("eval", "--model", out, "--text", text_file, "--max-tokens", "4096", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert "mambaquant W8A8 deploy" in result["kind"]
    assert result["perplexity"] == pytest.approx(report["eval"]["quantized_perplexity"], rel=1e-9)


def test_quantize_errors_leave_nothing_behind(byte_model, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short", encoding="utf-8")
    r = run("quantize", "--model", byte_model, "--calib", short, "--out", tmp_path / "q")
    assert r.returncode == 2 and "calibration text too short" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "q").exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    r = run("quantize", "--model", byte_model, "--calib", empty, "--out", tmp_path / "q")
    assert r.returncode == 2 and "is empty" in r.stderr
    (tmp_path / "q2").mkdir()
    (tmp_path / "q2" / "quant.json").write_text(json.dumps({"format_version": 99, "recipe": "mambaquant"}))
    r = run("eval", "--model", tmp_path / "q2", "--text", "pydoc-topics")
    assert r.returncode == 2 and "unknown quantized-artifact format version" in r.stderr


def test_inspect_writes_plots(byte_model, text_file, tmp_path):
    run("quantize", "--model", byte_model, "--recipe", "mambaquant", "--calib", text_file, "--calib-samples", "4",
        "--calib-seq-len", "128", "--out", tmp_path / "q")
    r = run("inspect", "--model", byte_model, "--quantized", tmp_path / "q", "--plot", tmp_path / "plots",
            "--text", text_file, "--samples", "2", "--seq-len", "128")
    assert r.returncode == 0, r.stderr
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["channels_dt_proj_input.png", "channels_in_proj_input.png", "channels_out_proj_input.png",
                    "channels_x_proj_input.png", "layer_error.png"]
    for name in pngs:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "relative error of each block's output" in r.stdout


def test_compare_recipes_table(byte_model, text_file, tmp_path):
    r = run("compare-recipes", "--model", byte_model, "--calib", text_file, "--eval", text_file, "--recipes",
            "rtn", "quamba", "--calib-samples", "2", "--calib-seq-len", "128", "--eval-max-tokens", "2048",
            "--seeds", "2", "--peers", "--out", tmp_path / "table")   # no ModelOpt peers here: tests/test_modelopt_peer.py
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "table.json").read_text())
    assert len(result["rows"]) == 2 * 3 * 2
    assert {(row["recipe"], row["bits"], row["mode"]) for row in result["rows"]} == {
        (rc, b, m) for rc in ("rtn", "quamba") for b in ("W8A8", "W4A8", "W4A16") for m in ("deploy", "paper")}
    assert "| rtn | W8A8 | deploy |" in (tmp_path / "table.md").read_text()
    # per-window NLL of the FP model, recomputed here from the checkpoint and the text's bytes
    import torch
    from mq_deploy.models.loading import load_model
    model = load_model(byte_model).model
    windows = torch.tensor(list(text_file.read_text(encoding="utf-8").encode())[:2048]).view(4, 512)
    with torch.no_grad():
        logits = model(windows[:, :-1])
    expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none").mean(1)
    assert result["fp_window_nll"] == pytest.approx(expected.tolist(), rel=1e-5)
    for row in result["rows"]:       # the paired mean over equal windows is the perplexity change itself
        assert row["vs_fp"]["windows"] == 4
        assert row["vs_fp"]["percent"] == pytest.approx(row["change_percent"], abs=1e-6)
        assert row["vs_fp"]["low_percent"] <= row["vs_fp"]["percent"] <= row["vs_fp"]["high_percent"]
    for row in result["rows"]:       # quamba's random Hadamard signs: two seeds, two models; rtn: one
        if row["recipe"] == "rtn":
            assert "seed_window_nll" not in row and "seed_change_percent" not in row
            continue
        seeds = row["seed_window_nll"]
        assert len(seeds) == 2 and seeds[0] != seeds[1] and len(row["seed_change_percent"]) == 2
        assert row["window_nll"] == pytest.approx([(a + b) / 2 for a, b in zip(*seeds)], rel=1e-12)
        assert row["vs_fp"]["seeds"] == [2, 1]
    assert "| quamba | W8A8 | deploy |" in (tmp_path / "table.md").read_text()
    assert {(d["bits"], d["mode"]) for d in result["decisions"]} == {
        (b, m) for b in ("W8A8", "W4A8", "W4A16") for m in ("deploy", "paper")}
    for d in result["decisions"]:     # 4 windows decide nothing; the best is the lower mean NLL
        assert d["too_few_windows"] and not d["decisive"]
        rows = {r["recipe"]: r for r in result["rows"] if (r["bits"], r["mode"]) == (d["bits"], d["mode"])}
        assert d["best"] == min(rows, key=lambda name: sum(rows[name]["window_nll"]))
    assert {r["weight_rounding"] for r in result["rows"] if r["bits"] == "W4A16" and r["mode"] == "deploy"} == {"gptq"}
    # fidelity: RTN W8A8 is one model whatever the seed; quantized again here, its KL(FP ‖ q) per window
    # is scipy's relative entropy of the two softmaxes
    from scipy.special import rel_entr, softmax

    from mq_deploy.data.calibration import calibration_batches
    from mq_deploy.quant.config import QuantConfig
    from mq_deploy.quant.quantize import quantize
    loaded = load_model(byte_model)
    batches, _ = calibration_batches(loaded.tokenizer, str(text_file), 2, 128, 256)
    rtn = quantize(loaded.model, "rtn", batches, QuantConfig(w_bits=8, a_bits=8, mode="deploy"), progress=False)
    with torch.no_grad():
        p_q = softmax(rtn.model(windows[:, :-1]).double().numpy(), axis=-1)
    p_fp = softmax(logits.double().numpy(), axis=-1)
    row = next(r for r in result["rows"] if (r["recipe"], r["bits"], r["mode"]) == ("rtn", "W8A8", "deploy"))
    assert row["window_kl"] == pytest.approx(rel_entr(p_fp, p_q).sum(-1).mean(-1).tolist(), rel=1e-4)
    for row in result["rows"]:       # a seeded recipe's KL is its seeds' mean; its interval holds it
        # (deploy-mode INT4 blocks do not fit this model's K = 48 and 96: those linears stay FP, and so
        # does the whole model, up to rounding of the rotations)
        assert row["kl"] > (1e-7 if row["perplexity"] != pytest.approx(result["fp_perplexity"], rel=1e-6) else -1e-12)
        assert row["kl"] == pytest.approx(sum(row["window_kl"]) / 4, rel=1e-9)
        assert row["kl_interval"]["low"] <= row["kl"] <= row["kl_interval"]["high"]
        if "seed_window_kl" in row:
            assert row["window_kl"] == pytest.approx([(a + b) / 2 for a, b in zip(*row["seed_window_kl"])])
    for d in result["decisions"]:
        rows = {r["recipe"]: r for r in result["rows"] if (r["bits"], r["mode"]) == (d["bits"], d["mode"])}
        assert d["fidelity"]["best"] == min(rows, key=lambda name: rows[name]["kl"])
    assert "KL(FP ‖ q) per token" in (tmp_path / "table.md").read_text()


def test_compare_recipes_and_inspect_on_token_ids_and_again_with_force(byte_model, text_file, tmp_path, capsys,
                                                                      monkeypatch):
    """Token ids for both texts; a second run over the same outputs needs --force and then replaces
    exactly them (our PNGs are recognised by their Software tag, our JSON by its producer)."""
    import numpy as np

    from mq_deploy.cli import main
    monkeypatch.setenv("MQ_PROGRESS", "0")
    ids = np.frombuffer(text_file.read_bytes()[:4096], np.uint8).astype(np.int64).reshape(16, 256)
    np.save(tmp_path / "ids.npy", ids)
    compare = ["compare-recipes", "--model", str(byte_model), "--calib", str(tmp_path / "ids.npy"), "--eval",
               str(tmp_path / "ids.npy"), "--recipes", "rtn", "--calib-samples", "2", "--calib-seq-len", "64",
               "--eval-max-tokens", "1024", "--peers", "--out", str(tmp_path / "t")]
    assert main(compare) == 0
    assert "token ids: no bytes to count" in (tmp_path / "t.md").read_text()
    assert main(compare) == 2 and "pass --force" in capsys.readouterr().err
    assert main([*compare, "--force"]) == 0
    assert {(r["bits"], r["mode"]) for r in json.loads((tmp_path / "t.json").read_text())["rows"]} == {
        (b, m) for b in ("W8A8", "W4A8", "W4A16") for m in ("deploy", "paper")}
    assert main([*compare, "--bits", "w4a16", "W8A8", "--modes", "deploy", "--force"]) == 0
    assert [(r["bits"], r["mode"]) for r in json.loads((tmp_path / "t.json").read_text())["rows"]] == [
        ("W8A8", "deploy"), ("W4A16", "deploy")]
    inspect = ["inspect", "--model", str(byte_model), "--plot", str(tmp_path / "plots"), "--text",
               str(tmp_path / "ids.npy"), "--samples", "2", "--seq-len", "64"]
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "mine.png").write_bytes(b"a user's picture")
    assert main(inspect) == 0
    assert main(inspect) == 2 and "pass --force" in capsys.readouterr().err
    assert main([*inspect, "--force"]) == 0
    assert (tmp_path / "plots" / "mine.png").read_bytes() == b"a user's picture"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "channels_dt_proj_input.png", "channels_in_proj_input.png", "channels_out_proj_input.png",
        "channels_x_proj_input.png", "mine.png"]


def test_w4_alone_is_the_deployable_w4a16(byte_model, text_file, tmp_path, capsys, monkeypatch):
    """--w-bits 4 without --a-bits gives W4A16, which exports; asking for W4A8 in deploy mode stops
    before calibrating unless --no-export-check, and that artifact does not export."""
    from mq_deploy.cli import main
    monkeypatch.setenv("MQ_PROGRESS", "0")
    common = ["--model", str(byte_model), "--calib", str(text_file), "--calib-samples", "2", "--calib-seq-len", "64"]
    assert main(["quantize", *common, "--w-bits", "4", "--out", str(tmp_path / "w4")]) == 0
    assert "W4A16 deploy" in capsys.readouterr().out
    config = json.loads((tmp_path / "w4" / "quant.json").read_text())["config"]
    assert (config["w_bits"], config["a_bits"], config["mode"]) == (4, 16, "deploy")
    assert main(["export", "--model", str(tmp_path / "w4"), "--onnx", str(tmp_path / "w4-onnx" / "model.onnx"),
                 "--precision", "fp32"]) == 0
    assert main(["quantize", *common, "--w-bits", "4", "--a-bits", "8", "--out", str(tmp_path / "w4a8")]) == 2
    assert "no INT4 x INT8 GEMM" in capsys.readouterr().err and not (tmp_path / "w4a8").exists()
    assert main(["quantize", *common, "--w-bits", "4", "--a-bits", "8", "--no-export-check",
                 "--out", str(tmp_path / "w4a8")]) == 0
    assert "cannot deploy it" in capsys.readouterr().out
    assert main(["export", "--model", str(tmp_path / "w4a8"), "--onnx", str(tmp_path / "x" / "model.onnx")]) == 2


def test_a_short_calibration_text_gives_fewer_windows_and_says_so(byte_model, tmp_path):
    # 3.5 windows of 128 bytes: three distinct windows, not 8 overlapping ones reported as 8x128
    short = tmp_path / "short.txt"
    short.write_text(("The quick brown fox jumps over the lazy dog. " * 10)[:448], encoding="ascii")
    out = tmp_path / "q"
    r = run("quantize", "--model", byte_model, "--calib", short, "--calib-samples", "8", "--calib-seq-len", "128",
            "--out", out)
    assert r.returncode == 0, r.stderr
    assert "holds 3 windows of 128 tokens, not the 8 asked for" in r.stderr
    assert "calibrated on 3x128 tokens" in r.stdout
    assert json.loads((out / "report.json").read_text())["calibration"]["samples"] == 3


def test_calibration_windows_are_consecutive_slices():
    from mq_deploy.data.calibration import calibration_windows, short_text_note
    stream = list(range(1000, 1000 + 450))
    windows = calibration_windows(stream, 128, 8)
    assert windows.tolist() == [stream[0:128], stream[128:256], stream[256:384]]
    assert "holds 3 windows" in short_text_note(windows, 8, "t.txt")
    assert short_text_note(calibration_windows(stream, 128, 2), 2, "t.txt") is None
    assert calibration_windows(stream, 128, 2).tolist() == [stream[0:128], stream[128:256]]
