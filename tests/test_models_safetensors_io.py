"""Our tensor-at-a-time safetensors reader and writer against the safetensors package itself."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from mq_deploy.models.safetensors_io import map_safetensors, write_safetensors

TENSORS = {"w": torch.randn(33, 7), "ids": torch.arange(5, dtype=torch.int64), "h": torch.randn(3, dtype=torch.float16),
           "b": torch.randn(2, 3, dtype=torch.bfloat16), "flags": torch.tensor([True, False, True]),
           "empty": torch.zeros(0, 4), "d": torch.randn(4, dtype=torch.float64), "u": torch.arange(3, dtype=torch.uint8)}


def test_written_files_read_back_by_safetensors(tmp_path):
    write_safetensors(tmp_path / "a.safetensors", TENSORS, metadata={"format": "pt"})
    back = load_file(tmp_path / "a.safetensors")
    assert sorted(back) == sorted(TENSORS)
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in TENSORS.items())


def test_mapped_files_read_what_safetensors_wrote(tmp_path):
    save_file(TENSORS, tmp_path / "a.safetensors")
    mapped = map_safetensors(tmp_path / "a.safetensors")
    assert sorted(mapped) == sorted(TENSORS)
    assert all(torch.equal(mapped[k], v) and mapped[k].dtype == v.dtype for k, v in TENSORS.items())
    mapped["w"].mul_(0)                                # a private mapping: the file does not change
    assert torch.equal(load_file(tmp_path / "a.safetensors")["w"], TENSORS["w"])


@pytest.mark.parametrize("cut", [4, 20, -3])
def test_a_cut_file_is_a_value_error(tmp_path, cut):
    save_file(TENSORS, tmp_path / "a.safetensors")
    data = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "b.safetensors").write_bytes(data[:cut])
    with pytest.raises(ValueError):
        map_safetensors(tmp_path / "b.safetensors")


@pytest.mark.parametrize("entry", [{"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]},
                                   {"dtype": "F32", "shape": [-1, -2], "data_offsets": [0, 8]},
                                   {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]},
                                   {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}])
def test_a_malformed_entry_is_a_value_error(tmp_path, entry):
    import json
    header = json.dumps({"x": entry}).encode()
    (tmp_path / "a.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    with pytest.raises(ValueError):
        map_safetensors(tmp_path / "a.safetensors")


def test_an_unaligned_tensor_is_copied_not_mapped(tmp_path):
    import json
    header = json.dumps({"b": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                         "w": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}}).encode()
    header += b" " * (-len(header) % 8)        # data starts aligned; w sits one byte past it
    w = torch.tensor([1.5, -2.25])
    (tmp_path / "a.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\x07" +
                                             w.numpy().tobytes())
    mapped = map_safetensors(tmp_path / "a.safetensors")
    assert torch.equal(mapped["w"], w) and mapped["b"].item() == 7
    assert torch.equal(load_file(tmp_path / "a.safetensors")["w"], w)     # the package reads it the same
