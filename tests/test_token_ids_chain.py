"""A new user's checkpoint without a tokenizer (what every mamba_ssm checkpoint is): a Hugging Face
model saved by transformers' save_pretrained, with token-id files (.npy / .json), through quantize,
eval, export, check and validate on the command line. The FP perplexity is recomputed with
transformers itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from mq_deploy.cli import main  # noqa: E402

VOCAB = 97


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    from conftest import random_hf_mamba
    root = tmp_path_factory.mktemp("token_ids")
    hf = random_hf_mamba(vocab=VOCAB, hidden=48, layers=2, state=8, rank=12, seed=2)
    hf.save_pretrained(root / "model")              # config.json + model.safetensors, no tokenizer
    rng = np.random.default_rng(0)
    np.save(root / "calib.npy", rng.integers(0, VOCAB, (8, 64)))
    (root / "heldout.json").write_text(json.dumps(rng.integers(0, VOCAB, (4, 64)).tolist()))
    return root, hf


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenizer_less_model_through_the_whole_chain(user_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MQ_PROGRESS", "0")
    root, hf = user_files
    assert not list(root.glob("model/tokenizer*"))
    code, out, err = run(capsys, "quantize", "--model", root / "model", "--calib", root / "calib.npy",
                         "--calib-samples", "8", "--calib-seq-len", "64", "--out", tmp_path / "q")
    assert code == 0, err
    assert "calibrated on 8x64 tokens" in out

    code, out, err = run(capsys, "eval", "--model", root / "model", "--text", root / "heldout.json", "--seq-len", "64",
                         "--json")
    assert code == 0, err
    fp = json.loads(out)
    ids = torch.tensor(json.loads((root / "heldout.json").read_text()))
    with torch.no_grad():                            # independent: transformers' own logits, same windows
        logits = hf(ids).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1)).item()
    assert fp["tokenizer"] == "token ids" and fp["scored_tokens"] == 4 * 63
    assert fp["perplexity"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert fp["bits_per_byte"] is None              # ids have no bytes; nothing is made up

    code, out, err = run(capsys, "eval", "--model", root / "model", "--text", root / "heldout.json", "--seq-len", "64")
    assert code == 0 and "token ids have no bytes" in out, out + err
    bits = float(next(line for line in out.splitlines() if line.startswith("bits/token")).split()[1])
    assert bits == pytest.approx(nll / math.log(2), rel=1e-4)
    code, out, err = run(capsys, "eval", "--model", tmp_path / "q", "--text", root / "heldout.json", "--seq-len", "64",
                         "--json")
    assert code == 0, err
    quantized = json.loads(out)
    assert quantized["perplexity"] != fp["perplexity"] and abs(quantized["perplexity"] / fp["perplexity"] - 1) < 0.1

    code, out, err = run(capsys, "export", "--model", tmp_path / "q", "--onnx", tmp_path / "onnx" / "model.onnx",
                         "--precision", "fp32")
    assert code == 0, err
    code, out, err = run(capsys, "check", "--onnx", tmp_path / "onnx" / "model.onnx")
    assert code == 0 and out.strip().endswith(": ok"), out + err
    for ids_option in (["--tokens", root / "heldout.json"], ["--text", root / "calib.npy"]):
        code, out, err = run(capsys, "validate", "--onnx", tmp_path / "onnx" / "model.onnx", *ids_option)
        assert code == 0 and "validation passed" in out, out + err
    # text where only ids can work: the error names the option to use
    text = tmp_path / "plain.txt"
    text.write_text("a tokenizer-less model cannot read this " * 30)
    code, out, err = run(capsys, "validate", "--onnx", tmp_path / "onnx" / "model.onnx", "--text", text)
    assert code == 2 and "pass token ids to --tokens or --text" in err
