"""`mq-deploy demo`: the chain on the bundled tiny model, one summary table at the end.

Stages so far: evaluate the FP model on held-out text, quantize it with MambaQuant (W8A8, deploy
mode, calibrated on a slice of its training text), evaluate the quantized model on the same text,
export it to ONNX (QDQ + SelectiveScan nodes, checked) and compare ONNX Runtime with torch.
"""

from __future__ import annotations

import tempfile
import time

import importlib.util

from .api import evaluate_text, load_for_eval, quantize_checkpoint
from .data import PYDOC_TOPICS
from .data.calibration import calibration_batches
from .samples import CALIB_TEXT, HELDOUT_TEXT, demo_model_dir, sample_text


def _onnx_stack_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def run_demo(max_tokens: int | None = 131072) -> int:
    model_dir = demo_model_dir()
    heldout, calib = str(sample_text(HELDOUT_TEXT)), str(sample_text(CALIB_TEXT))
    start = time.perf_counter()
    print(f"mq-deploy demo: {model_dir}")
    rows = []
    for text, label in ((heldout, "Wikipedia articles held out from training"),
                        (PYDOC_TOPICS, "CPython pydoc_data.topics (never seen)")):
        print(f"[1/5] evaluating the FP model on {label} ...", flush=True)
        rows.append(("FP32", label, evaluate_text(model_dir, text, max_tokens=max_tokens or None)))
    with tempfile.TemporaryDirectory(prefix="mq-demo-") as tmp:
        print("[2/5] quantizing: mambaquant W8A8, deploy mode, 32x512 calibration tokens ...", flush=True)
        report = quantize_checkpoint(model_dir, f"{tmp}/quantized", recipe="mambaquant", calib=calib)
        print(f"      calibrated in {report['calibration']['seconds']:.1f} s", flush=True)
        print("[3/5] evaluating the quantized model (fake-quant) ...", flush=True)
        rows.append(("MambaQuant W8A8 (deploy)", rows[0][1],
                     evaluate_text(f"{tmp}/quantized", heldout, max_tokens=max_tokens or None)))
        ort_vs_torch = None
        if _onnx_stack_installed():
            from .export import export_onnx
            from .validate.onnxruntime_check import compare_onnx_with_torch
            print("[4/5] exporting to ONNX (FP32 graph, INT8 QDQ, SelectiveScan nodes) and checking it ...", flush=True)
            exported = export_onnx(f"{tmp}/quantized", f"{tmp}/onnx/model.onnx", precision="fp32", decode=False)
            print(f"      {exported.bytes['prefill'] / 1e6:.2f} MB in {exported.seconds:.1f} s, check passed", flush=True)
            print("[5/5] ONNX Runtime vs the torch fake-quant model on 4x512 held-out tokens ...", flush=True)
            model, tokenizer, _ = load_for_eval(f"{tmp}/quantized")
            ids, _ = calibration_batches(tokenizer, heldout, 4, 512)
            ort_vs_torch = compare_onnx_with_torch(exported.onnx_path, model, ids)
    fp_ppl = rows[0][2]["perplexity"]
    print()
    print("| model | held-out text | tokens scored | bits/byte | unigram bits/byte | perplexity | vs FP |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, label, r in rows:
        change = f"{100 * (r['perplexity'] / fp_ppl - 1):+.2f}%" if label == rows[0][1] else ""
        print(f"| {kind} | {label} | {r['scored_tokens']:,} | {r['bits_per_byte']:.3f} | "
              f"{r['unigram_bits_per_byte']:.3f} | {r['perplexity']:.3f} | {change} |")
    print(f"\nmodel: {rows[0][2]['parameters']:,} parameters, tokenizer {rows[0][2]['tokenizer']}; "
          "unigram = entropy of the text's own byte frequencies (the best any unigram model can do)")
    if ort_vs_torch is None:
        print("skipped: ONNX export and the ONNX Runtime comparison (onnx / onnxruntime not installed: "
              "pip install -e '.[onnx]')")
    else:
        print(f"ONNX Runtime vs torch (fake-quant), {ort_vs_torch['tokens']:,} tokens: max abs "
              f"{ort_vs_torch['max_abs']:.3g}, relative {ort_vs_torch['relative']:.3g}, min cosine "
              f"{ort_vs_torch['min_cosine']:.6f}, argmax agreement {100 * ort_vs_torch['argmax_agreement']:.2f}%")
    print("skipped: TensorRT engine build, validation and benchmark (not part of the chain yet)")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
