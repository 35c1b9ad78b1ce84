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


def run_lm_eval(args: list[str]) -> int:
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
