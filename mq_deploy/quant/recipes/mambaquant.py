"""MambaQuant (Xu et al., ICLR 2025): KLT-enhanced rotation + smooth-fused rotation, as specified in
docs/quantization.md and without the official code's bugs (reference notes §12):

- statistics come from the untransformed FP model with quantization off, in one pass;
- R1 = K·H on the residual stream after folding every RMSNorm γ; K from the covariance of the
  γ-free normalized residual (the tensor R1 actually rotates), pooled over all layers
  (`config.r1 = "hadamard"`: H alone, an ablation; docs/r1_ablation_demo.md);
- S2 + R2: S-SiLU smoothing of the out_proj input (α = 0.5), then an online Hadamard;
- S5 then R5 = K·H on the dt bottleneck, per layer, in the correct orientation (dt_proj's input
  becomes t·K·H), with K from that layer's own covariance adjusted for S5;
- S7: smoothing between in_proj's x rows and the depthwise conv;
- every fold in float64;
- in paper mode, where the scan's h·C contraction is quantized: S4 + R4 there, the paper's second
  smooth-fused rotation (quant/paper_scan.py; s from max|h| and max|C| per state over the
  calibration set, R4 a signed Hadamard over the states), in one more pass over the calibration set;
- the smoothings (S2, S5, S7) only where activations are quantized: with 16-bit activations
  (W4A16) their scales are 1. Smoothing moves activation range into the weights, which 4-bit
  weights pay for while FP16 activations gain nothing: on the comparison model at W4A16 it cost
  11-15 % more KL(FP ‖ q) (docs/comparison_model.md; `benchmarks/bench_a16_smoothing.py`).

On a Vision Mamba (bidirectional mixers), as the paper's Vim code runs it (reference notes §7):
K of R1 from the last layer's in_proj input alone; S5 + R5 per SSM path, each with its own
statistics and KLT; one S2 + R2 per layer on the averaged output of both paths (they share the
gate z); no S7; in paper mode S3 (h smoothed along its channels) + R4 per path instead of S4 + R4.
The paper's Vim code centres the dt bottleneck (reduce_mean) where this uses S5, as
the language-model recipe does.

On Mamba-2 (not in the paper; reference notes §7's port): R1 as for Mamba-1; S2 through the gated
RMSNorm's weight, then R2; S7 over the conv's x, B and C channels; no S5 / R5 (there is no dt
bottleneck: dt comes out of in_proj per head); in paper mode S4 per group of B/C, and R4.
"""

from __future__ import annotations

import torch

from ..calibrate import collect_statistics
from ..observers import OBSERVERS, CaptureObserver
from ..paper_scan import record_contraction_ranges, s3_scale, s4_scale, set_contraction_transform
from ..spill import TensorSpill, spill_fits
from ..transforms import (fold_rmsnorm_weights, hadamard_factors, klt_hadamard_rotation, online_hadamard_before_out_proj,
                          random_signs, rotate_dt_bottleneck, rotate_residual_stream, signed_hadamard_matrix,
                          smooth_conv_input, smooth_dt_bottleneck, smooth_out_proj_input, smoothquant_scales)
from ...models import MambaLM
from ...models.mamba2 import Mamba2LM
from ...models.vim import VisionMamba
from .common import mixer_point

RANDOM_SIGNS = True        # the Hadamards' signs come from config.seed

ALPHA = 0.5
# Where the smoothings (S2, S5, S7) apply: "quantized-activations" (the recipe; see the docstring),
# "always" (at 16-bit activations too) or "never". The last two serve the ablations in benchmarks/
# (bench_a16_smoothing.py, bench_mambaquant_components.py); they are not a shipped option.
SMOOTHING = "quantized-activations"
# Whether paper mode gets S4 + R4 at the h·C contraction: off only for the ablation in
# benchmarks/bench_mambaquant_components.py (not a shipped option).
CONTRACTION_TRANSFORMS = True


def _smoothing_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, config) -> torch.Tensor:
    """SmoothQuant scales (α = ALPHA) where activations are quantized, ones (no smoothing) where not."""
    if SMOOTHING not in ("quantized-activations", "always", "never"):
        raise ValueError(f"mambaquant.SMOOTHING = {SMOOTHING!r}")
    if SMOOTHING == "never" or (config.a_bits >= 16 and SMOOTHING == "quantized-activations"):
        return torch.ones(act_absmax.shape, dtype=torch.float64, device=act_absmax.device)
    return smoothquant_scales(act_absmax, weight_absmax, alpha=ALPHA)


