"""`mq-deploy lm-eval --model mq-deploy` on local tasks (YAML over JSONL written here, offline): the demo
model (torch) and its FP32 ONNX export (ONNX Runtime) agree, and the torch run's loglikelihoods equal
log-softmax computed here from the model's own logits (one unpadded forward per request)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is optional: pip install 'mq-deploy[eval]'")
pytest.importorskip("onnxruntime")

from mq_deploy.errors import MQDeployError  # noqa: E402
from mq_deploy.models.loading import load_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MAX_LENGTH = 64            # small, so that the long items are left-truncated and documents roll over windows
NEWLINE = 10               # the byte tokenizer's end-of-text stand-in (docs/lm_eval.md)

MC_DOCS = [                # ARC/PIQA-shaped: "Question: ...\nAnswer:" + " choice"
    {"question": "What is the capital of France?", "choices": ["Paris", "London", "Berlin"], "answer": 0},
    {"question": "Water freezes at zero degrees on which scale?", "choices": ["Celsius", "Fahrenheit"], "answer": 0},
    {"question": "Which of these is a river that flows through the city of London and then on to the sea?",
     "choices": ["the Thames", "the Alps", "a desert"], "answer": 0},                        # past MAX_LENGTH
    {"question": "In which century did the Industrial Revolution begin?",
     "choices": ["the eighteenth century", "the first century"], "answer": 0},
]
LAMBADA_DOCS = [{"text": "The United States of America"}, {"text": "In the nineteenth century the city grew"},
                {"text": "He was born in London and studied at the University of Cambridge"}]
ROLLING_DOCS = [{"page": "The history of the city begins in the Roman period, when a small settlement was built "
                         "beside the river. In the Middle Ages it became a market town."},
                {"page": "Short page."}]
GEN_DOCS = [{"prompt": "The United State"}, {"prompt": "In the nineteenth centur"}]
GEN_TOKENS = 8

TASKS = {
    "mq_local_mc": (MC_DOCS, {"output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
                              "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
                              "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}),
    "mq_local_lambada": (LAMBADA_DOCS, {"output_type": "loglikelihood",
                                        "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
                                        "doc_to_target": "{{' '+text.split(' ')[-1]}}",
                                        "metric_list": [{"metric": "perplexity", "aggregation": "perplexity",
                                                         "higher_is_better": False},
                                                        {"metric": "acc", "aggregation": "mean",
                                                         "higher_is_better": True}]}),
    "mq_local_rolling": (ROLLING_DOCS, {"output_type": "loglikelihood_rolling", "doc_to_text": "",
                                        "doc_to_target": "{{page}}",
                                        "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"},
                                                        {"metric": "bits_per_byte"}]}),
    "mq_local_gen": (GEN_DOCS, {"output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "",
                                "generation_kwargs": {"until": ["\n", "."], "max_gen_toks": GEN_TOKENS,
                                                      "do_sample": False},
                                "metric_list": [{"metric": "exact_match"}]}),
}

# Tolerances, in nats on a summed log-probability (docs/lm_eval.md has the measured figures).
# torch adapter vs the direct computation: the same float32 model; only the batch shape differs (rows
# padded into batches of 4), which changes float rounding, not the function: measured 3.6e-7 at most
# (1.9e-6 in tests/test_eval_loglikelihood.py). ONNX Runtime vs torch: the FP32 export computes the same
# function with other kernels and summation orders (logits 4-6e-7 relative, docs/export.md), about 1e-7
# nats per scored byte: measured 4.2e-6 on continuations of 5-23 bytes, 1.0e-5 on a 147-byte document.
# Both bounds are ten times the largest measured difference; acc, greedy flags and generated text must
# be identical.
TORCH_ATOL = 2e-5
ONNX_ATOL = 1e-4


def write_tasks(directory: Path) -> Path:
    """One JSONL file and one YAML task per task; JSON is valid YAML, so the YAML is written as JSON."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (docs, spec) in TASKS.items():
        data = directory / f"{name}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        task = {"task": name, "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(directory / "hf-cache")},
                "test_split": "test", **spec}
        (directory / f"{name}.yaml").write_text(json.dumps(task, indent=2), encoding="utf-8")
    return directory


def offline_env(tmp: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp / "hf"), "MQ_PROGRESS": "0"}


