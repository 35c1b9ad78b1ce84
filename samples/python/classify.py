"""Image classification with an mq-deploy Vision Mamba engine: image files in, the top classes out.

    # TensorRT (GPU): the plan from `mq-deploy build`, our plugin library loaded first
    python samples/python/classify.py --engine out/vim.plan --plugins build/plugins/libmq_plugins.so photo.jpg

    # ONNX Runtime (CPU, no TensorRT): the same on the exported graph
    python samples/python/classify.py --onnx out/model.onnx photos/ --top 5

    # only the preprocessed images (and class names), for samples/cpp's mq_trt_classify
    python samples/python/classify.py --manifest out/manifest.json photos/ --save-inputs images.npy \
        --save-labels labels.txt

Everything comes from the files and their documented contract (docs/export.md), not from
mq_deploy's code, as in an application that ships the plan alone: the preprocessing from the
export's manifest.json (`preprocessing`: resize, centre crop, scale, mean and std; the one
definition `mq-deploy eval` and `validate` use), class names from the model's `id2label` when its
config has one, the input and output names `images` and `logits`. Preprocessing needs Pillow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engines import OnnxRuntimeGraphs, TensorRTGraphs, fail, plugin_library, read_export

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# ---------------------------------------------------------------------------------------- preprocessing
def preprocess(path: Path, spec: dict) -> np.ndarray:
    """One image file -> [3, crop, crop] float32, as the manifest's `preprocessing` says."""
    from PIL import Image
    if spec.get("interpolation") != "bicubic" or spec.get("layout") != "NCHW":
        fail(f"this sample implements bicubic NCHW preprocessing, the manifest asks for {spec.get('interpolation')} "
             f"{spec.get('layout')}; re-export with this version of mq-deploy")
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError) as e:
        fail(f"cannot read the image {path} ({e})")
    short, crop = spec["resize_shorter_side"], spec["center_crop"]
    w, h = image.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    image = image.resize(size, Image.BICUBIC)
    left, top = round((size[0] - crop) / 2), round((size[1] - crop) / 2)   # half to even, as the manifest says
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) / np.float32(spec["divide_by"])
    mean, std = np.asarray(spec["mean"], np.float32), np.asarray(spec["std"], np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)