def _r1_layers(model) -> list[int]:
    """The layers whose in_proj input R1's KLT is computed from: all of them, pooled (language models),
    or the last (Vision Mamba, as the paper's Vim code)."""
    n = len(model.backbone.layers)
    return [n - 1] if isinstance(model, VisionMamba) else list(range(n))


def _uses_s7(model) -> bool:
    return not isinstance(model, VisionMamba)


def _uses_contraction_transforms(config) -> bool:
    """S4 / S3 + R4 smooth and rotate the scan's h·C contraction, which only paper mode quantizes."""
    return CONTRACTION_TRANSFORMS and config.quantizes_scan_output


def _check_r4_order(states: int) -> None:
    try:
        hadamard_factors(states)
    except ValueError as e:
        raise ValueError(f"paper mode's R4 rotates the {states} SSM states, and there is {e}; quantize this model "
                         "in deploy mode, or with another recipe") from None


def _smooth_rotate_contraction(model, calib, config, progress) -> None:
    """Every path's smooth-fused rotation at the h·C contraction, from its ranges over the calibration
    set: S4 (per state) + R4 on a language model, S3 (per channel of h) + R4 on a Vision Mamba, as
    the paper's LLM and Vim scripts run them."""
    recorders = record_contraction_ranges(model, calib, config.batch_size, progress, dtype=config.forward_dtype)
    for i, (layer, by_path) in enumerate(zip(model.backbone.layers, recorders)):
        mixer = layer.mixer
        for p, (suffix, recorder) in enumerate(by_path.items()):
            signs = random_signs(mixer.d_state, seed=config.seed + 3000 + 1000 * p + i)
            if isinstance(model, VisionMamba):
                s3 = s3_scale(recorder.h_channel_absmax)
                set_contraction_transform(mixer, suffix, signs=signs,
                                          channel_scale=torch.ones_like(s3) if SMOOTHING == "never" else s3)
            else:
                s4 = s4_scale(recorder.h_absmax, recorder.c_absmax, getattr(mixer, "n_groups", None))
                set_contraction_transform(mixer, suffix, signs=signs,
                                          state_scale=torch.ones_like(s4) if SMOOTHING == "never" else s4)


def _dt_paths(mixer) -> tuple[str, ...]:
    """The SSM paths with a dt bottleneck (S5 + R5): every path of a Mamba-1 mixer, none of a Mamba-2 one."""
    return mixer.PATHS if "dt_proj" in mixer.LINEAR_INPUTS else ()


def _requests(model, config) -> dict[str, list[str]]:
    requests = {}
    for i, layer in enumerate(model.backbone.layers):
        if config.r1 == "klt" and i in _r1_layers(model):
            requests[mixer_point(i, "in_proj_input")] = ["covariance"]
        if _uses_s7(model):
            requests[mixer_point(i, "conv_input")] = ["channel_absmax"]
        for suffix in _dt_paths(layer.mixer):
            requests[mixer_point(i, "dt_proj_input" + suffix)] = ["channel_absmax", "covariance"]
        requests[mixer_point(i, "out_proj_input")] = ["channel_absmax"]
    return requests