def run_lm_eval(tmp: Path, task_dir: Path, model_args: str, out: Path) -> dict:
    """`python -m mq_deploy lm-eval --model mq-deploy ...` in a subprocess; {task: [samples]} + results."""
    cmd = [sys.executable, "-m", "mq_deploy", "lm-eval", "--model", "mq-deploy", "--model_args", model_args,
           "--tasks", ",".join(TASKS), "--include_path", str(task_dir), "--batch_size", "4", "--device", "cpu",
           "--output_path", str(out), "--log_samples"]
    proc = subprocess.run(cmd, env=offline_env(tmp), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    samples = {name: [json.loads(line) for f in out.rglob(f"samples_{name}_*.jsonl")
                      for line in f.read_text(encoding="utf-8").splitlines()] for name in TASKS}
    results = json.loads(next(out.rglob("results_*.json")).read_text(encoding="utf-8"))
    return {"samples": {k: sorted(v, key=lambda s: s["doc_id"]) for k, v in samples.items()}, "results": results}


@pytest.fixture(scope="module")
def runs(demo_model_dir, tmp_path_factory):
    from mq_deploy.export import export_onnx
    tmp = tmp_path_factory.mktemp("lm_eval")
    tasks = write_tasks(tmp / "tasks")
    onnx = export_onnx(demo_model_dir, tmp / "onnx" / "model.onnx", precision="fp32", decode=False).onnx_path
    args = f"max_length={MAX_LENGTH}"
    return {"torch": run_lm_eval(tmp, tasks, f"path={demo_model_dir},backend=torch,{args}", tmp / "out-torch"),
            "onnxruntime": run_lm_eval(tmp, tasks, f"path={onnx},backend=onnxruntime,{args}", tmp / "out-ort")}


@pytest.fixture(scope="module")
def demo(demo_model_dir):
    return load_model(demo_model_dir).model.eval()


# ------------------------------------------------------------------ what the logged samples hold
def request_args(sample, i: int) -> tuple:
    """The i-th request's arguments: {"gen_args_i": {"arg_0": ...}} in the samples file, tuples in process."""
    args = sample["arguments"]
    return tuple(args[f"gen_args_{i}"].values()) if isinstance(args, dict) else tuple(args[i])


def logged_loglikelihoods(samples) -> list[tuple[str, str, float, bool]]:
    """(context, continuation, logprob, greedy) of every loglikelihood request of a task's samples."""
    out = []
    for s in samples:
        for i, resp in enumerate(s["resps"]):
            (context, continuation), (logprob, greedy) = request_args(s, i), resp[0]
            out.append((context, continuation, float(logprob), greedy in (True, "True")))
    return out


def logged_rolling(samples) -> list[tuple[str, float]]:
    return [(request_args(s, 0)[0], float(s["resps"][0][0])) for s in samples]


# ------------------------------------------------------------------ the independent computation
def log_probs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0].double().log_softmax(-1)


def direct_loglikelihood(model, context: str, continuation: str) -> tuple[float, bool]:
    assert context and context == context.rstrip(), "lm-eval moves trailing spaces; keep contexts without them"
    whole = list((context + continuation).encode())[-(MAX_LENGTH + 1):]
    n = len(continuation.encode())
    lp = log_probs(model, whole[:-1])[-n:]
    targets = torch.tensor(whole[-n:])
    return float(lp[torch.arange(n), targets].sum()), bool((lp.argmax(-1) == targets).all())


def direct_rolling(model, text: str) -> float:
    """Each token predicted once, from at most MAX_LENGTH tokens before it, the first from end-of-text:
    lm-eval's rolling windows, written from its docstring."""
    seq = [NEWLINE, *text.encode()]
    total, predicted, n = 0.0, 0, len(seq) - 1
    while predicted < n:
        end = min(predicted + MAX_LENGTH, n)
        lp = log_probs(model, seq[max(0, end - MAX_LENGTH):end])[-(end - predicted):]
        total += float(lp[torch.arange(end - predicted), torch.tensor(seq[predicted + 1:end + 1])].sum())
        predicted = end
    return total


def direct_greedy(model, prompt: str) -> str:
    ids, new = list(prompt.encode()), []
    for _ in range(GEN_TOKENS):
        new.append(int(log_probs(model, ids + new)[-1].argmax()))
        if any(stop in bytes(new).decode(errors="replace") for stop in ("\n", ".")):
            break
    text = bytes(new).decode(errors="replace")
    return text.split("\n")[0].split(".")[0]


# ------------------------------------------------------------------ tests
def test_lm_eval_runs_the_local_tasks_on_the_demo_model_and_its_onnx_export(runs):
    for backend, run in runs.items():
        results = run["results"]["results"]
        assert set(results) == set(TASKS), backend
        assert [len(run["samples"][t]) for t in TASKS] == [len(docs) for docs, _ in TASKS.values()]
        assert run["results"]["config"]["mq_deploy_backend"] == backend
    torch_results, ort_results = (runs[b]["results"]["results"] for b in ("torch", "onnxruntime"))
    for task, metrics in torch_results.items():
        for metric, value in metrics.items():
            if isinstance(value, float) and "stderr" not in metric:
                assert ort_results[task][metric] == pytest.approx(value, rel=1e-4), (task, metric)


