"""`mq-deploy demo`: the whole chain on the bundled tiny model, one summary table at the end.

FP evaluation -> MambaQuant W8A8 (deploy) -> quantized evaluation -> ONNX export (FP16 QDQ graph
with SelectiveScan nodes, decode graph, checked) -> validation of ONNX Runtime against torch ->
benchmark of ONNX Runtime against torch -> TensorRT engine build and its validation, where TensorRT,
a GPU and the plugin library are present; otherwise the table says which stage was skipped and why.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time

from .api import evaluate_text, quantize_checkpoint
from .data import PYDOC_TOPICS
from .errors import MQDeployError
from .samples import CALIB_TEXT, HELDOUT_TEXT, demo_model_dir, sample_text

STEPS = 8


class Summary:
    """Rows of the final table: stage, what, result, seconds."""

    def __init__(self):
        self.rows = []

    def add(self, stage: str, what: str, result: str, seconds: float | None = None):
        self.rows.append((stage, what, result, seconds))

    def skip(self, stage: str, why: str):
        self.rows.append((stage, "skipped", why, None))

    def print(self):
        print("\n| stage | what | result | s |\n|---|---|---|---:|")
        for stage, what, result, seconds in self.rows:
            print(f"| {stage} | {what} | {result} | {'' if seconds is None else f'{seconds:.1f}'} |")


def _step(i: int, text: str):
    print(f"[{i}/{STEPS}] {text} ...", flush=True)


def _missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _evaluate(summary: Summary, model_dir: str, max_tokens) -> float:
    heldout = str(sample_text(HELDOUT_TEXT))
    fp_ppl = None
    for text, label in ((heldout, "held-out Wikipedia"), (PYDOC_TOPICS, "pydoc_data.topics (never seen)")):
        _step(1, f"evaluating the FP model on {label}")
        r = evaluate_text(model_dir, text, max_tokens=max_tokens or None)
        fp_ppl = fp_ppl or r["perplexity"]
        summary.add("FP32 model", f"{label}, {r['scored_tokens']:,} bytes",
                    f"{r['bits_per_byte']:.3f} bits/byte (unigram {r['unigram_bits_per_byte']:.3f}), "
                    f"perplexity {r['perplexity']:.3f}", r["seconds"])
    return fp_ppl


def _quantize(summary: Summary, model_dir: str, out: str, fp_ppl: float, max_tokens):
    _step(2, "quantizing: mambaquant W8A8, deploy mode, 32x512 calibration bytes")
    report = quantize_checkpoint(model_dir, out, recipe="mambaquant", calib=str(sample_text(CALIB_TEXT)))
    summary.add("quantize", "mambaquant W8A8 deploy, 32×512 calibration bytes", f"artifact {out.rsplit('/', 1)[-1]}",
                report["calibration"]["seconds"])
    _step(3, "evaluating the quantized (fake-quant) model")
    r = evaluate_text(out, str(sample_text(HELDOUT_TEXT)), max_tokens=max_tokens or None)
    summary.add("quantized model", f"held-out Wikipedia, {r['scored_tokens']:,} bytes",
                f"perplexity {r['perplexity']:.3f} ({100 * (r['perplexity'] / fp_ppl - 1):+.2f}% vs FP32)",
                r["seconds"])


def _export(summary: Summary, artifact: str, onnx_path: str):
    from .deploy.naming import external_data_path
    from .export import export_onnx
    _step(4, "exporting to ONNX (FP16, INT8 QDQ, scan plugin nodes, decode graph) and checking it")
    start = time.perf_counter()
    result = export_onnx(artifact, onnx_path, precision="fp16")
    # the graphs share one weights file: count the files, not each graph's view of the weights
    files = [result.onnx_path, result.decode_path, external_data_path(result.onnx_path)]
    on_disk = sum(f.stat().st_size for f in files if f is not None and f.is_file())
    summary.add("export + check", "FP16 QDQ prefill + decode graphs, manifest.json",
                f"check ok; {on_disk / 1e6:.2f} MB on disk for both graphs (one graph's view of its weights: "
                f"{result.bytes['prefill'] / 1e6:.2f} MB)", time.perf_counter() - start)


def _validation_rows(summary: Summary, report: dict, subject: str):
    decode = report.get("decode", {})
    rows = [(r, "") for r in report["references"]] + [(r, ", decode steps") for r in decode.get("references", [])]
    for r, graph in rows:
        m = r["logits"]
        summary.add("validate", f"{subject} vs {r['reference']} ({r['kind']}{graph})",
                    f"{'pass' if r['passed'] else 'FAIL'}: argmax {100 * m['argmax_agreement']:.2f}%, "
                    f"relative {m['relative']:.2g}, perplexity {r['perplexity']['subject']:.3f} vs "
                    f"{r['perplexity']['reference']:.3f}", report["seconds"] / len(rows))


def _validate_and_bench(summary: Summary, onnx_path: str) -> bool:
    from .bench.benchmark import run_bench
    from .validate.validation import validate_export
    _step(5, "validating ONNX Runtime against the torch models (Polygraphy Comparator), 4x256 held-out bytes")
    report = validate_export(onnx_path, samples=4, seq_len=256, device="cpu")
    _validation_rows(summary, report, "ONNX Runtime")
    _step(6, "benchmarking ONNX Runtime against torch on the CPU")
    start = time.perf_counter()
    bench = run_bench(onnx_path, lengths=[512], iterations=5, warmup=1, decode_steps=32, device="cpu", progress=False)
    backends = list(dict.fromkeys(r["backend"] for r in bench["rows"]))
    seconds = (time.perf_counter() - start) / len(backends)      # the stage's time, shared like validate's
    for name in backends:
        pre, dec = (next(r for r in bench["rows"] if r["backend"] == name and r["phase"] == p)
                    for p in ("prefill", "decode"))
        summary.add("bench (CPU)", name, f"prefill 512: {pre['tokens_per_s']:,.0f} tokens/s; decode: "
                    f"{dec['median_ms']:.2f} ms/token ({dec['tokens_per_s']:,.0f} tokens/s)", seconds)
    return report["passed"]


def tensorrt_unavailable() -> str | None:
    """Why the engine stages cannot run here, or None."""
    import torch

    from .trt.plugin_loading import resolve_plugin_library
    from .trt.tensorrt_import import INSTALL_HINT
    if importlib.util.find_spec("tensorrt") is None:
        return INSTALL_HINT
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch (TensorRT engines need an NVIDIA GPU and driver)"
    try:
        resolve_plugin_library()
    except MQDeployError as e:
        return str(e)
    return None


def skip_without_onnx(summary: Summary) -> bool:
    """True, with every ONNX stage skipped in the table, when onnx, onnxruntime or polygraphy is missing."""
    missing = _missing("onnx", "onnxruntime", "polygraphy")
    if missing:
        why = f"{', '.join(missing)} not installed: pip install -e '.[onnx]'"
        for stage in ("export + check", "validate", "bench (CPU)", "TensorRT build"):
            summary.skip(stage, why)
    return bool(missing)


def tensorrt_stages(summary: Summary, onnx_path: str, engine_path: str, plans: str, validate_options: dict,
                    validation_rows, step) -> bool:
    """Build the engine(s) of `onnx_path` and validate them (validate_export(**validate_options)),
    or say in the table why not; False when a stage failed. step(k, text) announces stage k of 2."""
    why = tensorrt_unavailable()
    if why is not None:
        step(1, "TensorRT engine: skipped (the table says why)")
        step(2, "engine validation: skipped")
        summary.skip("TensorRT build", why)
        summary.skip("TensorRT validate", "no engine (see above)")
        return True
    from .trt.builder import build_engine
    from .validate.validation import validate_export
    step(1, f"building the TensorRT engine ({plans})")
    start = time.perf_counter()
    try:
        build_engine(onnx_path, engine_path)
    except MQDeployError as e:       # a broken TensorRT install or plugin library: report, keep the table
        summary.add("TensorRT build", plans, f"FAIL: {e}", time.perf_counter() - start)
        return False
    summary.add("TensorRT build", plans, engine_path, time.perf_counter() - start)
    step(2, "validating the engine against ONNX Runtime and torch")
    try:
        report = validate_export(onnx_path, engine=engine_path, **validate_options)
    except MQDeployError as e:
        summary.add("validate", "TensorRT", f"FAIL: {e}")
        return False
    validation_rows(summary, report, "TensorRT")
    return report["passed"]


def _tensorrt(summary: Summary, onnx_path: str, engine_path: str) -> bool:
    return tensorrt_stages(summary, onnx_path, engine_path, "prefill + decode plans", dict(samples=4, seq_len=256),
                           _validation_rows, lambda k, text: _step(6 + k, text))


FAMILY_LABELS = {"mamba": "Mamba", "mamba2": "Mamba-2"}


def run_demo(max_tokens: int | None = 131072, family: str = "mamba") -> int:
    """The chain on the bundled byte-level demo model of `family` ("mamba" or "mamba2")."""
    if max_tokens is not None and max_tokens != 0 and max_tokens < 512:
        raise MQDeployError(f"--max-tokens {max_tokens}: give 0 (all) or at least one 512-byte window")
    start = time.perf_counter()
    model_dir = str(demo_model_dir(family))
    print(f"mq-deploy demo{' --mamba2' if family == 'mamba2' else ''}: {model_dir}")
    summary = Summary()
    passed = True
    fp_ppl = _evaluate(summary, model_dir, max_tokens)
    with tempfile.TemporaryDirectory(prefix="mq-demo-") as tmp:
        _quantize(summary, model_dir, f"{tmp}/quantized", fp_ppl, max_tokens)
        if not skip_without_onnx(summary):
            onnx_path = f"{tmp}/onnx/model.onnx"
            _export(summary, f"{tmp}/quantized", onnx_path)
            passed = _validate_and_bench(summary, onnx_path)
            passed = _tensorrt(summary, onnx_path, f"{tmp}/onnx/model.plan") and passed
    summary.print()
    print(f"\nmodel: the bundled byte-level {FAMILY_LABELS[family]} ({model_dir}); unigram = entropy of the text's own byte "
          "frequencies (the best any unigram model can do)")
    print(f"demo {'passed' if passed else 'FAILED'} in {time.perf_counter() - start:.1f} s")
    return 0 if passed else 1
