"""The `mq-deploy` command as a user runs it: a subprocess, exit codes, one-line errors."""

import json
import re
import subprocess
import sys

import pytest

VERBS = ["doctor", "eval", "demo", "validate", "bench", "build"]


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mq_deploy", *args], capture_output=True, text=True,
                          timeout=timeout, env={"MQ_PROGRESS": "0", **__import__("os").environ})


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_help(verb):
    out = run(*([verb] if verb else []), "--help")
    assert out.returncode == 0 and "usage: mq-deploy" in out.stdout


def test_eval_json_on_pydoc_topics(demo_model_dir):
    out = run("eval", "--model", str(demo_model_dir), "--text", "pydoc-topics", "--max-tokens", "4096",
              "--seq-len", "256", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["scored_tokens"] == 16 * 255
    assert 0 < result["bits_per_byte"] < result["unigram_bits_per_byte"]


@pytest.mark.parametrize("args, message", [
    (["eval", "--model", "no/such/dir", "--text", "pydoc-topics"], "model directory no/such/dir does not exist"),
    (["eval", "--model", "{demo}", "--text", "no_such.txt"], "text file no_such.txt does not exist"),
])
def test_errors_are_one_line(demo_model_dir, args, message):
    out = run(*[a.replace("{demo}", str(demo_model_dir)) for a in args])
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: ") and message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("family", [[], ["--mamba2"]], ids=["mamba", "mamba2"])
def test_demo_prints_one_summary_table(family):
    out = run("demo", "--max-tokens", "8192", *family)
    assert out.returncode == 0, out.stderr
    header, _, *rows = [line for line in out.stdout.splitlines() if line.startswith("|")]
    assert header == "| stage | what | result | s |"
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    stages = [c[0] for c in cells]
    assert stages[:5] == ["FP32 model", "FP32 model", "quantize", "quantized model", "export + check"]
    fp_bits, unigram_bits = re_bits(cells[0][2])
    assert fp_bits < unigram_bits - 1.0       # clearly better than a unigram byte model
    validations = [c for c in cells if c[0] == "validate"]
    assert len(validations) == 4 and all(c[2].startswith("pass:") for c in validations)   # prefill and decode
    assert sum("decode steps" in c[1] for c in validations) == 2
    assert any(c[0] == "bench (CPU)" and "tokens/s" in c[2] for c in cells)
    assert all(float(c[3]) >= 0 for c in cells if c[1] != "skipped")     # every stage that ran is timed
    tensorrt = [c for c in cells if c[0] == "TensorRT build"]
    from mq_deploy.demo import tensorrt_unavailable
    assert tensorrt and (tensorrt[0][1] == "skipped") == (tensorrt_unavailable() is not None)
    assert "demo passed" in out.stdout
    assert ("byte-level Mamba-2" in out.stdout) == bool(family)


def re_bits(cell: str) -> tuple[float, float]:
    """'2.551 bits/byte (unigram 4.514), ...' -> (2.551, 4.514)"""
    import re
    m = re.match(r"([0-9.]+) bits/byte \(unigram ([0-9.]+)\)", cell)
    return float(m.group(1)), float(m.group(2))

def test_unknown_arguments_are_refused_by_every_verb_but_lm_eval():
    """`lm-eval` passes what follows it to lm-eval unparsed; the other verbs still refuse strays."""
    out = run("doctor", "--bogus")
    assert out.returncode == 2 and "unrecognized arguments: --bogus" in out.stderr


def test_vision_demo_prints_one_summary_table():
    """`demo --vision`: the FP model's top-1 on the held-out digits (scored against their labels,
    recomputed here), the quantized model within half a point of it, ONNX Runtime validated."""
    out = run("demo", "--vision")
    assert out.returncode == 0, out.stderr
    header, _, *rows = [line for line in out.stdout.splitlines() if line.startswith("|")]
    assert header == "| stage | what | result | s |"
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [c[0] for c in cells][:4] == ["FP32 model", "quantize", "quantized model", "export + check"]
    import torch

    from mq_deploy.data.image_sources import load_image_source
    from mq_deploy.models.vim_loading import load_vim
    from mq_deploy.samples import samples_dir
    model = load_vim(samples_dir() / "models" / "vim-digits-demo").model
    held = load_image_source("digits:heldout", 32)
    with torch.no_grad():
        top1 = (model(held.images).argmax(-1) == held.labels).double().mean().item()
    assert cells[0][2] == f"top-1 {100 * top1:.2f}%" and top1 > 0.95
    quantized = float(re.search(r"top-1 ([\d.]+)%", cells[2][2]).group(1))
    assert abs(quantized - 100 * top1) <= 0.5
    validations = [c for c in cells if c[0] == "validate"]
    assert validations and all(c[2].startswith("pass:") for c in validations)
    assert any(c[0] == "bench (CPU)" and "images/s" in c[2] for c in cells)
    assert all(float(c[3]) >= 0 for c in cells if c[1] != "skipped")
    assert "demo passed" in out.stdout


def test_lm_eval_help_without_lm_eval_lists_every_model_arg(monkeypatch, capsys):
    """Without lm-eval, `lm-eval --help` still shows our part: the usage, every --model_args key the
    adapter takes (the list it checks against), and the install line for lm-eval's own options."""
    from mq_deploy.cli import main
    from mq_deploy.lm_eval import cli as lm_eval_cli
    from mq_deploy.lm_eval.sessions import MODEL_ARGS
    monkeypatch.setattr(lm_eval_cli, "lm_eval_installed", lambda: False)
    assert main(["lm-eval", "--tasks", "arc_easy", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mq-deploy lm-eval") and "pip install 'mq-deploy[eval]'" in out
    listed = re.findall(r"^  (\w+)=", out, flags=re.M)
    assert sorted(listed) == sorted(MODEL_ARGS) and len(listed) == len(MODEL_ARGS)