def test_torch_adapter_loglikelihoods_equal_log_softmax_of_the_model(runs, demo):
    checked = 0
    for task in ("mq_local_mc", "mq_local_lambada"):
        for context, continuation, logprob, greedy in logged_loglikelihoods(runs["torch"]["samples"][task]):
            ref, ref_greedy = direct_loglikelihood(demo, context, continuation)
            assert logprob == pytest.approx(ref, abs=TORCH_ATOL), (task, context, continuation)
            assert greedy == ref_greedy, (task, context, continuation)
            checked += 1
    assert checked == sum(len(d["choices"]) for d in MC_DOCS) + len(LAMBADA_DOCS)
    for text, logprob in logged_rolling(runs["torch"]["samples"]["mq_local_rolling"]):
        assert logprob == pytest.approx(direct_rolling(demo, text), abs=TORCH_ATOL)
    for sample in runs["torch"]["samples"]["mq_local_gen"]:
        assert sample["resps"][0][0] == direct_greedy(demo, sample["doc"]["prompt"])


def test_onnx_export_agrees_with_torch(runs):
    for task in ("mq_local_mc", "mq_local_lambada"):
        ours = logged_loglikelihoods(runs["onnxruntime"]["samples"][task])
        ref = logged_loglikelihoods(runs["torch"]["samples"][task])
        assert [r[:2] for r in ours] == [r[:2] for r in ref]
        for (*_, logprob, greedy), (*_, ref_logprob, ref_greedy) in zip(ours, ref):
            assert logprob == pytest.approx(ref_logprob, abs=ONNX_ATOL)
            assert greedy == ref_greedy
    for (_, logprob), (_, ref) in zip(logged_rolling(runs["onnxruntime"]["samples"]["mq_local_rolling"]),
                                      logged_rolling(runs["torch"]["samples"]["mq_local_rolling"])):
        assert logprob == pytest.approx(ref, abs=ONNX_ATOL)
    assert [s["resps"] for s in runs["onnxruntime"]["samples"]["mq_local_gen"]] == \
        [s["resps"] for s in runs["torch"]["samples"]["mq_local_gen"]]


def test_adapter_refuses_missing_and_unknown_model_args(demo_model_dir):
    from mq_deploy.lm_eval.adapter import MQDeployLM
    with pytest.raises(MQDeployError, match="needs --model_args path="):
        MQDeployLM()
    with pytest.raises(MQDeployError, match="unknown --model_args for mq-deploy: pretrained"):
        MQDeployLM(path=str(demo_model_dir), pretrained="x")
    with pytest.raises(MQDeployError, match="batch_size=zero"):
        MQDeployLM(path=str(demo_model_dir), batch_size="zero")


def test_quantized_artifact_runs_its_fake_quant_model(demo_model_dir, tmp_path, monkeypatch):
    """In process (lm_eval.simple_evaluate, built-in tasks not indexed): a quantized artifact (W8A16:
    no activation calibration, so it is quick to make) is scored with its fake-quant model, not the FP one."""
    from lm_eval.tasks import TaskManager

    from mq_deploy.api import quantize_checkpoint
    from mq_deploy.lm_eval import adapter  # noqa: F401  (registers mq-deploy)
    from mq_deploy.quant.artifact import load_quantized
    from mq_deploy.samples import CALIB_TEXT, sample_text
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MQ_PROGRESS", "0")
    quantized = tmp_path / "rtn-w8a16"
    quantize_checkpoint(demo_model_dir, quantized, recipe="rtn", a_bits=16, calib=str(sample_text(CALIB_TEXT)),
                        calib_samples=2, calib_seq_len=64, progress=False)
    tasks = TaskManager(include_path=str(write_tasks(tmp_path / "tasks")), include_defaults=False)
    results = lm_eval.simple_evaluate(model="mq-deploy", model_args={"path": str(quantized), "max_length": MAX_LENGTH},
                                      tasks=["mq_local_mc"], task_manager=tasks, batch_size=4, device="cpu",
                                      log_samples=True)
    assert "rtn W8A16 deploy (fake-quant)" in results["config"]["mq_deploy_model"]
    fake_quant, fp = load_quantized(quantized).model.eval(), load_model(demo_model_dir).model.eval()
    off_fp = 0.0
    for context, continuation, logprob, greedy in logged_loglikelihoods(results["samples"]["mq_local_mc"]):
        ref, ref_greedy = direct_loglikelihood(fake_quant, context, continuation)
        assert logprob == pytest.approx(ref, abs=TORCH_ATOL) and greedy == ref_greedy
        off_fp = max(off_fp, abs(logprob - direct_loglikelihood(fp, context, continuation)[0]))
    assert off_fp > 1e-3          # quantization moved the scores: the artifact, not the FP model, was run


