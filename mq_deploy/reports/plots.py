"""Plots people read at a glance: channel ranges before/after the transforms, error per layer.
matplotlib is optional (extra [plot]); it is imported here only."""

from __future__ import annotations

import torch

from ..plotting import figure_png, pyplot as _pyplot  # noqa: F401 (used below)


def _outlier_ratio(obs) -> float:
    """max over channels of max|x| divided by the median channel's: 1 = perfectly even channels."""
    absmax = obs.absmax
    return (absmax.max() / absmax.median().clamp(min=1e-30)).item()


def plot_channel_ranges(before: dict, after: dict | None, title: str = "") -> dict[str, bytes]:
    """One PNG per quantization point, {file name: PNG bytes}: per-layer outlier ratio (left) and, for
    the layer with the worst ratio before, every channel's variance sorted (right; the paper's
    variance-alignment picture). `before`/`after` come from `channel_statistics`."""
    plt = _pyplot()
    points = sorted({p for _, p in before})
    layers = sorted({i for i, _ in before})
    files = {}
    for point in points:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
        series = [("FP model", before, "tab:red")] + ([("after transforms", after, "tab:blue")] if after else [])
        for label, stats, color in series:
            left.plot(layers, [_outlier_ratio(stats[(i, point)]) for i in layers], "o-", color=color, label=label)
        left.set_yscale("log")
        left.set_xticks(layers)
        left.set_xlabel("layer")
        left.set_ylabel("max / median channel max|x|")
        left.set_title(f"{point}: channel outliers per layer")
        left.grid(alpha=0.3)
        left.legend()
        worst = max(layers, key=lambda i: _outlier_ratio(before[(i, point)]))
        for label, stats, color in series:
            var = torch.sort(stats[(worst, point)].variance(), descending=True).values
            right.plot(var.numpy(), color=color, label=label)
        right.set_yscale("log")
        right.set_xlabel("channel (sorted by variance)")
        right.set_ylabel("variance")
        right.set_title(f"layer {worst} {point}: channel variances")
        right.grid(alpha=0.3)
        right.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        files[f"channels_{point}.png"] = figure_png(plt, fig)
    return files


def plot_layer_errors(errors: dict[str, list[float]], title: str = "") -> bytes:
    """Relative residual-stream error after each block, one line per quantized model (PNG bytes)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, values in errors.items():
        ax.plot(range(len(values)), values, "o-", label=label)
    ax.set_yscale("log")
    ax.set_xticks(range(max(len(v) for v in errors.values())))
    ax.set_xlabel("layer")
    ax.set_ylabel("relative error of the block output")
    ax.set_title(title or "quantization error per layer")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(plt, fig)
