"""Outputs that appear whole or not at all: the one place mq-deploy writes files.

Everything is staged in a hidden temporary directory beside the target (same filesystem, so the
final renames are atomic), fsynced, then renamed into place:
- `write_atomic`: one file;
- `atomic_directory`: a directory (the quantized artifact, a saved model);
- `atomic_files`: a set of files side by side (prefill + decode graph + external data + manifest;
  plans + sidecars; a report's .md/.json/.png), committed in the order they were staged, the
  last one (manifest, plan) being the file readers check the others against.
On any failure, Ctrl-C included, files already moved in are removed and the previous ones put back,
and the staging directory goes away: nothing new is left behind. Whether an existing output may be
replaced at all is decided before any work by `mq_deploy.outputs`, not here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import MQDeployError


def fsync_path(path: Path) -> None:
    """Flush a file to disk (an error here is a failed write), or a directory's entries (so a rename
    survives a crash; best effort, as some filesystems cannot fsync directories)."""
    if not Path(path).is_dir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    for item in sorted(directory.rglob("*"), reverse=True):
        if item.is_file():
            fsync_path(item)
    fsync_path(directory)


def _publish_permissions(directory: Path) -> None:
    """mkdtemp makes a private (0700) directory; give it and its files the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for item in directory.rglob("*"):
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


def _missing_parents(target: Path) -> list[Path]:
    """The ancestors of `target` that do not exist yet, outermost first."""
    return [p for p in reversed(target.parents) if not p.exists()]


def _staging_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))


def _remove_created(created: list[Path]) -> None:
    """Undo the parent directories a failed write created (only while they are empty)."""
    for directory in reversed(created):
        try:
            directory.rmdir()
        except OSError:
            break


def _os_error(target: Path, e: OSError) -> MQDeployError:
    return MQDeployError(f"cannot write {target} ({e.strerror or e}); check the path, its permissions and the "
                         "free disk space (nothing was written)")


def write_atomic(path, data: bytes) -> None:
    """Write one file: a temporary sibling, fsync, rename."""
    with atomic_files() as stage:
        stage.file(Path(path)).write_bytes(data)


@contextmanager
def atomic_directory(out_dir, replace: bool = False):
    """Yield a fresh temporary sibling of `out_dir` to fill; on success it becomes `out_dir`.
    An existing `out_dir` is replaced only when it is empty or `replace` is True (the caller has
    checked it is a previous output of ours); it stays in place, untouched, on any failure."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MQDeployError(f"{out_dir} exists and is not a directory; choose another output path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not replace:
        raise MQDeployError(f"{out_dir} already exists and is not empty; choose a new directory")
    created = _missing_parents(out_dir)
    try:
        tmp = _staging_dir(out_dir)
    except OSError as e:
        _remove_created(created)
        raise _os_error(out_dir, e) from None
    old = None
    try:
        yield tmp
        _fsync_tree(tmp)
        _publish_permissions(tmp)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        fsync_path(out_dir.parent)
    except BaseException as e:
        if old is not None and old.exists():
            if out_dir.exists() and not tmp.exists():    # the new one was already moved in
                shutil.rmtree(out_dir, ignore_errors=True)
            os.replace(old, out_dir)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        if isinstance(e, OSError):
            raise _os_error(out_dir, e) from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class StagedFiles:
    """The files of one `atomic_files` block: `file(target)` registers a target and returns the
    path to write its new content to (same name, in the staging directory, so relative references
    such as a graph's external data file resolve there too); `remove(path)` drops a previous file
    that the new set no longer has."""

    def __init__(self):
        self.staging: Path | None = None
        self.created: list[Path] = []         # parent directories made for the staging directory
        self.targets: list[Path] = []
        self.removals: list[Path] = []

    def file(self, target) -> Path:
        target = Path(target)
        if self.staging is None:
            self.created = _missing_parents(target)
            self.staging = _staging_dir(target)
        elif target.parent.resolve() != self.targets[0].parent.resolve():
            raise ValueError(f"atomic_files: {target} is not beside {self.targets[0]}")
        if target not in self.targets:
            self.targets.append(target)
        return self.staging / target.name

    def remove(self, path) -> None:
        path = Path(path)
        if path.exists() and path not in self.removals:
            self.removals.append(path)

    def _commit(self) -> None:
        if self.staging is None:
            return
        for target in self.targets:
            staged = self.staging / target.name
            if not staged.is_file():
                raise MQDeployError(f"internal: {target.name} was registered but never written")
            fsync_path(staged)
        _publish_permissions(self.staging)
        previous = self.staging / ".previous"
        previous.mkdir()
        moved_out: list[tuple[Path, Path]] = []
        moved_in: list[Path] = []
        try:
            for old in [t for t in self.targets if t.exists()] + self.removals:
                if old.is_dir():
                    raise MQDeployError(f"{old} is a directory; an mq-deploy output file cannot replace it")
                backup = previous / f"{len(moved_out)}-{old.name}"
                os.replace(old, backup)
                moved_out.append((old, backup))
            for target in self.targets:
                os.replace(self.staging / target.name, target)
                moved_in.append(target)
            fsync_path(self.targets[0].parent)
        except BaseException as e:
            for target in moved_in:
                try:
                    os.unlink(target)
                except OSError:
                    pass
            for old, backup in moved_out:
                os.replace(backup, old)
            if isinstance(e, OSError):
                raise _os_error(self.targets[-1], e) from None
            raise


@contextmanager
def atomic_files():
    """Stage a set of files that sit side by side; commit them all at the end of the block (in the
    order they were registered), or none of them on any failure."""
    stage = StagedFiles()
    committed = False
    try:
        yield stage
        stage._commit()
        committed = True
    except OSError as e:
        raise _os_error(stage.targets[-1] if stage.targets else Path("?"), e) from None
    finally:
        if stage.staging is not None:
            shutil.rmtree(stage.staging, ignore_errors=True)
        if not committed:
            _remove_created(stage.created)