# one document per paper task, in the columns of the Hugging Face dataset lm-eval reads
PAPER_TASK_DOCS = {
    "arc_easy": {"id": "1", "question": "What is frozen water called?",
                 "choices": {"text": ["steam", "ice", "sand"], "label": ["A", "B", "C"]}, "answerKey": "B"},
    "arc_challenge": {"id": "2", "question": "Which gas do plants take in from the air?",
                      "choices": {"text": ["carbon dioxide", "helium"], "label": ["1", "2"]}, "answerKey": "1"},
    "piqa": {"goal": "To open a door", "sol1": "turn the handle", "sol2": "eat the handle", "label": 0},
    "winogrande": {"sentence": "The trophy does not fit in the case because _ is too big.", "option1": "the trophy",
                   "option2": "the case", "answer": "1"},
    "hellaswag": {"ind": 1, "activity_label": "Cooking", "ctx_a": "A man puts a pan on the stove.", "ctx_b": "he",
                  "ctx": "A man puts a pan on the stove. he", "endings": ["pours oil in.", "flies away.",
                                                                          "sings.", "sleeps."],
                  "source_id": "x", "split": "val", "split_type": "indomain", "label": "0"},
    "lambada_openai": {"text": "He was born in London and studied at the University of Cambridge"},
}


def test_paper_tasks_run_offline_from_local_jsonl(demo_model_dir, tmp_path, monkeypatch):
    """scripts/lm_eval_local_tasks.py's task files: lm-eval's own six tasks (same names, prompts and
    metrics), documents from local JSONL; run in process on the demo model."""
    from lm_eval.tasks import TaskManager

    from mq_deploy.lm_eval import adapter  # noqa: F401  (registers mq-deploy)
    from mq_deploy.lm_eval.tasks import PAPER_TASKS, paper_average, write_local_tasks
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MQ_PROGRESS", "0")
    data = tmp_path / "data"
    data.mkdir()
    for name, doc in PAPER_TASK_DOCS.items():
        (data / f"{name}.jsonl").write_text(json.dumps(doc) + "\n", encoding="utf-8")
    written = write_local_tasks(data, tmp_path / "tasks")
    assert sorted(p.stem for p in written) == sorted(t.name for t in PAPER_TASKS)
    results = lm_eval.simple_evaluate(model="mq-deploy", model_args={"path": str(demo_model_dir)},
                                      tasks=[t.name for t in PAPER_TASKS], batch_size=8, device="cpu",
                                      task_manager=TaskManager(include_path=str(tmp_path / "tasks"),
                                                               include_defaults=False))
    for task in PAPER_TASKS:
        assert results["n-samples"][task.name]["effective"] == 1
        assert f"{task.metric},none" in results["results"][task.name]
    reported = {"arc_easy": "acc", "arc_challenge": "acc_norm", "piqa": "acc", "winogrande": "acc",
                "hellaswag": "acc_norm"}                      # the paper's table; LAMBADA is not averaged
    five = [results["results"][task][f"{metric},none"] for task, metric in reported.items()]
    assert paper_average(results) == pytest.approx(sum(five) / 5)


def test_local_task_files_never_replace_a_users_file(tmp_path):
    """All task files or none; a file there already is replaced only if ours and force."""
    from mq_deploy.lm_eval.tasks import write_local_tasks
    data = tmp_path / "data"
    data.mkdir()
    for name in ("arc_easy", "piqa"):
        (data / f"{name}.jsonl").write_text(json.dumps(PAPER_TASK_DOCS[name]) + "\n", encoding="utf-8")
    out = tmp_path / "tasks"
    out.mkdir()
    (out / "piqa.yaml").write_text("task: piqa  # the user's own\n")
    with pytest.raises(MQDeployError, match="piqa.yaml already exist.*not from an mq-deploy lm-eval task file"):
        write_local_tasks(data, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["piqa.yaml"]
    assert (out / "piqa.yaml").read_text() == "task: piqa  # the user's own\n"
    (out / "piqa.yaml").unlink()
    first = write_local_tasks(data, out)
    with pytest.raises(MQDeployError, match="pass --force"):
        write_local_tasks(data, out)
    assert write_local_tasks(data, out, force=True) == first
    assert json.loads((out / "arc_easy.yaml").read_text())["task"] == "arc_easy"


def test_local_tasks_need_task_data(tmp_path):
    from mq_deploy.lm_eval.tasks import write_local_tasks
    with pytest.raises(MQDeployError, match="no task data in .*arc_easy.jsonl"):
        write_local_tasks(tmp_path, tmp_path / "tasks")
