"""Mixed precision under a size budget: a 4-bit model whose most sensitive linears stay at higher
precision.

A kept linear is FP16 in deploy mode: TensorRT has no INT8 weight-only GEMM, it runs INT8 weights
with FP16 activations as FP16 weights (docs/export.md), so 8 bits would cost 16 in the engine and buy
less accuracy. In paper mode (fake-quant evaluation) a kept linear is 8 bits per output channel.

The user gives `effective_bits` (QuantConfig), the mean bits per weight of the 4-bit linears: 4.0
keeps none; in deploy mode 4.5 lets 1/24 of those weights stay FP16 ((4.5 - 4) / (16 - 4)). Each
linear's sensitivity is what keeping it alone buys in the 4-bit model: the drop in the mean
KL(FP ‖ quantized) of the next-token distributions on the first calibration windows. The linears
with the most gain per weight are kept (greedy, by gain per extra bit) until the budget is spent; a
linear whose keeping makes the KL worse never is.

Both models come from the same `quantize` run twice: the recipe's transforms, the activation ranges
and each linear's GPTQ rounding depend neither on the other linears' precision nor on this choice
(ranges and Hessians come from the transformed FP model), so the 4-bit model with exceptions is
assembled from the two, exactly what quantize(config with keep_linears=chosen) gives
(tests/test_quant_mixed_precision.py). The run with every candidate kept parks those weights (as the
artifact stores them) in a temp file; the two runs' other tensors are compared, so a run that was
not reproducible (a nondeterministic GPU eigh, say) is an error, not a silent mix.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from ..errors import MQDeployError
from ..eval.fidelity import fp_logprobs, kl_per_position
from ..progress import progress_bar
from .quantizer import quantize_tensor
from .spill import TensorSpill, spill_fits

SENSITIVITY_SAMPLES = 8          # calibration windows the sensitivity pass scores (the first ones)
SENSITIVITY_BATCH = 2            # windows per forward: [2, L, vocab] float64 log-probs, 0.4 GB each at
                                 # 512 tokens and mamba's 50280 vocabulary
LOW_BITS = 4


def choose(gains: dict[str, float], sizes: dict[str, int], effective_bits: float, kept_bits: int) -> list[str]:
    """The linears to keep at `kept_bits` so that the mean bits per weight stays within
    `effective_bits`: the most gain per weight first, skipping any that no longer fits; a linear
    whose keeping buys nothing (gain <= 0) is never kept."""
    extra = kept_bits - LOW_BITS
    allowance = (effective_bits - LOW_BITS) * sum(sizes.values())      # extra bits the budget allows
    chosen = []
    for name in sorted(gains, key=lambda n: gains[n] / sizes[n], reverse=True):
        if gains[name] > 0 and extra * sizes[name] <= allowance + 1e-9:
            chosen.append(name)
            allowance -= extra * sizes[name]
    return sorted(chosen)


def effective_bits_of(sizes: dict[str, int], kept: list[str], kept_bits: int) -> float:
    total = sum(sizes.values())
    return (LOW_BITS * total + (kept_bits - LOW_BITS) * sum(sizes[n] for n in kept)) / total


def _kl_sum(reference_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Σ over tokens of KL(reference ‖ model), in float64 (a KL of 1e-9 per token, a small model's
    4-bit error, is below float32's resolution of a log-probability)."""
    return float(kl_per_position(fp_logprobs(reference_logits), logits).sum())


