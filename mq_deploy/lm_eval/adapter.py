"""mq-deploy as an lm-evaluation-harness model: `--model mq-deploy --model_args path=...,backend=...`.

Importing this module registers the name "mq-deploy" in lm-eval's model registry (lm-eval 0.4 has
no plugin discovery, so `mq-deploy lm-eval ...` imports it before handing over to lm-eval's own
command line; from Python, import it and call lm_eval.simple_evaluate(model="mq-deploy", ...)).

Tokenization follows lm-eval's TemplateLM, as its Hugging Face model does: a context's trailing
whitespace moves to the continuation, context + continuation are encoded together and split at the
context's length, and an empty context is conditioned on the end-of-text token. The scoring itself
is mq_deploy.eval.loglikelihood (no lm-eval in it); the backends are mq_deploy.lm_eval.sessions.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..errors import MQDeployError

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as e:
    # an lm-eval older than 0.4.2 (no TemplateLM) or a broken install lands here too: name the cause then
    absent = isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "lm_eval"
    raise MQDeployError("the lm-eval adapter needs lm-evaluation-harness >= 0.4.2: pip install 'mq-deploy[eval]' "
                        f"(or pip install lm-eval){'' if absent else f' ({e})'}") from None

from ..eval.greedy import greedy_generate
from .sessions import check_model_args, infer_backend, open_logits_session
from ..eval.loglikelihood import score_continuations

MODEL_NAME = "mq-deploy"
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_LENGTH = 2048           # lm-eval's default for models without a position limit (HF, mamba_ssm)
DEFAULT_MAX_GEN_TOKS = 256
NEWLINE = "\n"

log = logging.getLogger(__name__)


def _batch_size(value) -> int:
    """lm-eval passes '8', 8 or 'auto[:N]'; auto (which probes GPU memory in HF) is our default here."""
    if value is None or str(value).startswith("auto"):
        return DEFAULT_BATCH_SIZE
    try:
        size = int(value)
    except ValueError:
        raise MQDeployError(f"batch_size={value}: give a positive integer") from None
    if size < 1:
        raise MQDeployError(f"batch_size={value}: give a positive integer")
    return size


def _torch_device(requested: str | None) -> str | None:
    """lm-eval passes device=cuda:0 unless told otherwise; like its HF model, fall back to the CPU
    when torch sees no GPU."""
    import torch
    if requested and requested.startswith("cuda") and not torch.cuda.is_available():
        log.warning("%s: device=%s but torch sees no CUDA device; running on the CPU", MODEL_NAME, requested)
        return "cpu"
    return requested


@register_model(MODEL_NAME)
class MQDeployLM(TemplateLM):
    """model_args: path (checkpoint dir, quantized artifact, model.onnx or model.plan), backend
    (torch | onnxruntime | tensorrt; default from the path), max_length (default 2048; longer
    requests are left-truncated), dtype (torch: float32, float16, bfloat16, float64), tokenizer (a
    model directory whose tokenizer to use), plugins (libmq_plugins.so, TensorRT), max_gen_toks.
    lm-eval's own --batch_size, --max_batch_size and --device (torch only) arrive as keywords too."""

    def __init__(self, path=None, backend=None, batch_size=None, max_batch_size=None, max_length=None,
                 device=None, dtype="float32", tokenizer=None, plugins=None, max_gen_toks=DEFAULT_MAX_GEN_TOKS,
                 **unknown):
        super().__init__()
        given = {"path": path, "backend": backend, "max_length": max_length, "dtype": dtype, "tokenizer": tokenizer,
                 "plugins": plugins, "max_gen_toks": max_gen_toks, **unknown}
        check_model_args({k: v for k, v in given.items() if v is not None})
        backend = backend or infer_backend(Path(path))
        device = _torch_device(device) if backend == "torch" else None     # the graph backends pick their own
        self.session = open_logits_session(path, backend, device=device, dtype=dtype, tokenizer_dir=tokenizer,
                                           plugins=plugins)
        limits = [v for v in (self.session.max_batch, int(max_batch_size) if max_batch_size else None) if v]
        self._batch_size = min([_batch_size(batch_size), *limits])
        self._max_length = min(v for v in (int(max_length or DEFAULT_MAX_LENGTH), self.session.max_length) if v)
        self.max_gen_toks = int(max_gen_toks)
        self.mq_tokenizer = self.session.tokenizer
        log.info("%s: %s, batch %d, max_length %d", MODEL_NAME, self.session.description, self._batch_size,
                 self._max_length)

    # ---------------------------------------------------------------- what TemplateLM asks for
    @property
    def eot_token_id(self) -> int:
        """The tokenizer's end-of-text token; a byte-level model has none, so a newline (the demo's
        training text separates articles with newlines) conditions an empty context."""
        eot = self.mq_tokenizer.end_of_text_id
        return eot if eot is not None else self.mq_tokenizer.encode(NEWLINE)[-1]

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tokenizer_name(self) -> str:
        # lm-eval puts it in its request-cache file name: no path separators or spaces
        return re.sub(r"[^A-Za-z0-9_.,-]+", "_", self.mq_tokenizer.name).strip("_")

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        return self.mq_tokenizer.encode(string)

    def tok_decode(self, tokens) -> str:
        return self.mq_tokenizer.decode(tokens)

    def get_model_info(self) -> dict:
        return {"mq_deploy_backend": self.session.backend, "mq_deploy_model": self.session.description}

    # ---------------------------------------------------------------- scoring
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        results = score_continuations(self.session.logits, [(ctx, cont) for _, ctx, cont in requests],
                                      self.max_length, self.batch_size, progress=not disable_tqdm)
        for (strings, _, _), result in zip(requests, results):
            if strings is not None:
                self.cache_hook.add_partial("loglikelihood", strings, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Whole-document log-likelihood in windows of max_length, each token predicted once (lm-eval's
        rolling windows, as its HF model)."""
        windows, owners = [], []
        for index, (string,) in enumerate(req.args for req in requests):
            for context, continuation in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, continuation))
                owners.append(index)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owners, scores):
            totals[index] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---------------------------------------------------------------- generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy only (do_sample must be false); stops at any `until` string, or at end-of-text."""
        outputs = []
        for req in requests:
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            if gen_kwargs.pop("do_sample", False) and gen_kwargs.get("temperature", 0) not in (0, 0.0):
                raise MQDeployError(f"{MODEL_NAME} generates greedily; sampling (do_sample=true) is not supported")
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            eot = self.mq_tokenizer.end_of_text_id

            def stop(new: list[int]) -> bool:
                return (eot is not None and new[-1] == eot) or any(u in self.tok_decode(new) for u in until)
            prompt = self.tok_encode(context) or [self.prefix_token_id]
            new = greedy_generate(self.session.logits, prompt, max_new, self.max_length, stop)
            if eot is not None and new and new[-1] == eot:
                new = new[:-1]
            text = self.tok_decode(new)
            for u in until:
                text = text.split(u)[0]
            self.cache_hook.add_partial("generate_until", req.args, text)
            outputs.append(text)
        return outputs
