"""May this output location be written? Decided before any work starts, one line when not.

The rule, for every verb: mq-deploy never replaces what it did not write. An output that exists is
refused unless it is a previous output of ours of the same kind, and even then only with --force.
An output equal to or inside one of the inputs is refused (it would change the input, or its hash).
An empty directory counts as free. The parent must be a writable directory (or creatable).
How the files are then written (staged, fsynced, renamed) is `mq_deploy.atomic_dir`'s job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

from . import __version__
from .errors import MQDeployError

PRODUCER = f"mq-deploy {__version__}"
SHOWN = 3                          # file names listed in an error before "and N more"


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def is_within(path: Path, other: Path) -> bool:
    """path == other or path is somewhere below other (resolved, symlinks followed)."""
    path, other = Path(path).resolve(), Path(other).resolve()
    return path == other or other in path.parents


def check_parent_writable(path: Path, option: str) -> None:
    """The nearest existing ancestor of `path` must be a writable directory (nothing is created)."""
    ancestor = next((p for p in [path.parent, *path.parent.parents] if p.exists() or p.is_symlink()), None)
    if ancestor is None:
        return
    if not ancestor.is_dir():
        raise MQDeployError(f"{option} {path}: {ancestor} is a file, not a directory; choose another path")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise MQDeployError(f"{option} {path}: the directory {ancestor} is not writable; choose another path")


def check_not_an_input(path: Path, inputs: Iterable, option: str) -> None:
    """Refuse an output that is an input, lies inside an input directory, or contains an input."""
    for item in inputs:
        if item is None:
            continue
        item = Path(item)
        if not item.exists():
            continue
        if is_within(path, item):
            what = "is" if path.resolve() == item.resolve() else "is inside"
            raise MQDeployError(f"{option} {path} {what} the input {item}; writing there would change the input: "
                                "choose an output path outside it")
        if path.is_dir() and is_within(item, path):
            raise MQDeployError(f"{option} {path} contains the input {item}; choose an output path that "
                                "holds no input")


def check_output_dir(out, kind: str, is_ours: Callable[[Path], bool], force: bool, inputs=(),
                     option: str = "--out") -> Path:
    """An output directory: free (missing or empty), or a previous `kind` of ours and --force."""
    out = Path(out)
    if out.resolve() == Path.cwd().resolve():
        raise MQDeployError(f"{option} {out} is the current directory; give a new directory name such as "
                            f"out/{kind.split()[-1]}")
    check_not_an_input(out, inputs, option)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise MQDeployError(f"{option} {out} is an existing file, not a {kind} directory; mq-deploy never "
                                "replaces what it did not write: choose a new directory")
        contents = sorted(p.name for p in out.iterdir())
        if contents:
            if not is_ours(out):
                raise MQDeployError(f"{option} {out} already exists and is not an mq-deploy {kind} (it holds "
                                    f"{_listing(contents)}); mq-deploy never replaces what it did not write: "
                                    "choose a new directory")
            if not force:
                raise MQDeployError(f"{option} {out} holds a previous {kind}; pass --force to replace it, or "
                                    "choose a new directory")
            if not os.access(out, os.W_OK | os.X_OK):
                raise MQDeployError(f"{option} {out} is not writable; choose another directory")
    check_parent_writable(out, option)
    return out


def check_output_files(paths: list, kind: str, is_ours: Callable[[Path], bool], force: bool, inputs=(),
                       option: str = "--out") -> None:
    """Output files written side by side: each one free, or ours (`is_ours(path)`) and --force."""
    paths = [Path(p) for p in paths]
    for path in paths:
        check_not_an_input(path, inputs, option)
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    for path in existing:
        if path.is_dir():
            raise MQDeployError(f"{option} {path} is a directory; give a file path such as {path / paths[0].name}")
    foreign = [p for p in existing if not is_ours(p)]
    for path in foreign:                  # ours, but another kind: say which (a manifest is not a report)
        other = read_own_json(path)
        if other is not None and json_kind(other):
            raise MQDeployError(f"{option} {path} is an mq-deploy {json_kind(other)}, not a {kind}; it is never "
                                f"replaced by a {kind}, --force or not: choose another path")
    if foreign:
        raise MQDeployError(f"{option}: {_listing([str(p) for p in foreign])} already "
                            f"{'exists and is' if len(foreign) == 1 else 'exist and are'} not from an mq-deploy "
                            f"{kind}; mq-deploy never "
                            "replaces what it did not write: choose another path")
    if existing and not force:
        raise MQDeployError(f"{option}: {_listing([str(p) for p in existing])} "
                            f"{'holds' if len(existing) == 1 else 'hold'} a previous {kind}; pass "
                            "--force to replace it, or choose another path")
    check_parent_writable(paths[0], option)


def json_kind(data: dict) -> str | None:
    """Which of our JSON files this is: its "file_kind" (what every --json report records), or for the
    manifest and the engine sidecar, their version key; None for an older report that said neither."""
    if "file_kind" in data:
        return str(data["file_kind"])
    if "manifest_version" in data:
        return "export manifest"
    if "sidecar_version" in data:
        return "engine sidecar"
    return None


def read_own_json(path: Path, kind: str | None = None) -> dict | None:
    """A JSON object that mq-deploy wrote (its "producer" says so), or None; with `kind`, only one of
    that kind (or an older report that did not record its kind), so that --force on a report's path
    never replaces an export manifest or an engine sidecar."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(data, dict) and str(data.get("producer", "")).startswith("mq-deploy")):
        return None
    if kind is not None and json_kind(data) not in (kind, None):
        return None
    return data


def report_prefix(out, option: str = "--out") -> Path:
    """A report's path prefix (<prefix>.md, .json, ...): a name in a directory, not a directory."""
    text = str(out)
    prefix = Path(out)
    if text.endswith(("/", os.sep)) or prefix.name in ("", ".", "..") or prefix.is_dir():
        example = (prefix / "report") if prefix.name not in ("",) else Path("out/report")
        raise MQDeployError(f"{option} {text} is a directory; {option} takes a file prefix (it writes "
                            f"<prefix>.md, .json, ...): for example {option} {example}")
    return prefix


PNG_SOFTWARE = "mq-deploy"          # the tEXt "Software" entry of every PNG we save


def is_own_png(path: Path) -> bool:
    """A PNG that mq-deploy saved (matplotlib writes our Software tag near the start)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"Software\x00" + PNG_SOFTWARE.encode() in head
