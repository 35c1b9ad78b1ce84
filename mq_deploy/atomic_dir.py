"""Directories that appear complete or not at all: written beside the target, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import MQDeployError


@contextmanager
def atomic_directory(out_dir):
    """Yield a fresh temporary sibling of `out_dir` to fill. On success it replaces `out_dir`; on
    any failure it is removed and `out_dir` is left as it was."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MQDeployError(f"{out_dir} exists and is not a directory; choose another output path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        _publish_permissions(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish_permissions(directory: Path) -> None:
    """mkdtemp makes a private (0700) directory; give it and its files the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for item in directory.iterdir():
        if item.is_file():
            os.chmod(item, 0o666 & ~umask)


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target`, replacing an existing directory as late as possible."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
