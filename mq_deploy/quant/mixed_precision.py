"""Mixed precision under a size budget: a 4-bit model whose most sensitive linears stay at 8 bits.

The user gives `effective_bits` (QuantConfig), the mean bits per quantized weight: 4.0 is every
linear at 4 bits, 8.0 every one at 8, 4.5 lets an eighth of the weights be 8-bit. Each linear's
sensitivity is what keeping it alone at 8 bits buys in the 4-bit model: the drop in the mean
KL(FP ‖ quantized) of the next-token distributions on calibration windows. The linears with the
most gain per weight are kept at 8 bits (greedy, by gain per extra bit), until the budget is spent.

Both models come from the same `quantize` run twice (the recipe's transforms, the activation ranges
and each linear's GPTQ rounding depend on neither the bits of other linears nor this choice: the
ranges and Hessians come from the transformed FP model), so a 4-bit model with 8-bit exceptions is
assembled from the two: exactly what quantize(config with keep_8bit=chosen) gives, which
tests/test_quant_mixed_precision.py holds. The 8-bit candidates wait in a temp file meanwhile.
"""

from __future__ import annotations

import dataclasses
import time

import torch
import torch.nn.functional as F

from ..errors import MQDeployError
from ..progress import progress_bar
from .spill import TensorSpill

SENSITIVITY_SAMPLES = 8          # calibration windows the sensitivity pass scores (the first ones)
UPGRADE_BITS = 8


def choose(gains: dict[str, float], sizes: dict[str, int], effective_bits: float, low_bits: int = 4) -> list[str]:
    """The linears to keep at UPGRADE_BITS so that the mean bits per weight stays within
    `effective_bits`: the most gain per weight first, skipping any that no longer fits; a linear
    whose 8 bits buy nothing (gain <= 0) is never kept."""
    extra = UPGRADE_BITS - low_bits
    allowance = (effective_bits - low_bits) * sum(sizes.values())      # extra bits the budget allows
    chosen = []
    for name in sorted(gains, key=lambda n: gains[n] / sizes[n], reverse=True):
        if gains[name] > 0 and extra * sizes[name] <= allowance + 1e-9:
            chosen.append(name)
            allowance -= extra * sizes[name]
    return sorted(chosen)


def effective_bits_of(sizes: dict[str, int], kept: list[str], low_bits: int = 4) -> float:
    total = sum(sizes.values())
    return (low_bits * total + (UPGRADE_BITS - low_bits) * sum(sizes[n] for n in kept)) / total


@torch.no_grad()
def _mean_kl(model, fp_model, windows: torch.Tensor, batch_size: int) -> float:
    total = 0.0
    for batch in windows.split(batch_size):
        reference = F.log_softmax(fp_model(batch).double(), dim=-1)
        quantized = F.log_softmax(model(batch).double(), dim=-1)
        total += F.kl_div(quantized, reference, log_target=True, reduction="sum").item()
    return total / (windows.shape[0] * windows.shape[1])


@torch.no_grad()
def sensitivities(fp_model, q4, names, upgraded, windows: torch.Tensor, batch_size: int,
                  progress: bool = True) -> tuple[float, dict[str, float]]:
    """KL(FP ‖ the 4-bit model) on `windows`, and for each linear of `names` how much lower that KL is
    with that linear alone at 8 bits (`upgraded(name)`: its 8-bit fake-quant weight)."""
    base = _mean_kl(q4.model, fp_model, windows, batch_size)
    gains = {}
    bar = progress_bar(total=len(names), desc="sensitivity (a pass per linear)", disable=not progress)
    for name in names:
        linear = q4.model.get_submodule(name)
        low = linear.weight.data
        linear.weight.data = upgraded(name).to(low)
        try:
            gains[name] = base - _mean_kl(q4.model, fp_model, windows, batch_size)
        finally:
            linear.weight.data = low
        bar.update(1)
    bar.close()
    return base, gains


def quantize_mixed(model, recipe: str, calib: torch.Tensor, config, progress: bool = True, range_pass: str = "auto"):
    """quantize() under config.effective_bits: a 4-bit QuantizedModel whose chosen linears are 8-bit,
    with config.keep_8bit naming them and `mixed_precision` recording the sensitivities."""
    from .quantize import quantize, quantized_linears
    start = time.perf_counter()
    every = dataclasses.replace(config, effective_bits=None)
    sizes = {name: model.get_submodule(name).weight.numel() for name in _four_bit_linears(model, every)}
    q8 = quantize(model, recipe, calib, dataclasses.replace(every, keep_8bit=tuple(sizes)), progress, range_pass)
    spill = TensorSpill()
    try:
        for name in sizes:              # the 8-bit weights: the model's (rounded) and the artifact's
            spill.put(name, q8.model.get_submodule(name).weight.detach())
            spill.put(f"{name}.stored", q8.transformed_weights[f"{name}.weight"])
        del q8
        q4 = quantize(model, recipe, calib, every, progress, range_pass)
        windows = calib[:SENSITIVITY_SAMPLES]
        base, gains = sensitivities(model, q4, list(sizes), spill.get, windows, config.batch_size, progress)
        chosen = choose(gains, sizes, config.effective_bits)
        final = dataclasses.replace(config, keep_8bit=tuple(chosen))
        for name in chosen:
            q4.model.get_submodule(name).weight.data.copy_(spill.get(name))
            q4.transformed_weights[f"{name}.weight"] = spill.get(f"{name}.stored")
            q4.weight_specs[name] = final.weight_spec(q4.model.get_submodule(name).in_features,
                                                      name.rpartition(".")[2], name)
    finally:
        spill.close()
    q4.config = final
    q4.mixed_precision = {
        "effective_bits_budget": config.effective_bits, "effective_bits": effective_bits_of(sizes, chosen),
        "kept_8bit": chosen, "sensitivity_windows": [int(windows.shape[0]), int(windows.shape[1])],
        "kl_all_4bit": base, "kl_gain_at_8bit": dict(sorted(gains.items(), key=lambda kv: -kv[1])),
        "seconds": time.perf_counter() - start}
    return q4


def _four_bit_linears(model, config) -> list[str]:
    from .quantize import quantized_linears
    plain = dataclasses.replace(config, keep_8bit=(), effective_bits=None)
    return [name for name in quantized_linears(model, plain)
            if name != "lm_head" and isinstance(model.get_submodule(name), torch.nn.Linear)]


def check_mixed_precision(model, config) -> None:
    """Before any work: each linear named to stay 8-bit is one the 4-bit config quantizes, and a
    budget has linears to spend itself on."""
    if not (config.keep_8bit or config.effective_bits is not None):
        return
    if config.effective_bits is not None and config.keep_8bit:
        raise MQDeployError("give either --effective-bits (the sensitivity pass chooses) or --keep-8bit (you "
                            "choose), not both")
    four_bit = _four_bit_linears(model, config)
    unknown = [n for n in config.keep_8bit if n not in four_bit]
    if unknown:
        example = four_bit[0] if four_bit else "backbone.layers.0.mixer.in_proj"
        raise MQDeployError(f"--keep-8bit {unknown[0]}: not a linear this model quantizes at 4 bits (names look "
                            f"like {example}; dt_proj, and a linear whose input size takes no INT4 block of 64 or "
                            "128, stay FP in deploy mode)")
    if not four_bit:
        raise MQDeployError("--effective-bits: this model has no linear quantized at 4 bits to choose from (in deploy "
                            "mode a linear's input size must take an INT4 block of 64 or 128)")
