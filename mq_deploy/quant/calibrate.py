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
from ..heap import release_free_memory
from ..progress import progress_bar
from .observers import Observer


def _assert_unquantized(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        if getattr(module, "is_quantizer", False):
            raise MQDeployError(f"calibration must run on the FP model, but {name} is a quantizer; "
                                "gather statistics before quantizing")


def in_dtype(module: torch.nn.Module, dtype: torch.dtype | None) -> torch.nn.Module:
    """`module` itself, or a copy of it in `dtype` (one layer at a time: the folds keep their float64
    model, and the calibration never holds a second copy of the whole model)."""
    param = next(module.parameters())
    return module if dtype is None or dtype == param.dtype else copy.deepcopy(module).to(dtype)


@contextmanager
def _observing(root: torch.nn.Module, observers: dict[str, list[Observer]], prefix: str = "", scan=None):
    """Feed the output of each observed module under `root` (observer names are `prefix` + the name
    in `root`) to its observers; run the project's CUDA scan in root's mixers when `scan` is given."""
    handles, previous = [], {}
    for name, obs_list in observers.items():
        if name.startswith(prefix) and (prefix or not name.startswith("backbone.layers.")):
            def hook(module, args, output, obs_list=obs_list):
                for obs in obs_list:
                    obs.update(output)
            handles.append(root.get_submodule(name[len(prefix):]).register_forward_hook(hook))
    if scan is not None:
        from ..models.mamba import MambaMixer       # the CUDA scan is Mamba-1's (a Mamba-2 mixer keeps its own)
        previous = {m: m.scan_impl for m in root.modules() if isinstance(m, MambaMixer)}
        for mixer in previous:
            mixer.scan_impl = scan
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for mixer, impl in previous.items():
            mixer.scan_impl = impl


def gpu_scan():
    """The project's CUDA selective scan (libmq_kernels, when built: $MQ_KERNELS_LIB or the source
    tree's build/), else None (the torch scan runs)."""
    from ..ops.cuda_kernels import MqKernels, cuda_selective_scan, find_kernels_library
    path = find_kernels_library()
    return cuda_selective_scan(MqKernels(path)) if path is not None else None


def _stages_to_run(model: torch.nn.Module, names) -> tuple[int, bool]:
    """(how many layers, whether the head) a pass must run so every module in `names` sees its input:
    statistics of layer i need nothing past layer i, and the vocabulary-sized lm_head (the largest
    matmul of a small model) runs only when something at the head is observed."""
    depth, head = 0, False
    for name in names:
        parts = name.split(".")
        if parts[:2] == ["backbone", "layers"]:
            depth = max(depth, int(parts[2]) + 1)
        elif parts[:2] != ["backbone", "embeddings"]:
            head = True
    return (len(model.backbone.layers), True) if head else (depth, False)


@torch.no_grad()
def collect_statistics(model: torch.nn.Module, batches: torch.Tensor, observers: dict[str, list[Observer]],
                       batch_size: int = 8, progress: bool = True, desc: str = "calibrating",
                       dtype: torch.dtype | None = None, after_layer=None) -> dict:
    """Run `batches` ([n, L] token ids) through `model` (on its device; its layers in `dtype` when
    given) in chunks of `batch_size` rows, feeding the output of each named module to its observers,
    which accumulate in float64. Returns `observers`.

    The model runs a layer at a time over all chunks (model.embed, backbone.layers, model.head):
    each chunk meets the same operations in the same order as in `model(chunk)`, so every observer
    sees exactly what a whole-model forward would show it, and the pass stops after the last layer
    anything observes. Holding one hidden state per calibration token costs tokens x hidden_size
    floats (50 MB for mamba-130m at 32 x 512 tokens in float32). With `dtype`, each layer is copied
    into it just before it runs; the embedding and the head run in the model's own dtype.
    `after_layer(i)`, when given, runs once layer i has seen every chunk."""
    _assert_unquantized(model)
    device = next(model.parameters()).device
    unknown = sorted(set(observers) - {name for name, _ in model.named_modules()})
    if unknown:
        raise MQDeployError(f"no module named {unknown[0]} in the model (recipe/model mismatch)")
    depth, head = _stages_to_run(model, observers)
    forward_dtype = dtype or next(model.parameters()).dtype
    scan = gpu_scan() if device.type == "cuda" and forward_dtype != torch.float64 else None
    chunks = list(batches.split(batch_size))
    with progress_bar(total=(depth + head) * len(chunks), desc=desc, unit="batch", disable=not progress) as bar, \
            _observing(model, observers):
        hidden = [model.embed(chunk.to(device)).to(forward_dtype) for chunk in chunks]
        for i, layer in enumerate(model.backbone.layers[:depth]):
            run = in_dtype(layer, dtype)
            with _observing(run, observers, prefix=f"backbone.layers.{i}.", scan=scan):
                for j, h in enumerate(hidden):
                    hidden[j] = run(h)[0]
                    bar.update(1)
            if after_layer is not None:
                after_layer(i)
            release_free_memory()       # once a layer: once a chunk cost 20 % more time for 10 % less memory
        if head:
            for h in hidden:
                model.head(h)
                bar.update(1)
    return observers
