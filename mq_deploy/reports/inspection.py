"""`mq-deploy inspect`: channel ranges before/after the transforms and per-layer quantization error,
as PNG plots and a short printed summary."""

from __future__ import annotations

from pathlib import Path

from ..atomic_dir import atomic_files
from ..data.calibration import calibration_batches, check_window_counts
from ..errors import MQDeployError
from ..models.mamba import MambaMixer
from ..models.mamba2 import Mamba2Mixer
from ..models.checkpoints import is_mamba2_checkpoint, is_vision_checkpoint, load_checkpoint
from ..outputs import check_output_files, is_own_png
from ..quant.artifact import check_made_from, load_quantized, read_quant_meta
from ..quant.inspect import channel_statistics, inspected_points, layer_errors
from .plots import _outlier_ratio, plot_channel_ranges, plot_layer_errors




def plot_files(plot_dir, points, with_errors: bool) -> list[Path]:
    """The PNG files inspect writes into `plot_dir` for a model with these inspected points."""
    names = [f"channels_{p}.png" for p in sorted(points)] + (["layer_error.png"] if with_errors else [])
    return [Path(plot_dir) / n for n in names]


def inspect_model(model_dir, plot_dir, quantized_dir=None, text: str = "pydoc-topics", samples: int = 8,
                  seq_len: int = 512, progress: bool = True, force: bool = False) -> dict:
    check_window_counts(samples, seq_len, "inspection", ("--samples", "--seq-len"))
    plot_dir = Path(plot_dir)
    if is_vision_checkpoint(model_dir):
        raise MQDeployError(f"{model_dir} is a Vision Mamba: inspect reads text; its channel ranges and per-layer "
                            "errors are in benchmarks/bench_vision_recipes.py")
    points = inspected_points(Mamba2Mixer if is_mamba2_checkpoint(model_dir) else MambaMixer)
    # the plots go into a directory that may hold other files: only our own PNGs may be replaced
    check_output_files(plot_files(plot_dir, points, quantized_dir is not None), "inspect plot", is_own_png, force,
                       inputs=[model_dir, quantized_dir, text], option="--plot")
    loaded = load_checkpoint(model_dir)
    if quantized_dir is not None:
        check_made_from(quantized_dir, model_dir)
    batches, label = calibration_batches(lambda: loaded.tokenizer, text, samples, seq_len,
                                         loaded.config.vocab_size, option="--text")
    before = channel_statistics(loaded.model, batches, progress=progress, desc="FP channel statistics")
    after, errors, title = None, None, f"{Path(model_dir).name}"
    if quantized_dir is not None:
        meta = read_quant_meta(quantized_dir)
        transformed = load_quantized(quantized_dir, with_quantizers=False).model
        after = channel_statistics(transformed, batches, progress=progress, desc="transformed channel statistics")
        errors = layer_errors(transformed, load_quantized(quantized_dir).model, batches)
        cfg = meta["config"]
        title = f"{Path(model_dir).name}: {meta['recipe']} W{cfg['w_bits']}A{cfg['a_bits']} {cfg['mode']}"
    images = plot_channel_ranges(before, after, title=title)
    if errors is not None:
        images["layer_error.png"] = plot_layer_errors({title: errors}, title=title)
    files = plot_files(plot_dir, points, errors is not None)
    if sorted(images) != sorted(p.name for p in files):
        raise MQDeployError(f"internal: inspect made {sorted(images)}, expected {[p.name for p in files]}")
    with atomic_files() as stage:
        for path in files:
            stage.file(path).write_bytes(images[path.name])
    points = sorted({p for _, p in before})
    layers = sorted({i for i, _ in before})
    summary = {p: {"outlier_ratio_before": max(_outlier_ratio(before[(i, p)]) for i in layers),
                   "outlier_ratio_after": (max(_outlier_ratio(after[(i, p)]) for i in layers) if after else None)}
               for p in points}
    return {"text": label, "samples": int(batches.shape[0]), "seq_len": int(batches.shape[1]), "files": [str(f) for f in files], "points": summary, "layer_errors": errors}
