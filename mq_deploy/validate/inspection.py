"""`mq-deploy inspect`: channel ranges before/after the transforms and per-layer quantization error,
as PNG plots and a short printed summary."""

from __future__ import annotations

from pathlib import Path

from ..data.calibration import calibration_batches
from ..models.loading import load_model
from ..quant.artifact import load_quantized, read_quant_meta
from ..quant.inspect import channel_statistics, layer_errors
from .plots import _outlier_ratio, plot_channel_ranges, plot_layer_errors


def inspect_model(model_dir, plot_dir, quantized_dir=None, text: str = "pydoc-topics", samples: int = 8,
                  seq_len: int = 512, progress: bool = True) -> dict:
    loaded = load_model(model_dir)
    batches, label = calibration_batches(loaded.tokenizer, text, samples, seq_len)
    before = channel_statistics(loaded.model, batches, progress=progress, desc="FP channel statistics")
    after, errors, title = None, None, f"{Path(model_dir).name}"
    if quantized_dir is not None:
        meta = read_quant_meta(quantized_dir)
        transformed = load_quantized(quantized_dir, with_quantizers=False).model
        after = channel_statistics(transformed, batches, progress=progress, desc="transformed channel statistics")
        errors = layer_errors(transformed, load_quantized(quantized_dir).model, batches)
        cfg = meta["config"]
        title = f"{Path(model_dir).name}: {meta['recipe']} W{cfg['w_bits']}A{cfg['a_bits']} {cfg['mode']}"
    files = plot_channel_ranges(before, after, plot_dir, title=title)
    if errors is not None:
        files.append(plot_layer_errors({title: errors}, Path(plot_dir) / "layer_error.png", title=title))
    points = sorted({p for _, p in before})
    layers = sorted({i for i, _ in before})
    summary = {p: {"outlier_ratio_before": max(_outlier_ratio(before[(i, p)]) for i in layers),
                   "outlier_ratio_after": (max(_outlier_ratio(after[(i, p)]) for i in layers) if after else None)}
               for p in points}
    return {"text": label, "files": [str(f) for f in files], "points": summary, "layer_errors": errors}