def _scaled_covariance(cov: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Covariance of x / s given the covariance of x."""
    return cov / torch.outer(s, s)


def _transform_layer(model, i: int, stats, config) -> dict[str, torch.Tensor]:
    """S2 + R2, S5 + R5 (each SSM path's) and S7 of layer i, from its own statistics alone; returns
    the factors (the backward path's named with its suffix: s5_b, r5_b)."""
    mixer = model.backbone.layers[i].mixer
    # S2 + R2: smooth the out_proj input through the gate, then rotate it online
    s2 = _smoothing_scales(stats[mixer_point(i, "out_proj_input")]["channel_absmax"].value(),
                           mixer.out_proj.weight.abs().amax(dim=0), config)
    smooth_out_proj_input(mixer, s2)
    online_hadamard_before_out_proj(mixer, random_signs(model.config.intermediate_size, seed=config.seed + 1000 + i))
    factors = {"s2": s2}
    # S5 then R5 on each path's dt bottleneck
    for p, suffix in enumerate(_dt_paths(mixer)):
        dt_stats = stats[mixer_point(i, "dt_proj_input" + suffix)]
        dt_proj = getattr(mixer, "dt_proj" + suffix)
        s5 = _smoothing_scales(dt_stats["channel_absmax"].value(), dt_proj.weight.abs().amax(dim=0), config)
        smooth_dt_bottleneck(mixer, s5, suffix)
        r5 = klt_hadamard_rotation(_scaled_covariance(dt_stats["covariance"].covariance(), s5),
                                   seed=config.seed + 2000 + 1000 * p + i)
        rotate_dt_bottleneck(mixer, r5, suffix)
        factors |= {"s5" + suffix: s5, "r5" + suffix: r5}
    if _uses_s7(model):
        # S7 between in_proj's x rows and the depthwise conv (max over the kernel taps)
        s7 = _smoothing_scales(stats[mixer_point(i, "conv_input")]["channel_absmax"].value(),
                               mixer.conv1d.weight.abs().flatten(1).amax(dim=1), config)
        smooth_conv_input(mixer, s7)
        factors["s7"] = s7
    return factors


@torch.no_grad()
def transform(model, calib, config, progress=True, observe=None):
    """Apply MambaQuant to `model` (quantize()'s work copy, in place) from one statistics pass. With `observe`
    ({point of the transformed model: [observers]}, see `replays`), that pass also feeds those
    observers what the transformed model would show them, so no second pass is needed."""
    layers = model.backbone.layers
    if _uses_contraction_transforms(config):
        _check_r4_order(layers[0].mixer.d_state)          # before any pass, not after
    stats = {p: {n: OBSERVERS[n](p) for n in names} for p, names in _requests(model, config).items()}
    observers = {p: list(obs.values()) for p, obs in stats.items()}
    replay = _RangeReplay(model, observe, observers) if observe else None
    residual_cov = []

    def after_layer(i):
        # R1's statistic: the in_proj input with γ divided out is what the folded model rotates
        if config.r1 == "klt" and i in _r1_layers(model):
            in_cov = stats[mixer_point(i, "in_proj_input")]["covariance"]
            residual_cov.append(_scaled_covariance(in_cov.covariance(), layers[i].norm.weight.double()))
            in_cov.release()
        factors = _transform_layer(model, i, stats, config)     # a layer's own transforms need no later layer
        if replay is not None:
            replay.layer_done(i, factors)

    try:
        collect_statistics(model, calib, observers, batch_size=config.batch_size, progress=progress,
                           desc="FP statistics" + (" and ranges" if replay else ""), dtype=config.forward_dtype,
                           after_layer=after_layer)
        fold_rmsnorm_weights(model, untie_head=config.quantizes_lm_head(model.config.hidden_size))  # a tied head stays tied
        if config.r1 == "klt":
            r1 = klt_hadamard_rotation(sum(residual_cov) / len(residual_cov), seed=config.seed)
        else:       # the ablation: the same signed Hadamard without the KLT basis in front
            r1 = signed_hadamard_matrix(random_signs(model.config.hidden_size, config.seed, torch.float64))
        rotate_residual_stream(model, r1)
        if replay is not None:
            replay.finish(r1)
        if _uses_contraction_transforms(config):
            _smooth_rotate_contraction(model, calib, config, progress)
    finally:
        if replay is not None:
            replay.close()
    return {}


_FEED_ROWS = 4096
_LOCAL_POINTS = ("x_proj_input", "conv_input", "dt_proj_input", "out_proj_input")


def _leaf(point: str) -> str:
    """An activation point's name within its mixer, without a backward path's "_b"."""
    return point.rsplit(".", 1)[-1].removesuffix("_b")


def replays(model, calib: torch.Tensor, points, config) -> bool:
    """Whether transform(observe=...) can feed observers at every one of `points` (activation
    points of the transformed model) from its one statistics pass: the points inside the layers
    can, the head's input cannot (its pass would run the vocabulary-sized head in float64), and
    the in_proj inputs of every layer must fit on disk until R1 is known."""
    if not isinstance(model, (MambaLM, Mamba2LM, VisionMamba)) or not all(
            p.startswith("backbone.layers.") and _leaf(p) in _LOCAL_POINTS + ("in_proj_input",) for p in points):
        return False                # (the maps below are these three families' transforms)
    spilled = sum(p.endswith(".in_proj_input") for p in points)
    tokens = calib.shape[0] * (model.config.num_patches + 1) if isinstance(model, VisionMamba) else calib.numel()
    itemsize = torch.finfo(config.forward_dtype).bits // 8          # the captures keep the forward's dtype
    return spill_fits(spilled * tokens * model.config.hidden_size * itemsize)


class _RangeReplay:
    """The transformed model's activations, computed from the FP pass instead of a second pass.
    Each MambaQuant transform maps an activation point's FP value x by a known function (exact in
    real arithmetic, so the two differ by float rounding; tests/test_quant_replay.py holds them to
    the second pass):

        x_proj_input    x                  (S7 scales the conv's input and weights, not its output)
        conv_input      x / s7             (Mamba-2: over the conv's x, B and C channels; Vim: x, no S7)
        dt_proj_input   (x / s5)·R5        (Mamba-1 and Vim; a Vim's backward path with its own s5_b, R5_b)
        out_proj_input  (x / s2)·diag(signs)·H   (the point's own HadamardRotation module; on Mamba-2
                                            1/s2 sits in the gated norm's weight, whose output x is)
        in_proj_input   (x / γ)·R1         (R1 from every layer, or a Vim's last)

    All but in_proj's input depend on the layer's own statistics and are fed when the layer is
    done. R1 is pooled over every layer, so each in_proj input waits on disk (TensorSpill) until
    the last layer has run: 50 MB a layer for mamba-130m at 32 x 512 tokens, never in memory at once.
    """

    def __init__(self, model, observe: dict, observers: dict):
        self.model, self.observe = model, observe
        self.gammas = {i: layer.norm.weight.detach().double().clone()      # before fold_rmsnorm_weights
                       for i, layer in enumerate(model.backbone.layers)}
        self.captures = {}
        for point, targets in observe.items():
            if _leaf(point) == "x_proj_input" or (_leaf(point) == "conv_input" and not _uses_s7(model)):
                observers.setdefault(point, []).extend(targets)    # the identity: fed in the pass itself
            else:
                self.captures[point] = CaptureObserver(point)
                observers.setdefault(point, []).append(self.captures[point])
        self.spill = TensorSpill()

    def _feed(self, point: str, x: torch.Tensor, mapping) -> None:
        """Map x [tokens, channels] a block of rows at a time (the size of a calibration chunk's: the
        Hadamard butterflies over all 16384 rows at once ran 3x slower, out of cache) into the observers."""
        for rows in x.split(_FEED_ROWS):
            y = mapping(rows)
            for observer in self.observe[point]:
                observer.update(y)

    def layer_done(self, i: int, factors: dict) -> None:
        mixer = self.model.backbone.layers[i].mixer
        per_path = [leaf + sfx for sfx in mixer.PATHS for leaf in ("conv_input", "dt_proj_input")]
        for name in (*per_path, "out_proj_input", "in_proj_input"):
            capture = self.captures.pop(mixer_point(i, name), None)
            if capture is None:
                continue
            x, leaf, sfx = capture.take(), _leaf(name), name[len(_leaf(name)):]
            if leaf == "in_proj_input":
                self.spill.put(capture.where, x)
            elif leaf == "conv_input":
                self._feed(capture.where, x, lambda rows: rows / factors["s7"].to(rows))
            elif leaf == "dt_proj_input":
                s5, r5 = factors["s5" + sfx], factors["r5" + sfx]
                self._feed(capture.where, x, lambda rows: ((rows.double() / s5) @ r5).to(rows.dtype))
            else:       # the point's HadamardRotation runs in its input's dtype
                self._feed(capture.where, x, lambda rows: mixer.out_proj_input(rows / factors["s2"].to(rows)))

    def finish(self, r1: torch.Tensor) -> None:
        for i in range(len(self.model.backbone.layers)):
            point = mixer_point(i, "in_proj_input")
            if point in self.observe:
                x = self.spill.get(point)
                gamma, rotation = self.gammas[i].to(x), r1.to(x)
                self._feed(point, x, lambda rows: (rows / gamma) @ rotation)

    def close(self) -> None:
        self.spill.close()
