"""`mq-deploy demo --vision`: the chain on the bundled Vision Mamba (a small Vim trained on
scikit-learn's digits, scripts/vision_demo/train.py), one summary table at the end.

FP top-1 on the 360 held-out digits -> MambaQuant W8A8 (deploy), calibrated on 128 training digits,
and its top-1 -> ONNX export (FP16 QDQ graph, a SelectiveScan node per direction, the backward ones
reversed) and check -> validation of ONNX Runtime against torch on the held-out digits -> benchmark
of ONNX Runtime against torch -> the TensorRT engine and its validation where TensorRT, a GPU and the
plugin library are present."""

from __future__ import annotations

import tempfile
import time

from .demo import Summary, skip_without_onnx, tensorrt_stages
from .errors import MQDeployError
from .samples import samples_dir

VISION_DEMO_MODEL = "vim-digits-demo"
CALIB_IMAGES = 128
VALIDATE_BATCH = 60          # images per validation run: 6 batches of the 360 held-out digits
STEPS = 7


def vision_demo_model_dir():
    path = samples_dir() / "models" / VISION_DEMO_MODEL
    if not path.is_dir():
        raise MQDeployError(f"the bundled vision demo model is not at {path}; install from a source checkout "
                            "(pip install -e .) or train it with scripts/vision_demo/train.py")
    return path


def _step(i: int, text: str):
    print(f"[{i}/{STEPS}] {text} ...", flush=True)


def _validation_rows(summary: Summary, report: dict, subject: str):
    for r in report["references"]:
        top1 = f", top-1 {100 * r['top1']['subject']:.2f}% vs {100 * r['top1']['reference']:.2f}%" if "top1" in r else ""
        summary.add("validate", f"{subject} vs {r['reference']} ({r['kind']})",
                    f"{'pass' if r['passed'] else 'FAIL'}: top-1 agreement {100 * r['logits']['argmax_agreement']:.2f}%"
                    f"{top1}, relative {r['logits']['relative']:.2g}", report["seconds"] / len(report["references"]))


def run_vision_demo() -> int:
    from .api import classify, quantize_checkpoint
    from .data.image_sources import load_image_source
    from .data.images import topk_accuracy
    from .models.vim_loading import load_vim
    start = time.perf_counter()
    model_dir = vision_demo_model_dir()
    print(f"mq-deploy demo --vision: {model_dir}")
    summary, passed = Summary(), True
    _step(1, "evaluating the FP model on the 360 held-out digits")
    t = time.perf_counter()
    model = load_vim(model_dir).model
    heldout = load_image_source("digits:heldout", model.config.img_size)
    fp_top1 = topk_accuracy(classify(model, heldout.images), heldout.labels, ks=(1,))["top1"]
    summary.add("FP32 model", f"held-out digits, {len(heldout.labels)} images", f"top-1 {100 * fp_top1:.2f}%",
                time.perf_counter() - t)
    with tempfile.TemporaryDirectory(prefix="mq-vision-demo-") as tmp:
        _step(2, f"quantizing: mambaquant W8A8, deploy mode, {CALIB_IMAGES} calibration digits; top-1 of the result")
        report = quantize_checkpoint(model_dir, f"{tmp}/quantized", recipe="mambaquant", calib="digits",
                                     calib_samples=CALIB_IMAGES, eval_text="digits:heldout", progress=False)
        e = report["eval"]
        summary.add("quantize", f"mambaquant W8A8 deploy, {CALIB_IMAGES} training digits", "artifact quantized",
                    report["calibration"]["seconds"])
        summary.add("quantized model", f"held-out digits, {e['count']} images",
                    f"top-1 {100 * e['quantized_top1']:.2f}% ({100 * (e['quantized_top1'] - e['fp_top1']):+.2f} points "
                    f"vs FP32), top-1 agreement with FP {100 * e['top1_agreement']:.2f}%", e["seconds"])
        if not skip_without_onnx(summary):
            onnx_path = f"{tmp}/onnx/model.onnx"
            passed = _export_validate_bench(summary, f"{tmp}/quantized", onnx_path)
            passed = _tensorrt(summary, onnx_path, f"{tmp}/onnx/model.plan") and passed
    summary.print()
    print(f"\nmodel: the bundled Vision Mamba ({model_dir}): 32x32 digits in 4x4 patches, bidirectional layers")
    print(f"demo {'passed' if passed else 'FAILED'} in {time.perf_counter() - start:.1f} s")
    return 0 if passed else 1


def _export_validate_bench(summary: Summary, artifact: str, onnx_path: str) -> bool:
    from .bench.benchmark import run_bench
    from .export import export_onnx
    from .validate.validation import validate_export
    _step(3, "exporting to ONNX (FP16, INT8 QDQ, SelectiveScan nodes, the backward ones reversed) and checking it")
    t = time.perf_counter()
    result = export_onnx(artifact, onnx_path, precision="fp16", batch_max=VALIDATE_BATCH)   # the engine's profile
    counts = result.manifest["graphs"]["prefill"]["linear_forms"]
    summary.add("export + check", "FP16 QDQ graph, manifest.json",
                f"check ok; linears {', '.join(f'{k}: {v}' for k, v in counts.items())}", time.perf_counter() - t)
    _step(4, "validating ONNX Runtime against the torch models (Polygraphy Comparator) on the held-out digits")
    report = validate_export(onnx_path, images="digits:heldout", batch=VALIDATE_BATCH, device="cpu")
    _validation_rows(summary, report, "ONNX Runtime")
    _step(5, "benchmarking ONNX Runtime against torch on the CPU, batches of 32 images")
    t = time.perf_counter()
    bench = run_bench(onnx_path, batch=32, iterations=5, warmup=1, device="cpu", progress=False)
    seconds = (time.perf_counter() - t) / len(bench["rows"])      # the stage's time, shared like validate's
    for row in bench["rows"]:
        summary.add("bench (CPU)", row["backend"], f"{row['median_ms']:.1f} ms a batch of 32, "
                                                   f"{row['tokens_per_s']:,.0f} images/s", seconds)
    return report["passed"]


def _tensorrt(summary: Summary, onnx_path: str, engine_path: str) -> bool:
    return tensorrt_stages(summary, onnx_path, engine_path, "plan", dict(batch=VALIDATE_BATCH), _validation_rows,
                           lambda k, text: _step(5 + k, text))
