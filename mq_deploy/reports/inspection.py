"""`mq-deploy inspect`: channel ranges before/after the transforms and per-layer quantization error,
as PNG plots and a short printed summary, on text (language models) or images (Vision Mamba)."""

from __future__ import annotations

from pathlib import Path

from ..atomic_dir import atomic_files
from ..data.calibration import calibration_batches, check_window_counts
from ..errors import MQDeployError
from ..models.mamba import MambaMixer
from ..models.checkpoints import is_mamba2_checkpoint, is_vision_checkpoint, load_checkpoint
from ..models.mamba2 import Mamba2Mixer
from ..models.vim import BiMambaMixer
from ..outputs import check_output_files, is_own_png
from ..plotting import pyplot
from ..quant.artifact import check_made_from, load_quantized, read_quant_meta
from ..quant.inspect import channel_statistics, inspected_points, layer_errors
from .plots import _outlier_ratio, plot_channel_ranges, plot_layer_errors


def plot_files(plot_dir, points, with_errors: bool) -> list[Path]:
    """The PNG files inspect writes into `plot_dir` for a model with these inspected points."""
    names = [f"channels_{p}.png" for p in sorted(points)] + (["layer_error.png"] if with_errors else [])
    return [Path(plot_dir) / n for n in names]


def _mixer_class(model_dir, vision: bool):
    if vision:
        return BiMambaMixer
    return Mamba2Mixer if is_mamba2_checkpoint(model_dir) else MambaMixer


def _check_inputs(model_dir, text, images) -> bool:
    """Whether `model_dir` is a Vision Mamba; text for a language model, images for a vision one."""
    vision = is_vision_checkpoint(model_dir)
    if vision and text is not None:
        raise MQDeployError(f"{model_dir} is a Vision Mamba: it takes images, not text; give --images (a folder, a "
                            ".npy of preprocessed images, or a bundled set such as digits:heldout or mnist:heldout)")
    if not vision and images is not None:
        raise MQDeployError(f"--images is for a Vision Mamba; {model_dir} is a language model: give --text")
    return vision


def _vision_batches(loaded, images, samples):
    """(images [n, 3, H, W], what they are) for a Vision Mamba; without --images a 32x32 model (the
    bundled ones' size) takes the held-out split of the set it was trained on, as validate does."""
    from ..data.image_sources import images_or_default, load_image_source
    from ..deploy.source import bundled_training_set
    size = loaded.config.img_size
    default = images_or_default(images, size, loaded.path, bundled_training_set(loaded.path))
    source = load_image_source(default, size, samples, option="--images")
    return source.images, f"{len(source.images)} images of {source.label}"


def inspect_model(model_dir, plot_dir, quantized_dir=None, text: str | None = None, samples: int | None = None,
                  seq_len: int = 512, progress: bool = True, force: bool = False, images=None) -> dict:
    """Channel statistics of `model_dir` (and of the transformed `quantized_dir`) on `text` (a
    language model: `samples` windows of `seq_len` tokens, default 8 of pydoc-topics) or `images` (a
    Vision Mamba: `samples` images, default 64), plotted into `plot_dir`."""
    vision = _check_inputs(model_dir, text, images)
    samples = samples if samples is not None else (64 if vision else 8)
    if vision:
        if samples < 1:
            raise MQDeployError(f"--samples must be positive, got {samples}")
    else:
        text = text if text is not None else "pydoc-topics"
        check_window_counts(samples, seq_len, "inspection", ("--samples", "--seq-len"))
    plot_dir = Path(plot_dir)
    pyplot()                    # matplotlib is there before the statistics passes, not after them
    points = inspected_points(_mixer_class(model_dir, vision))
    # the plots go into a directory that may hold other files: only our own PNGs may be replaced
    check_output_files(plot_files(plot_dir, points, quantized_dir is not None), "inspect plot", is_own_png, force,
                       inputs=[model_dir, quantized_dir, text if text is not None else images], option="--plot")
    loaded = load_checkpoint(model_dir)
    if quantized_dir is not None:
        check_made_from(quantized_dir, model_dir)
    if vision:
        batches, label = _vision_batches(loaded, images, samples)
    else:
        batches, text_label = calibration_batches(lambda: loaded.tokenizer, text, samples, seq_len,
                                                  loaded.config.vocab_size, option="--text")
        label = f"{int(batches.shape[0])}x{int(batches.shape[1])} tokens of {text_label}"
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
    result = {"data": label, "samples": int(batches.shape[0]), "files": [str(f) for f in files], "points": summary,
              "layer_errors": errors}
    if not vision:                  # the keys a language model's report always had
        result.update(text=text_label, seq_len=int(batches.shape[1]))
    return result
