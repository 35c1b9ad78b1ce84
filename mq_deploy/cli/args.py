"""Options that several verbs take, each defined once with one help text and one meaning
(Polygraphy's tools/args argument groups, in small): a group adds its options to a parser and
turns the parsed values into what the work functions take."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FORCE_HELP = "replace a previous output of mq-deploy at that path (never anything mq-deploy did not write)"


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help=FORCE_HELP)


def add_plugins(parser: argparse.ArgumentParser) -> None:
    """One search order everywhere (mq_deploy.trt.plugin_loading.resolve_plugin_library)."""
    parser.add_argument("--plugins", default=None, metavar="PATH",
                        help="libmq_plugins.so or its directory (default: $MQ_PLUGIN_PATH, then the package's "
                             "lib/ or the source tree's build/)")


def add_device(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help=f"where {what} runs: auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda, "
                             "cuda:N")


def resolve_device(name: str) -> str:
    """--device auto: cuda when torch sees a GPU, else cpu; anything else as given (checked)."""
    from ..devices import torch_device
    return str(torch_device(name))


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """--json FILE writes the result as JSON to FILE; --json alone or --json - prints it instead."""
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        help=f"also write {what} as JSON to FILE (- or no FILE: print it as JSON instead)")


def json_to_stdout(args) -> bool:
    return args.json == "-"


def check_json_output(args, kind: str, inputs=()) -> None:
    """Before any work: --json FILE is new, or a previous JSON of ours and --force (never an input,
    never a file mq-deploy did not write)."""
    if args.json and args.json != "-":
        from ..outputs import check_output_files, read_own_json
        check_output_files([args.json], kind, lambda p: read_own_json(p, kind) is not None,
                           getattr(args, "force", False), inputs=[i for i in inputs if i], option="--json")


def write_json(args, result: dict, kind: str) -> Path | None:
    """Write `result` where --json says: stdout for '-', else atomically to the file (with "producer"
    and "file_kind" keys, so a later --force knows the file is ours and which kind: check_json_output)."""
    from .. import __version__
    result = {"producer": f"mq-deploy {__version__}", "file_kind": kind, **result}
    text = json.dumps(result, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        return None
    from ..atomic_dir import write_atomic
    write_atomic(Path(args.json), text.encode("utf-8"))
    return Path(args.json)


def add_text(parser: argparse.ArgumentParser, option: str = "--text", required: bool = False, default=None,
             purpose: str = "text to run") -> None:
    """A text source: a UTF-8 file, 'pydoc-topics' (CPython's own docs), or token ids (.npy / .json)."""
    parser.add_argument(option, required=required, default=default,
                        help=f"{purpose}: a UTF-8 text file, 'pydoc-topics', or token ids (.npy / .json)"
                             + (f" (default {default})" if default else ""))


def add_onnx(parser: argparse.ArgumentParser, help_text: str = "the exported .onnx (manifest.json beside it)") -> None:
    parser.add_argument("--onnx", required=True, help=help_text)