def image_files(args: list[Path]) -> list[Path]:
    """The files named, and the images inside the folders named (sorted, recursively)."""
    files = []
    for arg in args:
        if arg.is_dir():
            found = sorted(f for f in arg.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                fail(f"{arg} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif arg.is_file():
            files.append(arg)
        else:
            fail(f"{arg} does not exist")
    return files


# ---------------------------------------------------------------------------------------- classification
def preprocessed_batches(files: list[Path], spec: dict, batch: int):
    """[≤ batch, 3, H, W] float32 arrays in file order: memory holds one batch at a time."""
    for first in range(0, len(files), batch):
        yield np.stack([preprocess(f, spec) for f in files[first:first + batch]])


def classify(graphs, files: list[Path], spec: dict, batch: int, min_batch: int = 1, on_batch=None):
    """(logits [n, classes] float32, seconds spent in the graph): the images preprocessed `batch` at
    a time; a last batch shorter than the engine's smallest is padded with zero images, whose rows
    are dropped. on_batch(images) sees each preprocessed batch, in order."""
    rows, seconds = [], 0.0
    for images in preprocessed_batches(files, spec, batch):
        if on_batch is not None:
            on_batch(images)
        count = len(images)
        if count < min_batch:
            images = np.concatenate([images, np.zeros((min_batch - count, *images.shape[1:]), np.float32)])
        start = time.perf_counter()
        out = graphs.run("prefill", {"images": graphs.from_numpy(images)})
        rows.append(graphs.to_numpy(out["logits"])[:count])
        seconds += time.perf_counter() - start
    return np.concatenate(rows), seconds


def top_classes(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, softmax probabilities) of the k most likely classes per row, most likely first:
    ties go to the lower index, a NaN logit ranks last with probability NaN and the others' softmax
    leaves it out (the C++ sample's top_k_softmax, the same rule)."""
    nan = np.isnan(logits)
    finite = np.where(nan, -np.inf, logits).astype(np.float64)
    order = np.lexsort((-finite, nan), axis=-1)[:, :k]          # NaN last, then by value, stable
    e = np.exp(finite - finite.max(-1, keepdims=True))
    probabilities = np.where(nan, np.nan, e / e.sum(-1, keepdims=True))
    return order, np.take_along_axis(probabilities, order, -1)


# ---------------------------------------------------------------------------------------- files we write
def temporary_beside(path: Path) -> Path:
    """A new, unique file in `path`'s folder, renamed onto `path` once whole (os.replace)."""
    if not path.parent.is_dir():
        fail(f"cannot write {path}: the folder {path.parent} does not exist")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)          # mkstemp's 0600 would outlive the rename
    return Path(name)


def check_outputs(outputs: list[Path], files: list[Path], force: bool = False) -> None:
    """Refuse, before any work, output paths that name the same file, a folder, an input image, or
    (without --force) a file that already exists."""
    resolved = [o.resolve() for o in outputs]
    if len(set(resolved)) != len(resolved):
        fail("--save-inputs and --save-labels name the same file; give each its own")
    inputs = {f.resolve() for f in files}
    for output, target in zip(outputs, resolved):
        if target in inputs:
            fail(f"{output} is one of the input images; choose another file to write")
        if target.is_dir():
            fail(f"{output} is a folder; give a file name to write")
        if target.exists() and not force:
            fail(f"{output} already exists; choose another file, or pass --force to replace it")


class SavedInputs:
    """--save-inputs: the preprocessed images appended batch by batch to a .npy (float32 [n, 3, H, W])
    under a temporary name, renamed onto the path the user gave when every batch is in; on any
    failure the temporary file goes and the error is one line."""

    def __init__(self, path: Path, n: int, spec: dict):
        self.path, self.part = path, temporary_beside(path)
        crop = int(spec["center_crop"])
        try:
            self.file = open(self.part, "wb")
            np.lib.format.write_array_header_1_0(self.file, {"descr": "<f4", "fortran_order": False,
                                                             "shape": (n, 3, crop, crop)})
        except OSError as e:
            self.discard()
            fail(f"cannot write {path} ({e})")

    def __call__(self, images: np.ndarray) -> None:
        """The next batch of rows (batches come in file order)."""
        try:
            self.file.write(np.ascontiguousarray(images, dtype="<f4").tobytes())
        except OSError as e:
            self.discard()
            fail(f"cannot write {self.path} ({e})")

    def commit(self) -> None:
        try:
            self.file.close()
            os.replace(self.part, self.path)
        except OSError as e:
            self.discard()
            fail(f"cannot write {self.path} ({e})")

    def discard(self) -> None:
        if getattr(self, "file", None) is not None:
            self.file.close()
        self.part.unlink(missing_ok=True)


def write_labels(path: Path, text: str) -> None:
    part = temporary_beside(path)
    try:
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)
    except OSError as e:
        part.unlink(missing_ok=True)
        fail(f"cannot write {path} ({e})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--engine", type=Path, help="the plan from `mq-deploy build`")
    which.add_argument("--onnx", type=Path, help="the graph from `mq-deploy export`")
    p.add_argument("images", type=Path, nargs="+", help="image files or folders of images")
    p.add_argument("--manifest", type=Path, help="manifest.json of the export (default: beside the graph, or "
                                                 "named by the engine's sidecar)")
    p.add_argument("--plugins", type=Path, help="libmq_plugins.so (default: $MQ_PLUGIN_PATH)")
    p.add_argument("--top", type=int, default=5, help="classes to print per image (default 5)")
    p.add_argument("--batch", type=int, default=32, help="images per run (default 32; kept within the engine's "
                                                         "profile)")
    p.add_argument("--json", action="store_true", help="print the logits and top classes as JSON")
    p.add_argument("--save-inputs", type=Path, help="also write the preprocessed images, float32 [n, 3, H, W] .npy "
                                                   "(the input of samples/cpp's mq_trt_classify), rows in the "
                                                   "order printed")
    p.add_argument("--save-labels", type=Path, help="also write the class names, one per line (its --labels)")
    p.add_argument("--force", action="store_true", help="replace --save-inputs / --save-labels files that exist")
    args = p.parse_args(argv)
    graph = args.engine or args.onnx
    if graph is None and not (args.manifest and (args.save_inputs or args.save_labels)):
        fail("give --engine or --onnx to classify, or --manifest with --save-inputs / --save-labels to only "
             "prepare the images")
    if graph is None:
        if not args.manifest.is_file():
            fail(f"no manifest at {args.manifest}; pass the manifest.json `mq-deploy export` wrote")
        manifest = json.loads(args.manifest.read_text())
    else:
        manifest, _, _ = read_export(graph, args.manifest, engine=args.engine is not None)
    model = manifest["model"]
    if model.get("model_type") != "vim":
        fail(f"{graph or args.manifest} is a language model's export, not an image classifier; run "
             "samples/python/generate.py on it")
    spec = manifest.get("preprocessing")
    if not spec:
        fail("the manifest records no image preprocessing (an export older than this sample, or a model that "
             "does not read RGB images); re-export with `mq-deploy export`")
    if args.top < 1 or args.batch < 1:
        fail("--top and --batch must be at least 1")
    files = image_files(args.images)
    check_outputs([o for o in (args.save_inputs, args.save_labels) if o], files, args.force)
    try:
        import PIL  # noqa: F401
    except ImportError:
        fail("reading images needs Pillow: pip install pillow")
    names = model.get("id2label") or {}
    graphs = None
    if graph is not None:
        graphs = (TensorRTGraphs({"prefill": graph}, plugin_library(args.plugins)) if args.engine
                  else OnnxRuntimeGraphs({"prefill": graph}))
    low, high = graphs.batch_range("prefill", "images") if graphs else (1, None)
    batch = max(low, min(args.batch, high or args.batch))
    saved = None
    try:
        saved = SavedInputs(args.save_inputs, len(files), spec) if args.save_inputs else None
        if graphs is None and saved is not None:
            for images in preprocessed_batches(files, spec, batch):
                saved(images)
        elif graphs is not None:
            logits, seconds = classify(graphs, files, spec, batch, low, on_batch=saved)
    except BaseException:
        if saved is not None:
            saved.discard()
        raise
    if saved is not None:
        saved.commit()
    if args.save_labels:
        write_labels(args.save_labels, "".join(f"{names.get(str(i), str(i))}\n"
                                               for i in range(int(model["num_classes"]))))
    if graphs is None:
        for i, f in enumerate(files):                  # which row of the .npy is which image
            print(f"{i}\t{f}")
        return 0
    indices, probabilities = top_classes(logits, min(args.top, logits.shape[-1]))
    results = [{"image": str(f), "top": [{"class": int(c), "label": names.get(str(int(c)), str(int(c))),
                                          "probability": float(q)} for c, q in zip(row, qs)]}
               for f, row, qs in zip(files, indices, probabilities)]
    if args.json:
        print(json.dumps({"results": results, "logits": logits.tolist(), "images_per_s": len(files) / seconds}))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"]))
        print(f"[{len(files)} images in batches of {batch}: {len(files) / seconds:,.1f} images/s in the graph]",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
