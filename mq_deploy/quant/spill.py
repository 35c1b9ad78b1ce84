"""Tensors parked on disk until they can be used, so that they do not count against memory.

The file is anonymous (tempfile.TemporaryFile: unlinked as soon as it is made, in $TMPDIR or the
system's temp folder), so it never appears among anybody's files and is gone when it is closed or
the process ends, whatever the way it ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, MutableMapping

import torch

from ..errors import MQDeployError


def _in_memory_fs(folder: str) -> bool:
    """Whether `folder` is on a tmpfs/ramfs (files there are memory): the longest mount point above it."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1:3] for line in f]
    except OSError:
        return False
    folder = os.path.realpath(folder)
    above = [(point, kind) for point, kind in mounts
             if folder == point or folder.startswith(point.rstrip("/") + "/")]
    return bool(above) and max(above, key=lambda m: len(m[0]))[1] in ("tmpfs", "ramfs")


def spill_fits(nbytes: int, margin: float = 1.25) -> bool:
    """Whether the temp folder is on a disk with room for `nbytes` (and a margin for everything else
    there). A tmpfs temp folder does not count: parking tensors there would only move them to memory."""
    try:
        folder = tempfile.gettempdir()
        return not _in_memory_fs(folder) and shutil.disk_usage(folder).free >= nbytes * margin
    except OSError:
        return False


def _temp_error(e: OSError) -> MQDeployError:
    return MQDeployError(f"cannot write to a temporary file in {tempfile.gettempdir()} ({e.strerror or e}); quantize "
                         "parks activations and weights there: free some space, or set TMPDIR to a folder with room")


class TensorSpill:
    def __init__(self):
        try:
            self._file = tempfile.TemporaryFile()
        except OSError as e:
            raise _temp_error(e) from None
        self._index: dict[str, tuple[int, torch.dtype, tuple[int, ...]]] = {}

    def put(self, key: str, tensor: torch.Tensor) -> None:
        """Park `tensor` under `key` (a key put again reads back the newer tensor)."""
        data = tensor.detach().cpu().contiguous()
        try:
            offset = self._file.seek(0, 2)
            self._file.write(data.reshape(-1).view(torch.uint8).numpy().data if data.numel() else b"")
            self._file.flush()
        except OSError as e:
            raise _temp_error(e) from None
        self._index[key] = (offset, data.dtype, tuple(data.shape))

    def get(self, key: str) -> torch.Tensor:
        offset, dtype, shape = self._index[key]
        out = torch.empty(shape, dtype=dtype)
        self._file.seek(offset)
        if out.numel():
            view = out.view(-1).view(torch.uint8).numpy()
            if self._file.readinto(view.data) != view.nbytes:
                raise MQDeployError(f"the temporary file in {tempfile.gettempdir()} lost its data (it ended inside "
                                    f"{key}); was the folder cleaned while quantize ran?")
        return out

    def describe(self, key: str) -> tuple[torch.dtype, tuple[int, ...]]:
        _, dtype, shape = self._index[key]
        return dtype, shape

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SpilledTensors(MutableMapping):
    """A {name: tensor} dict whose tensors live in a TensorSpill: a value is read from disk each time
    it is looked up. quantize() keeps the transformed, pre-rounding weights (the artifact's) this
    way, so they are not a second copy of the model in memory beside the fake-quant one."""

    def __init__(self, tensors: Mapping[str, torch.Tensor] | None = None, keys: Iterable[str] | None = None,
                 spill: TensorSpill | None = None):
        self._spill = spill or TensorSpill()
        self._keys = dict.fromkeys(keys or ())       # key -> the spilled key it reads (itself, or a tensor it shares)
        stored = {}
        for key, tensor in (tensors or {}).items():
            same = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
            if same in stored:              # shared storage (a tied head): written once
                self._keys[key] = stored[same]
            else:
                self[key] = tensor
                stored[same] = key

    def _source(self, key: str) -> str:
        if key not in self._keys:
            raise KeyError(key)
        return self._keys[key] or key

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._spill.get(self._source(key))

    def __setitem__(self, key: str, tensor: torch.Tensor) -> None:
        self._spill.put(key, tensor)
        self._keys[key] = None

    def __delitem__(self, key: str) -> None:
        del self._keys[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def describe(self, key: str) -> tuple[torch.dtype, tuple[int, ...]]:
        """(dtype, shape) without reading the tensor (safetensors_io.write_safetensors asks)."""
        return self._spill.describe(self._source(key))

    def subset(self, keys: Iterable[str]) -> "SpilledTensors":
        """A view of some of the tensors (same file, nothing read or copied)."""
        view = SpilledTensors(spill=self._spill)
        view._keys = {k: self._keys[k] for k in keys}      # KeyError for a key not held
        return view
