"""safetensors files read and written a tensor at a time, for checkpoints of billions of weights.

Reading maps the file (copy-on-write): a tensor's pages are read when first touched and stay
clean, so the system can drop them again under memory pressure, where safetensors' load_file reads
the whole file into memory. Writing takes the tensors one by one, where save_file first serializes
all of them into one buffer (a second copy of the weights for the length of the save). The files
are the standard format (tests/test_models_safetensors_io.py checks both ways against the
safetensors package).
"""

from __future__ import annotations

import json
import math
import mmap
import os
from collections.abc import Mapping
from pathlib import Path

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
CODES = {dtype: code for code, dtype in DTYPES.items()}
_MAX_HEADER = 100 << 20         # the safetensors package's own limit


def _read_header(f, size: int) -> tuple[dict, int]:
    raw = f.read(8)
    if len(raw) < 8:
        raise ValueError("the file is shorter than its 8-byte header length")
    length = int.from_bytes(raw, "little")
    if length > min(_MAX_HEADER, size - 8):
        raise ValueError(f"header length {length} runs past the end of the file")
    header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, 8 + length


def map_safetensors(file) -> dict[str, torch.Tensor]:
    """{name: tensor} of a safetensors file, each tensor a view of a private mapping of the file.
    Raises ValueError (or OSError) for a truncated or malformed file."""
    with open(file, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header, start = _read_header(f, size)
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > start else None
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, (begin, end) = DTYPES[info["dtype"]], info["data_offsets"]
            shape = [d for d in info["shape"] if type(d) is int and d >= 0]
            if len(shape) != len(info["shape"]) or type(begin) is not int or type(end) is not int:
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name}: unreadable entry {info!r}") from None
        itemsize = torch.empty((), dtype=dtype).element_size()
        count = math.prod(shape)
        if end - begin != count * itemsize or begin < 0 or start + end > size:
            raise ValueError(f"tensor {name}: bytes {begin}..{end} do not hold {shape} {info['dtype']} inside the file")
        if count == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        elif (start + begin) % itemsize:        # an unaligned tensor (old writers): copied, not mapped
            raw = torch.frombuffer(mapped, dtype=torch.uint8, count=end - begin, offset=start + begin)
            out[name] = raw.clone().view(dtype).reshape(shape)
        else:
            out[name] = torch.frombuffer(mapped, dtype=dtype, count=count, offset=start + begin).reshape(shape)
    return out


def _describe(tensors: Mapping, name: str) -> tuple[torch.dtype, tuple[int, ...]]:
    describe = getattr(tensors, "describe", None)        # a disk-backed mapping answers without reading
    if describe is not None:
        return describe(name)
    return tensors[name].dtype, tuple(tensors[name].shape)


def write_safetensors(path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` to `path` as a safetensors file, reading and writing one tensor at a time."""
    described = {name: _describe(tensors, name) for name in tensors}
    # widest elements first: with the header padded to 8 bytes, every tensor starts aligned
    names = sorted(described, key=lambda n: (-torch.empty((), dtype=described[n][0]).element_size(), n))
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in names:
        dtype, shape = described[name]
        if dtype not in CODES:
            raise ValueError(f"tensor {name}: dtype {dtype} has no safetensors code")
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(Path(path), "wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for name in names:
            tensor = tensors[name].detach().to("cpu").contiguous()
            if (tensor.dtype, tuple(tensor.shape)) != described[name]:
                raise ValueError(f"tensor {name} changed while being written")
            if tensor.numel():
                f.write(tensor.reshape(-1).view(torch.uint8).numpy().data)
