"""samples/python/classify.py on ONNX Runtime: image files through the manifest's preprocessing
(the sample's own numpy/Pillow code) and the exported graph must give the torch model's logits on
the same files read by mq_deploy's loader (data/images.load_images), class names from id2label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

from mq_deploy.data.images import load_images  # noqa: E402
from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.models import MambaConfig, MambaLM  # noqa: E402
from mq_deploy.models.init import init_mamba_weights  # noqa: E402
from mq_deploy.models.loading import save_model  # noqa: E402
from mq_deploy.models.vim_loading import load_vim, save_vim  # noqa: E402
from test_models_vim import official_state, save_official  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "python" / "classify.py"
LABELS = {str(i): f"class-{i}" for i in range(10)}
# (width, height, mode, format): portrait and landscape; sizes whose resized longer side minus the
# crop is odd (39 - 32 = 7, 37 - 32 = 5), so the crop offset is a half that rounds to even (4, 2:
# round half up or floor would give 3 or 3); gray, palette and RGBA files; a JPEG
IMAGES = [(72, 78, "RGB", "png"), (74, 72, "RGB", "png"), (40, 40, "L", "png"), (300, 200, "P", "png"),
          (50, 90, "RGBA", "png"), (64, 48, "RGB", "jpeg"), (33, 35, "RGB", "bmp")]


def run_sample(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SAMPLE), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def write_images(folder: Path) -> list[Path]:
    """Structured pictures (gradients, a disc, noise) so that resizing and cropping matter."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = []
    for i, (w, h, mode, fmt) in enumerate(IMAGES):
        y, x = np.mgrid[0:h, 0:w]
        disc = ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) / 3) ** 2) * 120
        rgb = np.stack([x * 255 / w, y * 255 / h, disc + 60], -1) + rng.normal(0, 20, (h, w, 3))
        image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
        image = image.convert(mode) if mode != "P" else image.quantize(colors=16)
        files.append(folder / f"{i}.{fmt}")
        image.save(files[-1])
    return files


@pytest.fixture(scope="module")
def vim_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    state = official_state(d=64, depth=2, classes=10, patch=8, grid=4, seed=4)
    model = load_vim(save_official(state, root / "vim.pth"), img_size=32, stride=8).model.eval()
    model.config.extra["id2label"] = LABELS              # the Hugging Face convention for class names
    save_vim(model, root / "fp")
    exported = export_onnx(root / "fp", root / "onnx" / "model.onnx", precision="fp32")
    return {"root": root, "model": model, "onnx": exported.onnx_path, "files": write_images(root / "images")}


def test_sample_gives_the_torch_models_logits_on_image_files(vim_export):
    files = vim_export["files"]
    r = run_sample("--onnx", vim_export["onnx"], vim_export["root"] / "images", "--top", "3", "--batch", "3",
                   "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["image"] for x in out["results"]] == [str(f) for f in sorted(files)]
    with torch.no_grad():
        reference = vim_export["model"](load_images(sorted(files), 32)).numpy()
    logits = np.asarray(out["logits"])
    assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()
    probabilities = torch.softmax(torch.from_numpy(reference).double(), -1).numpy()
    for row, result in zip(reference, out["results"]):
        expected = np.argsort(-row, kind="stable")[:3]
        assert [t["class"] for t in result["top"]] == expected.tolist()
        assert [t["label"] for t in result["top"]] == [LABELS[str(c)] for c in expected]
    top = np.asarray([[t["probability"] for t in r_["top"]] for r_ in out["results"]])
    assert np.allclose(top, np.take_along_axis(probabilities, np.argsort(-reference, -1)[:, :3], -1), atol=1e-5)


def test_sample_prints_one_line_per_image(vim_export):
    r = run_sample("--onnx", vim_export["onnx"], *vim_export["files"][:2])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{vim_export['files'][0]}: class-")
    assert "images/s" in r.stderr


def test_sample_errors_are_one_line(vim_export, tmp_path):
    lm = init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=32, num_hidden_layers=1, state_size=8,
                                                time_step_rank=4, tokenizer="bytes")), seed=1)
    save_model(lm, tmp_path / "lm")
    lm_onnx = export_onnx(tmp_path / "lm", tmp_path / "lm_onnx" / "model.onnx", precision="fp32").onnx_path
    (tmp_path / "empty").mkdir()
    plan = tmp_path / "elsewhere" / "model.plan"           # a plan alone: no manifest beside it, no sidecar
    plan.parent.mkdir()
    plan.write_bytes(b"plan")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    onnx = vim_export["onnx"]
    cases = [(("--onnx", lm_onnx, vim_export["files"][0]), "is a language model's export, not an image classifier"),
             (("--onnx", onnx, tmp_path / "missing.png"), f"{tmp_path / 'missing.png'} does not exist"),
             (("--onnx", onnx, tmp_path / "empty"), f"{tmp_path / 'empty'} holds no images"),
             (("--onnx", onnx, tmp_path / "broken.png"), f"cannot read the image {tmp_path / 'broken.png'}"),
             (("--engine", onnx, vim_export["files"][0]), "the plugin library libmq_plugins.so was not given"),
             (("--engine", plan, vim_export["files"][0]), "no manifest.json beside"),
             (("--manifest", onnx.parent / "manifest.json", vim_export["files"][0], "--save-inputs", tmp_path / "a",
               "--save-labels", tmp_path / "a"), "name the same file"),
             (("--manifest", onnx.parent / "manifest.json", vim_export["files"][0], "--save-inputs",
               vim_export["files"][0]), "is one of the input images"),
             (("--manifest", onnx.parent / "manifest.json", vim_export["files"][0], "--save-inputs",
               tmp_path / "nowhere" / "x.npy"), "does not exist"),
             (("--onnx", onnx, "--top", "0", vim_export["files"][0]), "--top and --batch must be at least 1"),
             (("--manifest", onnx.parent / "manifest.json", vim_export["files"][0], "--save-labels",
               tmp_path / "notes.txt"), "notes.txt already exists; choose another file, or pass --force")]
    (tmp_path / "notes.txt").write_text("the user's own notes")
    for args, message in cases:
        r = run_sample(*args)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert (tmp_path / "notes.txt").read_text() == "the user's own notes"