@torch.no_grad()
def sensitivities(fp_model, q4, kept_weight, names: list[str], windows: torch.Tensor,
                  progress: bool = True) -> tuple[float, dict[str, float]]:
    """Mean KL(FP ‖ the 4-bit model) per token on `windows`, and for each linear of `names` how much
    lower it is with that linear alone kept (`kept_weight(name)`: its kept weight). The FP logits of
    a batch are computed once; then one forward per linear."""
    base, kl = 0.0, dict.fromkeys(names, 0.0)
    bar = progress_bar(total=len(names) * -(-windows.shape[0] // SENSITIVITY_BATCH),
                       desc="sensitivity (a forward per linear)", disable=not progress)
    for batch in windows.split(SENSITIVITY_BATCH):
        reference = fp_model(batch)
        base += _kl_sum(reference, q4.model(batch))
        for name in names:
            linear = q4.model.get_submodule(name)
            low = linear.weight.data
            linear.weight.data = kept_weight(name).to(low)
            try:
                kl[name] += _kl_sum(reference, q4.model(batch))
            finally:
                linear.weight.data = low
            bar.update(1)
    bar.close()
    tokens = windows.shape[0] * windows.shape[1]
    return base / tokens, {name: (base - total) / tokens for name, total in kl.items()}


def _fingerprints(qm, skip: set[str]) -> dict[str, tuple[float, float]]:
    """(Σx, Σ|x|) in float64 of every tensor of the model but `skip`: equal runs give equal prints."""
    return {k: (float(v.double().sum()), float(v.double().abs().sum())) for k, v in qm.model.state_dict().items()
            if k not in skip}


def quantize_mixed(model, recipe: str, calib: torch.Tensor, config, progress: bool = True, range_pass: str = "auto"):
    """quantize() under config.effective_bits: a 4-bit QuantizedModel whose chosen linears are kept
    (config.keep_linears names them), with `mixed_precision` recording the sensitivities."""
    from .quantize import quantize
    start = time.perf_counter()
    plain = dataclasses.replace(config, effective_bits=None)
    sizes = {name: model.get_submodule(name).weight.numel() for name in four_bit_linears(model, plain)}
    kept_all = quantize(model, recipe, calib, dataclasses.replace(plain, keep_linears=tuple(sizes)), progress,
                        range_pass)
    spill = TensorSpill()
    try:
        for name in sizes:              # the kept weights as the artifact stores them (before any rounding)
            spill.put(name, kept_all.transformed_weights[f"{name}.weight"])
        prints = _fingerprints(kept_all, {f"{n}.weight" for n in sizes})
        del kept_all
        q4 = quantize(model, recipe, calib, plain, progress, range_pass)
        if _fingerprints(q4, {f"{n}.weight" for n in sizes}) != prints:
            raise MQDeployError("the two quantize runs of --effective-bits gave different transforms (the recipe is not "
                                "reproducible on this device); run it with --device cpu, or name the linears with "
                                "--keep-linears")

        def kept_weight(name):          # what the model computes with: FP in deploy mode, 8-bit RTN in paper
            stored = spill.get(name)
            spec = dataclasses.replace(plain, keep_linears=(name,)).weight_spec(
                stored.shape[1], name.rpartition(".")[2], name)
            return stored if spec is None else quantize_tensor(stored, spec).dequantize(stored.dtype)

        windows = calib[:SENSITIVITY_SAMPLES]
        base, gains = sensitivities(model, q4, kept_weight, list(sizes), windows, progress)
        chosen = choose(gains, sizes, config.effective_bits, config.kept_bits)
        final = dataclasses.replace(plain, keep_linears=tuple(chosen))
        for name in chosen:
            linear = q4.model.get_submodule(name)
            linear.weight.data.copy_(kept_weight(name))
            q4.transformed_weights[f"{name}.weight"] = spill.get(name)
            spec = final.weight_spec(linear.in_features, name.rpartition(".")[2], name)
            if spec is None:
                q4.weight_specs.pop(name)
            else:
                q4.weight_specs[name] = spec
    finally:
        spill.close()
    q4.config = final
    q4.mixed_precision = {
        "effective_bits_budget": config.effective_bits, "effective_bits": effective_bits_of(sizes, chosen, config.kept_bits),
        "kept_as": "fp16" if config.kept_bits == 16 else "int8", "kept": chosen,
        "sensitivity_windows": [int(windows.shape[0]), int(windows.shape[1])],
        "kl_all_4bit": base, "kl_gain_when_kept": dict(sorted(gains.items(), key=lambda kv: -kv[1])),
        "seconds": time.perf_counter() - start}
    return q4


def four_bit_linears(model, config) -> list[str]:
    """The nn.Linear modules (head aside) the config quantizes to 4 bits, with no exceptions."""
    from .quantize import quantized_linears
    plain = dataclasses.replace(config, keep_linears=(), effective_bits=None)
    return [name for name in quantized_linears(model, plain)
            if name != "lm_head" and isinstance(model.get_submodule(name), torch.nn.Linear)]


def check_mixed_precision(model, config) -> None:
    """Before any work: each linear named to keep is one the 4-bit config quantizes, and a budget has
    linears to spend itself on and room in the temp folder."""
    if not (config.keep_linears or config.effective_bits is not None):
        return
    if config.effective_bits is not None and config.keep_linears:
        raise MQDeployError("give either --effective-bits (the sensitivity pass chooses) or --keep-linears (you "
                            "choose), not both")
    four_bit = four_bit_linears(model, config)
    unknown = [n for n in config.keep_linears if n not in four_bit]
    if unknown:
        example = four_bit[0] if four_bit else "backbone.layers.0.mixer.in_proj"
        raise MQDeployError(f"--keep-linears {unknown[0]}: not a linear this model quantizes at 4 bits (names look "
                            f"like {example}; dt_proj, and a linear whose input size takes no INT4 block of 64 or "
                            "128, stay FP in deploy mode)")
    if config.effective_bits is None:
        return
    if not four_bit:
        raise MQDeployError("--effective-bits: this model has no linear quantized at 4 bits to choose from (in deploy "
                            "mode a linear's input size must take an INT4 block of 64 or 128)")
    if config.mode == "deploy" and config.a_bits < 16:
        raise MQDeployError(f"--effective-bits at W4A{config.a_bits} in deploy mode: a kept FP16 linear would also lose "
                            "its input quantizer, which the sensitivity pass does not model; use W4A16 (what deploys) "
                            "or --mode paper")
    nbytes = sum(model.get_submodule(n).weight.numel() for n in four_bit) * 4
    if nbytes > 2 ** 28 and not spill_fits(nbytes):         # a small model's may sit in memory
        raise MQDeployError(f"--effective-bits parks the kept candidates' weights ({nbytes / 1e9:.1f} GB) in the temp "
                            "folder, which lacks the room or is memory (tmpfs); point TMPDIR at a disk with that much free")
