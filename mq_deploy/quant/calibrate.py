"""Gather activation statistics by running calibration batches through an FP model.

Observers attach to named modules (usually `ActivationPoint`s) and see each module's *output*: for
an identity point that is the activation itself, and for a point that holds an online rotation it
is the rotated activation, which is what a quantizer placed after the rotation will see.
Statistics are always taken with quantization off: the model must not contain fake-quant modules
(the official MambaQuant code gathers them with quantizers on, which corrupts every later step).
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from ..errors import MQDeployError
from ..progress import progress_bar
from .observers import Observer


def _assert_unquantized(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        if getattr(module, "is_quantizer", False):
            raise MQDeployError(f"calibration must run on the FP model, but {name} is a quantizer; "
                                "gather statistics before quantizing")


def _forward_model(model: torch.nn.Module, dtype: torch.dtype | None) -> torch.nn.Module:
    """The model the calibration forwards run: `model` itself, or a copy in `dtype` on the same
    device (the folds keep their float64 model)."""
    param = next(model.parameters())
    return model if dtype is None or dtype == param.dtype else copy.deepcopy(model).to(dtype)


@contextmanager
def _fast_scan(model: torch.nn.Module):
    """On a GPU, below float64, run the project's CUDA selective scan for the duration."""
    param = next(model.parameters())
    layers = getattr(getattr(model, "backbone", None), "layers", None)
    scan = gpu_scan() if param.device.type == "cuda" and param.dtype != torch.float64 and layers else None
    if scan is None:
        yield
        return
    previous = [layer.mixer.scan_impl for layer in layers]
    for layer in layers:
        layer.mixer.scan_impl = scan
    try:
        yield
    finally:
        for layer, impl in zip(layers, previous):
            layer.mixer.scan_impl = impl


def gpu_scan():
    """The project's CUDA selective scan (libmq_kernels, when built: $MQ_KERNELS_LIB or the source
    tree's build/), else None (the torch scan runs)."""
    from ..ops.cuda_kernels import MqKernels, cuda_selective_scan, find_kernels_library
    path = find_kernels_library()
    return cuda_selective_scan(MqKernels(path)) if path is not None else None


@torch.no_grad()
def collect_statistics(model: torch.nn.Module, batches: torch.Tensor, observers: dict[str, list[Observer]],
                       batch_size: int = 8, progress: bool = True, desc: str = "calibrating",
                       dtype: torch.dtype | None = None) -> dict:
    """Run `batches` ([n, L] token ids) through `model` (on its device; in `dtype` when given) in
    chunks of `batch_size` rows, feeding the output of each named module to its observers, which
    accumulate in float64. Returns `observers`."""
    _assert_unquantized(model)
    model = _forward_model(model, dtype)
    device = next(model.parameters()).device
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
        with _fast_scan(model), progress_bar(total=batches.numel(), desc=desc, unit="tok",
                                             disable=not progress) as bar:
            for start in range(0, batches.shape[0], batch_size):
                chunk = batches[start:start + batch_size]
                model(chunk.to(device))
                bar.update(chunk.numel())
    finally:
        for h in handles:
            h.remove()
    return observers
