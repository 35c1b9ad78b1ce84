"""Image classification with an mq-deploy Vision Mamba engine: image files in, the top classes out.

    # TensorRT (GPU): the plan from `mq-deploy build`, our plugin library loaded first
    python samples/python/classify.py --engine out/vim.plan --plugins build/libmq_plugins.so photo.jpg

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
def classify(graphs, images: np.ndarray, batch: int) -> np.ndarray:
    """Logits [n, classes] float32, `batch` images per run."""
    rows = []
    for i in range(0, len(images), batch):
        out = graphs.run("prefill", {"images": graphs.from_numpy(images[i:i + batch])})
        rows.append(graphs.to_numpy(out["logits"]))
    return np.concatenate(rows)


def top_classes(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, softmax probabilities) of the k most likely classes per row, most likely first
    (ties: the lower index first)."""
    order = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    shifted = logits - logits.max(-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    return order, np.take_along_axis(probabilities, order, -1)


def save_atomically(path: Path, write) -> None:
    """Write a file the user named whole or not at all: beside it under a temporary name, then renamed."""
    part = path.with_name(f".{path.name}.part")
    try:
        with open(part, "wb") as f:
            write(f)
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
    p.add_argument("--batch", type=int, default=32, help="images per run (default 32, at most the engine's "
                                                         "profile)")
    p.add_argument("--json", action="store_true", help="print the logits and top classes as JSON")
    p.add_argument("--save-inputs", type=Path, help="also write the preprocessed images, float32 [n, 3, H, W] .npy "
                                                   "(the input of samples/cpp's mq_trt_classify)")
    p.add_argument("--save-labels", type=Path, help="also write the class names, one per line (its --labels)")
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
        fail(f"{graph} is a language model, not an image classifier; run samples/python/generate.py on it")
    spec = manifest.get("preprocessing")
    if not spec:
        fail("the manifest records no image preprocessing (an export older than this sample, or a model that "
             "does not read RGB images); re-export with `mq-deploy export`")
    if args.top < 1 or args.batch < 1:
        fail("--top and --batch must be at least 1")
    files = image_files(args.images)
    try:
        import PIL  # noqa: F401
    except ImportError:
        fail("reading images needs Pillow: pip install pillow")
    names = model.get("id2label") or {}
    images = np.stack([preprocess(f, spec) for f in files])
    if args.save_inputs:
        save_atomically(args.save_inputs, lambda f: np.save(f, images))
    if args.save_labels:
        text = "".join(f"{names.get(str(i), str(i))}\n" for i in range(int(model["num_classes"])))
        save_atomically(args.save_labels, lambda f: f.write(text.encode("utf-8")))
    if graph is None:
        return 0
    graphs = (TensorRTGraphs({"prefill": graph}, plugin_library(args.plugins)) if args.engine
              else OnnxRuntimeGraphs({"prefill": graph}))
    batch = min(args.batch, graphs.max_batch("prefill", "images") or args.batch)
    start = time.perf_counter()
    logits = classify(graphs, images, batch)
    seconds = time.perf_counter() - start
    indices, probabilities = top_classes(logits, min(args.top, logits.shape[-1]))
    results = [{"image": str(f), "top": [{"class": int(c), "label": names.get(str(int(c)), str(int(c))),
                                          "probability": float(q)} for c, q in zip(row, qs)]}
               for f, row, qs in zip(files, indices, probabilities)]
    if args.json:
        print(json.dumps({"results": results, "logits": logits.tolist(), "images_per_s": len(files) / seconds}))
    else:
        for r in results:
            print(f"{r['image']}: " + ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"]))
        print(f"[{len(files)} images in batches of {batch}: {len(files) / seconds:,.1f} images/s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
