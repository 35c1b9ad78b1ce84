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
