"""The `mq-deploy` command: argument parsing only; the work is in the functions it calls. Options
several verbs share are defined once (cli/args.py); each verb group registers itself."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import MQDeployError
from . import deploy_verbs, model_verbs, tool_verbs
from .args import resolve_device  # noqa: F401 (part of the CLI's API)

# the order `mq-deploy --help` lists them in
VERB_GROUPS = (tool_verbs, model_verbs, deploy_verbs)


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes are one `error:` line too (exit status 2), pointing at --help."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="mq-deploy",
        description="Quantize Mamba models with MambaQuant and deploy them as TensorRT engines.")
    parser.add_argument("--version", action="version", version=f"mq-deploy {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for group in VERB_GROUPS:
        group.register(verbs)
    parser.verb_parsers = verbs.choices      # a verb's own parser, for its usage errors
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_through", False):      # only lm-eval takes foreign arguments
        parser.verb_parsers[args.verb].error(f"unrecognized arguments: {' '.join(extra)}")   # the verb's --help
    args.lm_eval_args = extra
    try:
        return args.func(args)
    except MQDeployError as e:
        # one line, always: a message listing several problems is joined with "; "
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        print(f"error: {'; '.join(lines)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