def test_sample_saves_the_preprocessed_images_and_labels_for_the_cpp_sample(vim_export, tmp_path):
    """--save-inputs / --save-labels with only the manifest: what samples/cpp's mq_trt_classify reads."""
    files = sorted(vim_export["files"])
    manifest = vim_export["onnx"].parent / "manifest.json"
    r = run_sample("--manifest", manifest, vim_export["root"] / "images", "--save-inputs", tmp_path / "x.npy",
                   "--save-labels", tmp_path / "labels.txt")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{i}\t{f}" for i, f in enumerate(files)]      # which row is which image
    saved = np.load(tmp_path / "x.npy")
    assert saved.dtype == np.float32 and saved.flags.c_contiguous
    np.testing.assert_allclose(saved, load_images(files, 32).numpy(), atol=1e-6)
    assert (tmp_path / "labels.txt").read_text().splitlines() == [LABELS[str(i)] for i in range(10)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "x.npy"]      # no temporary left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.npy").stat().st_mode & 0o777 == 0o666 & ~umask          # as any file the user writes
    # only the labels: no image is needed in memory or on disk
    r = run_sample("--manifest", manifest, files[0], "--save-labels", tmp_path / "only.txt")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "only.txt").read_text() == (tmp_path / "labels.txt").read_text()
    (tmp_path / "only.txt").write_text("stale")
    r = run_sample("--manifest", manifest, files[0], "--save-labels", tmp_path / "only.txt", "--force")
    assert r.returncode == 0 and (tmp_path / "only.txt").read_text() == (tmp_path / "labels.txt").read_text()
    # a folder as the output: refused before any work, nothing left behind
    r = run_sample("--manifest", manifest, files[0], "--save-inputs", tmp_path)
    assert r.returncode == 1 and "is a folder" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "only.txt", "x.npy"]
    r = run_sample(vim_export["root"] / "images")
    assert r.returncode == 1 and "give --engine or --onnx" in r.stderr
    # classifying and saving at once, in batches that do not divide the images: the same file
    r = run_sample("--onnx", vim_export["onnx"], vim_export["root"] / "images", "--batch", "3", "--save-inputs",
                   tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), saved)


def load_sample():
    """samples/python/classify.py as a module (it imports engines.py from its own folder)."""
    import importlib.util

    sys.path.insert(0, str(SAMPLE.parent))
    spec = importlib.util.spec_from_file_location("classify_sample", SAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_short_last_batch_is_padded_to_the_engines_smallest_batch(vim_export):
    """An engine whose profile starts above the last batch's size: the sample pads that batch with
    zero images and drops their rows (ONNX Runtime stands in for the engine; the batch sizes it was
    given are recorded)."""
    sample = load_sample()
    graphs = sample.OnnxRuntimeGraphs({"prefill": vim_export["onnx"]})
    spec = json.loads((vim_export["onnx"].parent / "manifest.json").read_text())["preprocessing"]
    files = sorted(vim_export["files"])                        # 7 images
    whole, _ = sample.classify(graphs, files, spec, batch=len(files))
    seen, run = [], graphs.run
    graphs.run = lambda kind, feeds: (seen.append(len(feeds["images"])), run(kind, feeds))[1]
    padded, _ = sample.classify(graphs, files, spec, batch=4, min_batch=4)
    assert seen == [4, 4] and padded.shape == whole.shape
    np.testing.assert_allclose(padded, whole, rtol=1e-5, atol=1e-6)
