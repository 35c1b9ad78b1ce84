"""What the transforms and the rounding did, as numbers: per-channel ranges at each quantized
activation before and after the transforms, and the per-layer error of the quantized model."""

from __future__ import annotations

import torch

from .calibrate import collect_statistics
from .config import path_inputs
from .observers import Observer


def inspected_points(mixer) -> tuple[str, ...]:
    """A mixer's (class or instance) quantized-linear input points, in its order: Mamba-1's in_proj,
    x_proj, dt_proj and out_proj inputs; Mamba-2's in_proj and out_proj inputs."""
    return tuple(dict.fromkeys(path_inputs(mixer.LINEAR_INPUTS, mixer.PATHS).values()))


class ChannelStatsObserver(Observer):
    """Per-channel max |x| and variance."""

    name = "channel_stats"

    def __init__(self, where="?"):
        super().__init__(where)
        self.absmax, self.sum, self.sumsq = None, None, None

    def _update(self, rows):
        rows = rows.double()
        absmax, s, sq = rows.abs().amax(0), rows.sum(0), (rows * rows).sum(0)
        if self.absmax is None:
            self.absmax, self.sum, self.sumsq = absmax, s, sq
        else:
            self.absmax = torch.maximum(self.absmax, absmax)
            self.sum, self.sumsq = self.sum + s, self.sumsq + sq
        return s

    def variance(self) -> torch.Tensor:
        mean = self.sum / self.count
        return self.sumsq / self.count - mean * mean


def _quantizer_input_module(model, point: str):
    """The module whose output is what the quantizer at `point` sees (the rotation if there is one)."""
    module = model.get_submodule(point)
    if isinstance(module, torch.nn.Sequential):
        return f"{point}.0"
    return point


def channel_statistics(model, batches: torch.Tensor, batch_size: int = 8, progress=True, desc="channel statistics"):
    """{(layer, point): ChannelStatsObserver} at every quantized linear's input. `model` must be
    quantizer-free (an FP or transformed-FP model)."""
    observers = {}
    for i in range(len(model.backbone.layers)):
        for point in inspected_points(model.backbone.layers[i].mixer):
            name = _quantizer_input_module(model, f"backbone.layers.{i}.mixer.{point}")
            observers[name] = [ChannelStatsObserver(name)]
    collect_statistics(model, batches, observers, batch_size=batch_size, progress=progress, desc=desc)
    out = {}
    for name, (obs,) in observers.items():
        parts = name.split(".")
        out[(int(parts[2]), parts[4])] = obs
    return out


@torch.no_grad()
def layer_errors(reference, quantized, batches: torch.Tensor, batch_size: int = 8) -> list[float]:
    """Relative error ||h_q - h_ref|| / ||h_ref|| of the residual stream after each block, with
    `reference` the transformed FP model (same basis as `quantized`)."""
    captured = {"ref": [], "q": []}

    def hooks(model, key):
        return [layer.register_forward_hook(lambda m, a, out, key=key: captured[key].append(out[0].double()))
                for layer in model.backbone.layers]
    handles = hooks(reference, "ref") + hooks(quantized, "q")
    n_layers = len(reference.backbone.layers)
    num, den = torch.zeros(n_layers, dtype=torch.float64), torch.zeros(n_layers, dtype=torch.float64)
    try:
        for start in range(0, batches.shape[0], batch_size):
            chunk = batches[start:start + batch_size]
            captured["ref"].clear()
            captured["q"].clear()
            reference(chunk)
            quantized(chunk)
            for i, (r, q) in enumerate(zip(captured["ref"], captured["q"])):
                num[i] += (q - r).pow(2).sum()
                den[i] += r.pow(2).sum()
    finally:
        for h in handles:
            h.remove()
    return (num / den).sqrt().tolist()
