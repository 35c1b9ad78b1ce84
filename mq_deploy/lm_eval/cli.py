"""`mq-deploy lm-eval ARGS`: lm-eval's own command line (`lm_eval ARGS`) with `--model mq-deploy` known.

lm-eval 0.4 finds models only in its own registry and discovers no plugins (no entry points, and
--include_path loads tasks, not models), so a plain `lm_eval --model mq-deploy` cannot see us. This
registers the adapter, then runs lm-eval's entry point on the same arguments, unchanged.
"""

from __future__ import annotations

import sys


def run_lm_eval(args: list[str]) -> int:
    from . import adapter  # noqa: F401  (registers "mq-deploy"; one clear error without lm-eval)
    from lm_eval.__main__ import cli_evaluate
    saved, sys.argv = sys.argv, ["lm-eval", *args]      # lm-eval's parser reads sys.argv itself
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0
