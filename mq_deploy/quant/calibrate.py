"""Gather activation statistics by running calibration batches through an FP model.

Observers attach to named modules (usually `ActivationPoint`s) and see each module's *output*: for
an identity point that is the activation itself, and for a point that holds an online rotation it
is the rotated activation, which is what a quantizer placed after the rotation will see.
Statistics are always taken with quantization off: the model must not contain fake-quant modules
(the official MambaQuant code gathers them with quantizers on, which corrupts every later step).
"""

from __future__ import annotations

import torch

from ..errors import MQDeployError
from ..progress import progress_bar
from .observers import Observer


def _assert_unquantized(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        if getattr(module, "is_quantizer", False):
            raise MQDeployError(f"calibration must run on the FP model, but {name} is a quantizer; "
                                "gather statistics before quantizing")


@torch.no_grad()
def collect_statistics(model: torch.nn.Module, batches: torch.Tensor, observers: dict[str, list[Observer]],
                       batch_size: int = 8, progress: bool = True, desc: str = "calibrating") -> dict:
    """Run `batches` ([n, L] token ids) through `model` in chunks of `batch_size` rows, feeding the
    output of each named module to its observers. Returns `observers`."""
    _assert_unquantized(model)
    modules = dict(model.named_modules())
    unknown = sorted(set(observers) - set(modules))
    if unknown:
        raise MQDeployError(f"no module named {unknown[0]} in the model (recipe/model mismatch)")
    handles = []
    for name, obs_list in observers.items():
        def hook(module, args, output, obs_list=obs_list):
            for obs in obs_list:
                obs.update(output)
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with progress_bar(total=batches.numel(), desc=desc, unit="tok", disable=not progress) as bar:
            for start in range(0, batches.shape[0], batch_size):
                chunk = batches[start:start + batch_size]
                model(chunk)
                bar.update(chunk.numel())
    finally:
        for h in handles:
            h.remove()
    return observers
