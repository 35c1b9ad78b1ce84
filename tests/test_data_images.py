"""Image folders, the ImageNet evaluation preprocessing and top-k accuracy (data/images.py), checked
against numpy arithmetic written here and Pillow's own resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mq_deploy.data.images import IMAGENET_MEAN, IMAGENET_STD, image_folder, load_images, preprocess, topk_accuracy
from mq_deploy.errors import MQDeployError

Image = pytest.importorskip("PIL.Image")


def normalized(pixels: np.ndarray) -> np.ndarray:
    return ((pixels / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1)


def test_a_256_image_is_only_cropped_and_normalized():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    out = preprocess(Image.fromarray(pixels))
    np.testing.assert_allclose(out.numpy(), normalized(pixels[16:240, 16:240].astype(np.float64)), atol=1e-6)


@pytest.mark.parametrize("width, height, resized, offset", [(512, 384, (341, 256), (58, 16)),
                                                            (300, 600, (256, 512), (16, 144))])
def test_shorter_side_to_256_bicubic_then_the_centre(width, height, resized, offset):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
    expected = np.asarray(image.resize(resized, Image.BICUBIC), dtype=np.float64)
    left, top = offset
    out = preprocess(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), normalized(expected[top:top + 224, left:left + 224]), atol=1e-5)


def test_topk_against_a_loop():
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(200, 10)), rng.integers(0, 10, 200)
    expected = {k: np.mean([labels[i] in np.argsort(-logits[i], kind="stable")[:k] for i in range(200)]) for k in (1, 5)}
    got = topk_accuracy(torch.from_numpy(logits), labels)
    assert got == pytest.approx({"top1": expected[1], "top5": expected[5]}, abs=1e-12)


def test_folders_labelled_flat_and_bad(tmp_path):
    for cls, n in (("zebra", 2), ("ant", 3)):
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (64, 48), (i * 40, 0, 0)).save(tmp_path / "set" / cls / f"{i}.png")
    (tmp_path / "set" / "ant" / "notes.txt").write_text("not an image")
    found = image_folder(tmp_path / "set")
    assert found.classes == ["ant", "zebra"] and found.labels == [0, 0, 0, 1, 1] and len(found.paths) == 5
    assert load_images(found.paths).shape == (5, 3, 224, 224)
    flat = image_folder(tmp_path / "set" / "ant")
    assert flat.labels is None and len(flat.paths) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(MQDeployError, match="holds no images"):
        image_folder(tmp_path / "empty")
    with pytest.raises(MQDeployError, match="is not a directory"):
        image_folder(tmp_path / "nope")
    (tmp_path / "set" / "ant" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(MQDeployError, match="cannot read the image .*broken.png"):
        load_images(image_folder(tmp_path / "set").paths)
