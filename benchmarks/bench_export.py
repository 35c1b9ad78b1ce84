"""ONNX export of the demo model, FP and W8A8 recipes: ONNX Runtime (CPU) vs torch, export time, size.

    python benchmarks/bench_export.py [--model samples/models/mamba-byte-demo] [--samples 8]

Quantizes the model with each recipe (deploy mode, calibrated on samples/data/wiki_calib.txt),
exports FP32 and FP16 graphs, runs them in ONNX Runtime on `--samples` x 512 bytes of held-out
text and compares with the torch model they came from (the FP32 fake-quant model for QDQ graphs,
next to torch's own FP16-vs-FP32 error for FP16 graphs). For QDQ graphs it also compares the INT8
activation codes and the logits with the codes aligned (mq_deploy/export/aligned_codes.py): the
share of codes that differ (each by one, at a rounding tie) and what the graph's arithmetic alone
contributes. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from mq_deploy.api import load_for_eval, quantize_checkpoint
from mq_deploy.data.calibration import calibration_batches
from mq_deploy.export import export_onnx
from mq_deploy.samples import CALIB_TEXT, HELDOUT_TEXT, demo_model_dir, sample_text
from mq_deploy.export.aligned_codes import compare_qdq_graph
from mq_deploy.metrics import next_token_nll
from mq_deploy.deploy.onnxruntime_session import onnxruntime_session
from mq_deploy.export.aligned_codes import compare_onnx_with_torch, torch_logits


def torch_half_error(model, ids) -> float:
    """Relative max error of the torch model run in FP16 against its FP32 run (on a copy: casting
    the model itself to FP16 and back would round its weights)."""
    with torch.no_grad():
        ref = model(ids).double()
        half = copy.deepcopy(model).to(torch.float16)(ids).double()
    return ((half - ref).abs().max() / ref.abs().max()).item()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="FP model directory (default: the bundled demo model)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--recipes", nargs="+", default=["rtn", "quarot", "mambaquant"])
    args = p.parse_args(argv)
    model_dir = Path(args.model) if args.model else demo_model_dir()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mq-bench-export-") as tmp:
        sources = [("FP", model_dir)]
        for recipe in args.recipes:
            quantize_checkpoint(model_dir, f"{tmp}/{recipe}", recipe=recipe, calib=str(sample_text(CALIB_TEXT)),
                                progress=False)
            sources.append((f"{recipe} W8A8", Path(f"{tmp}/{recipe}")))
        for label, source in sources:
            model, tokenizer, _ = load_for_eval(source)
            ids, _ = calibration_batches(tokenizer, str(sample_text(HELDOUT_TEXT)), args.samples, 512)
            half_error = torch_half_error(model, ids)
            for precision in ("fp32", "fp16"):
                start = time.perf_counter()
                result = export_onnx(source, f"{tmp}/onnx/{label.replace(' ', '_')}_{precision}.onnx",
                                     precision=precision, decode=False)
                seconds = time.perf_counter() - start
                if result.manifest["quantization"] and label != "FP":
                    report = compare_qdq_graph(result.onnx_path, model, ids)
                else:
                    plain = compare_onnx_with_torch(result.onnx_path, model, ids)
                    ours = onnxruntime_session(result.onnx_path).run(["logits"], {"input_ids": ids.numpy()})[0]
                    report = {"plain": plain, "aligned": None, "codes": None,
                              "nll": {"onnx": next_token_nll(ours, ids.numpy()),
                                      "torch": next_token_nll(torch_logits(model, ids), ids.numpy())}}
                cmp = report
                rows.append((label, precision, cmp, half_error if precision == "fp16" else None, seconds,
                             result.bytes["prefill"]))
    fp32_size = rows[0][5]
    print(f"{model_dir}, {args.samples}x512 held-out tokens, ONNX Runtime CPU vs torch\n")
    print("| graph | precision | max abs | relative (max) | argmax agreement | codes differing | aligned relative "
          "| aligned argmax | NLL change | torch FP16 vs FP32 | export (s) | size (MB) | vs FP32 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, precision, r, half, seconds, size in rows:
        c, a, codes = r["plain"], r["aligned"], r["codes"]
        flips = "" if codes is None else f"{codes['fraction']:.2e}"
        aligned = ("", "") if a is None else (f"{a['relative']:.3g}", f"{100 * a['argmax_agreement']:.2f}%")
        nll_change = 100 * (r["nll"]["onnx"] / r["nll"]["torch"] - 1)
        print(f"| {label} | {precision} | {c['max_abs']:.3g} | {c['relative']:.3g} | "
              f"{100 * c['argmax_agreement']:.2f}% | {flips} | {aligned[0]} | {aligned[1]} | {nll_change:+.3f}% | "
              f"{'' if half is None else f'{half:.3g}'} | {seconds:.2f} | {size / 1e6:.2f} | {size / fp32_size:.2f} |")

if __name__ == "__main__":
    main()
