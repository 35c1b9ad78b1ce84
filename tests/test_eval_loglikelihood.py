"""Continuation scoring (mq_deploy.eval.loglikelihood), greedy generation and the logits sessions,
without lm-eval: against log-softmax computed here from the demo model's own logits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.eval.greedy import greedy_generate
from mq_deploy.lm_eval.sessions import open_logits_session
from mq_deploy.eval.loglikelihood import score_continuations, scoring_window
from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.models.loading import load_model, save_model


@pytest.fixture(scope="module")
def demo(demo_model_dir):
    return load_model(demo_model_dir).model.eval()


def direct_logprob(model, context, continuation, max_length):
    """log P(continuation | context): one unpadded forward of exactly the scored tokens, log_softmax in
    float64, the last max_length + 1 tokens kept."""
    whole = (list(context) + list(continuation))[-(max_length + 1):]
    with torch.no_grad():
        logits = model(torch.tensor([whole[:-1]]))[0].double()
    n = len(continuation)
    log_probs = logits[-n:].log_softmax(-1)
    targets = torch.tensor(whole[-n:])
    return float(log_probs[torch.arange(n), targets].sum()), bool((logits[-n:].argmax(-1) == targets).all())


def as_logits_fn(model):
    def logits(ids):
        with torch.no_grad():
            return model(torch.as_tensor(ids)).numpy()
    return logits


def byte_requests():
    texts = [("The river flows", " into the sea."), ("A", "n"), ("Paris is the capital of", " France"),
             ("x" * 90 + " and the long context", " ends here"), ("\n", "History"), ("It was", " the"),
             ("In the nineteenth centur", "y")]
    return [(list(c.encode()), list(k.encode())) for c, k in texts]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_scores_match_log_softmax_of_the_model(demo, batch_size):
    """Batched and right-padded (batch 4) or alone (batch 1), with one request past max_length."""
    requests, max_length = byte_requests(), 64
    ours = score_continuations(as_logits_fn(demo), requests, max_length, batch_size, progress=False)
    for (context, continuation), (logprob, greedy) in zip(requests, ours):
        ref, ref_greedy = direct_logprob(demo, context, continuation, max_length)
        # alone: the same float32 forward (measured 4e-15); padded in a batch of 4: 1.9e-6 (batch-shape rounding)
        assert logprob == pytest.approx(ref, abs=2e-5), (context, continuation)
        assert greedy == ref_greedy
    assert [greedy for _, greedy in ours] == [False] * 6 + [True]     # "centur" -> "y" is the model's argmax


def test_left_truncation_keeps_the_last_tokens():
    assert scoring_window([1, 2, 3, 4, 5], [6, 7], max_length=4) == [3, 4, 5, 6]
    assert scoring_window([1], [2, 3], max_length=8) == [1, 2]


def test_scoring_refuses_what_cannot_be_scored():
    with pytest.raises(MQDeployError, match="longer than max_length"):
        scoring_window([1], list(range(9)), max_length=8)
    with pytest.raises(MQDeployError, match="empty continuation"):
        scoring_window([1], [], max_length=8)
    with pytest.raises(MQDeployError, match="empty context"):
        scoring_window([], [1], max_length=8)


def test_greedy_generation_follows_the_argmax_and_stops():
    def counting(ids):                     # the next token is always last + 1
        logits = np.zeros((*ids.shape, 16), dtype=np.float32)
        logits[0, -1, (ids[0, -1] + 1) % 16] = 1.0
        return logits
    assert greedy_generate(counting, [3], max_new_tokens=4, max_length=32) == [4, 5, 6, 7]
    assert greedy_generate(counting, [3], 10, 32, stop=lambda new: new[-1] == 6) == [4, 5, 6]
    lengths = []
    def bounded(ids):                       # an engine whose profile ends at 8 tokens
        assert ids.shape[1] <= 8, ids.shape
        lengths.append(ids.shape[1])
        return counting(ids)
    assert greedy_generate(bounded, [1, 2, 3], max_new_tokens=20, max_length=8) == [4, 5, 6, 7, 8, 9, 10]
    assert max(lengths) == 7                # the last id is never fed back


def test_token_id_only_checkpoint_cannot_run_text_tasks(tmp_path):
    config = MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, state_size=4)   # no tokenizer
    save_model(MambaLM(config), tmp_path / "ids-only")
    with pytest.raises(MQDeployError, match="cannot run text tasks.*tokenizer=DIR"):
        open_logits_session(tmp_path / "ids-only")


def test_tensorrt_backend_names_what_to_install(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not a plan")
    with pytest.raises(MQDeployError, match="TensorRT's Python package is not installed: pip install tensorrt"):
        open_logits_session(plan)                      # backend inferred from .plan


def test_backend_and_path_errors(demo_model_dir, tmp_path):
    with pytest.raises(MQDeployError, match="backend=tflite"):
        open_logits_session(demo_model_dir, "tflite")
    with pytest.raises(MQDeployError, match="model.onnx does not exist"):
        open_logits_session(demo_model_dir, "onnxruntime")
    with pytest.raises(MQDeployError, match="does not exist"):
        open_logits_session(tmp_path / "missing")


def test_package_imports_without_lm_eval_and_the_verb_says_what_to_install(demo_model_dir):
    """lm-eval is an optional extra: blocked here, the package and CLI still import, and
    `mq-deploy lm-eval` on a valid command fails with one line naming the install."""
    code = ("import sys; sys.modules['lm_eval'] = None\n"
            "import mq_deploy, mq_deploy.api, mq_deploy.cli, mq_deploy.eval, mq_deploy.lm_eval.sessions\n"
            "sys.exit(mq_deploy.cli.main(['lm-eval', '--model', 'mq-deploy', '--model_args', "
            f"{'path=' + str(demo_model_dir)!r}, '--tasks', 'arc_easy']))")
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: the lm-eval adapter needs lm-evaluation-harness >= 0.4.2: "
                                   "pip install 'mq-deploy[eval]' (or pip install lm-eval)")


def test_paper_mode_artifact_runs_one_request_at_a_time(demo_model_dir, tmp_path):
    """Its per-sample activation ranges would take in the padding, its per-step h·C ranges the batch."""
    from mq_deploy.api import quantize_checkpoint
    quantize_checkpoint(demo_model_dir, tmp_path / "paper", recipe="rtn", mode="paper", calib_samples=1,
                        calib_seq_len=16, progress=False)
    assert open_logits_session(tmp_path / "paper").max_batch == 1
    assert open_logits_session(demo_model_dir).max_batch is None
