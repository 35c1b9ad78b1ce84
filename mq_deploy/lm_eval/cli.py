"""`mq-deploy lm-eval ARGS`: lm-eval's own command line (`lm_eval ARGS`) with `--model mq-deploy` known.

lm-eval 0.4 finds models only in its own registry and discovers no plugins (no entry points, and
--include_path loads tasks, not models), so a plain `lm_eval --model mq-deploy` cannot see us. This
registers the adapter, then runs lm-eval's entry point on the same arguments, unchanged.
"""

from __future__ import annotations

import sys

from ..errors import MQDeployError
from .sessions import check_model_args


def option_value(args: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in lm-eval's arguments (the last one wins, as in argparse)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1:]
    return value


def parse_model_args(text: str) -> dict:
    """lm-eval's key=value,key=value form."""
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise MQDeployError(f"--model_args {text}: {', '.join(bad)} is not key=value; write e.g. "
                            "--model_args path=DIR,backend=torch")
    return {k.strip(): v.strip() for k, v in pairs}


HELP_WITHOUT_LM_EVAL = """\
usage: mq-deploy lm-eval --model mq-deploy --model_args path=PATH[,backend=torch|onnxruntime|tensorrt]
                         --tasks TASKS [lm_eval options]

lm-eval's own command line with one more model, mq-deploy (docs/lm_eval.md). Every argument goes to
lm-eval unchanged. lm-eval is not installed here, so its own options cannot be listed:

    pip install 'mq-deploy[eval]'        (or: pip install 'lm-eval>=0.4.2')

--model_args of --model mq-deploy (key=value,key=value):
  path=PATH       a checkpoint directory, a quantized artifact, an exported model.onnx or a built model.plan
  backend=NAME    torch, onnxruntime or tensorrt (default: from the path: .onnx, .plan, else torch)
  dtype=NAME      torch backend: float32 (default), float16, bfloat16 or float64
  max_length=N    the longest window scored at once (default 2048)
  tokenizer=DIR   a model directory whose tokenizer to use (a checkpoint without tokenizer.json)
  plugins=PATH    libmq_plugins.so for the tensorrt backend (default: found as `build` finds it)
  max_gen_toks=N  the longest generation of generate_until tasks (default 256)
"""


def lm_eval_installed() -> bool:
    import importlib.util
    return importlib.util.find_spec("lm_eval") is not None


def run_lm_eval(args: list[str]) -> int:
    if not lm_eval_installed() and any(a in ("-h", "--help") for a in args):
        print(HELP_WITHOUT_LM_EVAL, end="")      # our part of the help, and the install line for lm-eval's
        return 0
    # our part of the command is checked first, with or without lm-eval installed (the same error for
    # the same command everywhere, and before lm-eval's slow import); then the adapter's import below
    # names the install where lm-eval is missing
    if option_value(args, "--model") == "mq-deploy":
        check_model_args(parse_model_args(option_value(args, "--model_args") or ""))
    from . import adapter  # noqa: F401  (registers "mq-deploy"; one clear error without lm-eval)
    from lm_eval.__main__ import cli_evaluate
    saved, sys.argv = sys.argv, ["lm-eval", *args]      # lm-eval's parser reads sys.argv itself
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0
