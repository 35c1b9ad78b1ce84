"""The `mq-deploy` command as a user runs it: a subprocess, exit codes, one-line errors."""

import json
import subprocess
import sys

import pytest

VERBS = ["doctor", "eval", "demo"]


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mq_deploy", *args], capture_output=True, text=True,
                          timeout=timeout, env={"MQ_PROGRESS": "0", **__import__("os").environ})


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_help(verb):
    out = run(*([verb] if verb else []), "--help")
    assert out.returncode == 0 and "usage: mq-deploy" in out.stdout


def test_doctor_reports_every_stage():
    out = run("doctor", "--json")
    assert out.returncode == 0
    report = json.loads(out.stdout)
    assert report["versions"]["torch"]
    assert report["stages"]["load / eval / demo"]["ok"]
    trt = report["stages"]["TensorRT build / validate / bench"]
    if not report["versions"]["tensorrt"]:
        assert not trt["ok"] and "pip install" in trt["message"]


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


def test_demo_prints_heldout_table():
    out = run("demo", "--max-tokens", "8192")
    assert out.returncode == 0, out.stderr
    header, *rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and "bits/byte" in header
    assert "Wikipedia" in rows[0] and "pydoc" in rows[1] and "MambaQuant W8A8" in rows[2]
    fp_bits, unigram_bits = (float(v) for v in rows[0].split("|")[4:6])
    assert fp_bits < unigram_bits - 1.0       # clearly better than a unigram byte model
    agreement = out.stdout.split("argmax agreement ")[1].split("%")[0]
    assert float(agreement) >= 99.5
