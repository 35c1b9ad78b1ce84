"""Tensors parked on disk until they can be used, so that they do not count against memory.

The file is anonymous (tempfile.TemporaryFile: unlinked as soon as it is made, in $TMPDIR or the
system's temp folder), so it never appears among anybody's files and is gone when it is closed or
the process ends, whatever the way it ends.
"""

from __future__ import annotations

import shutil
import tempfile

import torch


def spill_fits(nbytes: int, margin: float = 1.25) -> bool:
    """Whether the temp folder has room for `nbytes` (with a margin for everything else there)."""
    return shutil.disk_usage(tempfile.gettempdir()).free >= nbytes * margin


class TensorSpill:
    def __init__(self):
        self._file = tempfile.TemporaryFile()
        self._index: dict[str, tuple[int, torch.dtype, tuple[int, ...]]] = {}

    def put(self, key: str, tensor: torch.Tensor) -> None:
        if key in self._index:
            raise KeyError(f"{key} is already spilled")
        data = tensor.detach().cpu().contiguous()
        offset = self._file.seek(0, 2)
        self._file.write(data.reshape(-1).view(torch.uint8).numpy().data if data.numel() else b"")
        self._index[key] = (offset, data.dtype, tuple(data.shape))

    def get(self, key: str) -> torch.Tensor:
        offset, dtype, shape = self._index[key]
        out = torch.empty(shape, dtype=dtype)
        self._file.seek(offset)
        if out.numel():
            view = out.view(-1).view(torch.uint8).numpy()
            if self._file.readinto(view.data) != view.nbytes:
                raise OSError(f"the spill file ended inside {key}")
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
