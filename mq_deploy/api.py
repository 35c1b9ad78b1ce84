"""The functions behind the CLI verbs, callable from Python with the same meaning."""

from __future__ import annotations

import time
from pathlib import Path

from .data.calibration import calibration_batches
from .errors import MQDeployError
from .eval import evaluate_model
from .eval.model_loading import load_for_eval
from .models.loading import load_model


def evaluate_text(model_dir, text: str, **kwargs) -> dict:
    model, tokenizer, label = load_for_eval(model_dir)
    return {"model": str(model_dir), "kind": label, **evaluate_model(model, tokenizer, text, **kwargs)}


def quantize_checkpoint(model_dir, out_dir, recipe: str = "mambaquant", calib: str = "pydoc-topics",
                        w_bits: int = 8, a_bits: int = 8, mode: str = "deploy", calib_samples: int = 32,
                        calib_seq_len: int = 512, eval_text: str | None = None, eval_max_tokens: int | None = None,
                        progress: bool = True, **quant_options) -> dict:
    """Quantize a checkpoint directory and write the artifact; returns the report (also in report.json)."""
    from .quant.artifact import save_quantized
    from .quant.config import QuantConfig
    from .quant.quantize import quantize

    config = QuantConfig(w_bits=w_bits, a_bits=a_bits, mode=mode, **quant_options)
    loaded = load_model(model_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MQDeployError(f"--out {out_dir} is a file; give a directory path")
    batches, calib_label = calibration_batches(loaded.tokenizer, calib, calib_samples, calib_seq_len)
    start = time.perf_counter()
    qm = quantize(loaded.model, recipe, batches, config, progress=progress)
    report = {"recipe": recipe, "config": config.to_dict(), "calibration": {
        "text": calib_label, "samples": int(batches.shape[0]), "seq_len": int(batches.shape[1]),
        "device": config.device, "forward_dtype": str(config.forward_dtype).replace("torch.", ""),
        "seconds": round(time.perf_counter() - start, 2), "stages": {k: round(v, 2) for k, v in qm.seconds.items()}}}
    if eval_text:
        fp = evaluate_model(loaded.model, loaded.tokenizer, eval_text, max_tokens=eval_max_tokens, progress=progress)
        q = evaluate_model(qm.model, loaded.tokenizer, eval_text, max_tokens=eval_max_tokens, progress=progress)
        report["eval"] = {"text": fp["text"], "tokens": fp["scored_tokens"], "fp_perplexity": fp["perplexity"],
                          "quantized_perplexity": q["perplexity"], "fp_bits_per_byte": fp["bits_per_byte"],
                          "quantized_bits_per_byte": q["bits_per_byte"],
                          "perplexity_change_percent": 100 * (q["perplexity"] / fp["perplexity"] - 1)}
    save_quantized(qm, out_dir, source_dir=model_dir, report=report)
    return report
