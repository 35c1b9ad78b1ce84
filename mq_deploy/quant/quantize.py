"""`quantize(model, recipe, calib)`: the one entry point. A recipe applies exact FP transforms;
this module then calibrates static activation ranges on the transformed model, fake-quantizes the
weights and installs activation quantizers, and returns a `QuantizedModel` that records it all."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..devices import torch_device
from ..errors import MQDeployError
from ..models import MambaLM
from .calibrate import collect_statistics
from .config import CONV_INPUT, QuantConfig, path_inputs
from .modules import DynamicActivationQuantizer, StaticActivationQuantizer
from .gptq import gptq_quantize
from .observers import CovarianceObserver, HistogramObserver, MinMaxObserver
from .paper_scan import install_paper_scan
from .quantizer import QuantSpec, quantize_tensor, scale_and_zero_point
from .spill import SpilledTensors, spill_fits


@dataclass
class QuantizedModel:
    model: MambaLM                                   # fake-quant model, ready to evaluate
    recipe: str
    config: QuantConfig
    weight_specs: dict[str, QuantSpec] = field(default_factory=dict)        # linear -> spec
    activation_ranges: dict[str, dict] = field(default_factory=dict)        # point -> scale etc.
    online_transforms: dict[str, str] = field(default_factory=dict)         # point -> kind
    seconds: dict[str, float] = field(default_factory=dict)
    # FP, pre-rounding: what the artifact stores. From quantize(), an anonymous temp file holds them
    # (SpilledTensors) for as long as this object lives
    transformed_weights: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)
    ranges_replayed: bool = False       # static ranges from the recipe's statistics pass, not a second pass
    mixed_precision: dict | None = None  # config.effective_bits: the sensitivities and the linears kept
    awq_alpha: dict[str, float] = field(default_factory=dict)   # weight_scales="awq": the α chosen per linear


def quantized_linears(model: MambaLM, config: QuantConfig) -> dict[str, str]:
    """{linear module name: the activation point feeding it} for every linear the config quantizes
    (a linear whose weight_spec is None stays FP, and so does its input): each mixer's linears, those
    of every SSM path (a bidirectional mixer's x_proj_b, dt_proj_b), and the head on request."""
    out = {}
    for i, layer in enumerate(model.backbone.layers):
        for linear, point in path_inputs(layer.mixer.LINEAR_INPUTS, layer.mixer.PATHS).items():
            name = f"backbone.layers.{i}.mixer.{linear}"
            if config.weight_spec(model.get_submodule(name).in_features, linear, name) is not None:
                out[name] = f"backbone.layers.{i}.mixer.{point}"
    if config.quantize_conv:
        for i, layer in enumerate(model.backbone.layers):
            for conv, point in path_inputs(CONV_INPUT, layer.mixer.PATHS).items():
                out[f"backbone.layers.{i}.mixer.{conv}"] = f"backbone.layers.{i}.mixer.{point}"
    if config.quantizes_lm_head(model.get_submodule(model.HEAD).in_features):
        out[model.HEAD] = f"{model.HEAD}_input"
    return out


def check_recipe_options(recipe: str, config: QuantConfig) -> None:
    """Settings that only one recipe takes, refused before any work."""
    if config.r1 != "klt" and recipe != "mambaquant":
        raise MQDeployError(f"--r1 {config.r1} is MambaQuant's choice of residual rotation; the {recipe} recipe has "
                            "none to choose: leave --r1 out")


def is_tied_head(model) -> bool:
    """A language model whose lm_head is its embedding table (a classifier has no embedding)."""
    embeddings = getattr(model.backbone, "embeddings", None)
    return embeddings is not None and model.get_submodule(model.HEAD).weight is embeddings.weight


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def _with_quantizer(current: nn.Module, quantizer: nn.Module) -> nn.Module:
    """Put `quantizer` after whatever the point already does (an online rotation, say)."""
    if type(current).__name__ == "ActivationPoint":
        return quantizer
    return nn.Sequential(current, quantizer)


def _weight_spec(model: MambaLM, config: QuantConfig, name: str) -> QuantSpec:
    linear = model.get_submodule(name)
    return (config.conv_weight_spec() if isinstance(linear, nn.Conv1d)
            else config.weight_spec(linear.in_features, name.rpartition(".")[2], name))


@torch.no_grad()
def gptq_round(model: MambaLM, config: QuantConfig, name: str, hessian: torch.Tensor,
               stored: dict[str, torch.Tensor]) -> None:
    """Round one linear's weight with GPTQ in place, and put the rounded weight in `stored` (the
    artifact's weights), from which round-to-nearest gives back the same codes (quant/gptq.py)."""
    linear = model.get_submodule(name)
    try:
        rounded = gptq_quantize(linear.weight, hessian, _weight_spec(model, config, name))
    except ValueError as e:
        raise MQDeployError(f"GPTQ could not round {name}: {e}; use --weight-rounding rtn") from None
    linear.weight.copy_(rounded.to(linear.weight.dtype))
    stored[f"{name}.weight"] = linear.weight.detach().clone()


def quantize_weights(model: MambaLM, config: QuantConfig) -> dict[str, QuantSpec]:
    """Replace each quantized linear's weight by its fake-quantized value; return the specs.
    (Round-to-nearest; a weight GPTQ already rounded comes back unchanged.)"""
    specs = {}
    with torch.no_grad():
        for name in quantized_linears(model, config):
            linear = model.get_submodule(name)
            if name == "lm_head" and is_tied_head(model):
                linear.weight = nn.Parameter(linear.weight.detach().clone())   # quantize the head only
                model.config.tie_word_embeddings = False
            spec = _weight_spec(model, config, name)
            linear.weight.copy_(quantize_tensor(linear.weight, spec).dequantize(linear.weight.dtype))
            specs[name] = spec
    return specs


def gptq_linears(model: MambaLM, config: QuantConfig) -> dict[str, str]:
    """{linear: its input point} of the linears GPTQ rounds: every quantized nn.Linear except the
    head (the depthwise conv has 4 taps a channel, nothing to compensate across)."""
    if config.weight_rounding != "gptq":
        return {}
    return {name: point for name, point in quantized_linears(model, config).items()
            if name != model.HEAD and isinstance(model.get_submodule(name), nn.Linear)}


AWQ_ORDER = ("out_proj", "x_proj", "x_proj_b", "in_proj")   # out_proj's gate fold rescales in_proj's gate rows: first


def awq_linears(model: MambaLM, config: QuantConfig) -> dict[str, str]:
    """{linear: its input point} of the 4-bit linears whose input channels AWQ scales (quant/awq.py):
    in_proj and every path's x_proj always, out_proj where nothing rotates its input online."""
    if config.weight_scales != "awq":
        return {}
    out = {}
    for name, point in quantized_linears(model, config).items():
        leaf = name.rpartition(".")[2]
        if leaf not in AWQ_ORDER or _weight_spec(model, config, name).bits != 4:
            continue
        if leaf == "out_proj" and type(model.get_submodule(point)).__name__ != "ActivationPoint":
            continue
        out[name] = point
    return dict(sorted(out.items(), key=lambda kv: (kv[0].rpartition(".")[0], AWQ_ORDER.index(kv[0].rpartition(".")[2]))))


@torch.no_grad()
def awq_scale(model: MambaLM, config: QuantConfig, name: str, hessian: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Search one linear's AWQ scales and fold them (its columns × s, what computes its input ÷ s);
    returns s and α."""
    from .awq import search_scales
    from .transforms import smooth_norm_into_in_proj, smooth_out_proj_input, smooth_x_proj_input_online
    linear = model.get_submodule(name)
    if not torch.isfinite(torch.diagonal(hessian)).all():
        raise MQDeployError(f"AWQ cannot scale {name}: its calibration inputs hold NaN or inf; check the model and "
                            "the calibration data, or quantize without --weight-scales awq")
    s, alpha, _ = search_scales(linear.weight, hessian, _weight_spec(model, config, name))
    mixer_name, _, leaf = name.rpartition(".")
    mixer = model.get_submodule(mixer_name)
    if leaf == "in_proj":
        smooth_norm_into_in_proj(model.get_submodule(mixer_name.rpartition(".")[0]), s)
    elif leaf.startswith("x_proj"):
        smooth_x_proj_input_online(mixer, s, leaf.removeprefix("x_proj"))
    else:
        smooth_out_proj_input(mixer, s)
    return s, alpha


def range_observers(model: MambaLM, config: QuantConfig, percentiles: dict[str, float] | None = None) -> dict[str, list]:
    """{activation point: [its range observer]} for every static range the config needs (none for
    dynamic or 16-bit activations). `percentiles` overrides config.act_percentile per point-name suffix."""
    spec = config.activation_spec()
    if spec is None or config.mode == "paper":
        return {}
    observers = {}
    for point in sorted(set(quantized_linears(model, config).values())):
        pct = (percentiles or {}).get(point.rsplit(".", 1)[-1], config.act_percentile)
        # min/max needs no histogram (whose percentile_range(100) is the same min and max)
        observer = MinMaxObserver(point) if pct == 100.0 else HistogramObserver(point)
        observer.percentile = pct
        observers[point] = [observer]
    return observers


def install_static_quantizers(model: MambaLM, config: QuantConfig, observers: dict[str, list]) -> dict[str, dict]:
    """Put a static activation quantizer at each point of `observers` (from `range_observers`, fed by
    a calibration pass), with the range its observer saw."""
    spec = config.activation_spec()
    ranges = {}
    for point, (observer, *_) in sorted(observers.items()):
        pct = observer.percentile
        lo, hi = observer.range() if pct == 100.0 else observer.percentile_range(pct)
        scale, zero_point = scale_and_zero_point(lo, hi, spec)
        _set_module(model, point, _with_quantizer(model.get_submodule(point),
                                                  StaticActivationQuantizer(spec, scale.item(), zero_point.item())))
        ranges[point] = {"scale": scale.item(), "zero_point": zero_point.item(), "percentile": pct,
                         "observed_min": lo.item(), "observed_max": hi.item(), "bits": spec.bits,
                         "symmetric": spec.symmetric}
    return ranges


def install_activation_quantizers(model: MambaLM, calib: torch.Tensor, config: QuantConfig,
                                  percentiles: dict[str, float] | None = None, progress=True,
                                  also_observe: dict[str, list] | None = None, after_layer=None) -> dict[str, dict]:
    """Static (deploy) ranges from a calibration pass over the transformed FP model, or dynamic
    (paper) quantizers. `percentiles` overrides config.act_percentile per point-name suffix.
    `also_observe` {point: [observers]} ride along in the same pass, and `after_layer(i)` runs once
    layer i has seen every chunk (a pass of their own when there are no static ranges to take)."""
    spec = config.activation_spec()
    observers = range_observers(model, config, percentiles)
    if not observers:
        if also_observe:
            collect_statistics(model, calib, also_observe, batch_size=config.batch_size, progress=progress,
                               desc="weight-rounding statistics", after_layer=after_layer)
        if spec is None:
            return {}
        ranges = {}
        for point in sorted(set(quantized_linears(model, config).values())):     # paper mode
            _set_module(model, point, _with_quantizer(model.get_submodule(point), DynamicActivationQuantizer(spec)))
            ranges[point] = {"dynamic": True, "bits": spec.bits, "symmetric": spec.symmetric}
        return ranges
    passes = {p: list(obs) for p, obs in observers.items()}
    for p, extra in (also_observe or {}).items():
        passes.setdefault(p, []).extend(extra)
    collect_statistics(model, calib, passes, batch_size=config.batch_size, progress=progress,
                       desc="activation ranges", after_layer=after_layer)
    return install_static_quantizers(model, config, observers)


def _replayed_range_observers(recipe_impl, work: MambaLM, calib: torch.Tensor, config: QuantConfig,
                              source_dtype: torch.dtype, range_pass: str) -> dict[str, list] | None:
    """The range observers the recipe's own statistics pass can feed (its `replays`), or None when
    the ranges take a second pass over the transformed model. Replayed: on a CPU (where a pass costs
    most; a GPU's second pass takes seconds), a float32/float64 model (a 16-bit one's second pass runs
    in its own dtype, which a float32 replay would not match to rounding), and no GPTQ (its Hessians
    come from the second pass, layer by layer)."""
    if range_pass not in RANGE_PASSES:
        raise ValueError(f"range_pass must be one of {RANGE_PASSES}, got {range_pass!r}")
    if range_pass == "forward" or not hasattr(recipe_impl, "replays") or gptq_linears(work, config) or \
            awq_linears(work, config):
        return None
    if next(work.parameters()).device.type != "cpu" or source_dtype not in (torch.float32, torch.float64):
        return None
    observers = range_observers(work, config)
    if not observers or not recipe_impl.replays(work, calib, observers, config):
        return None
    return observers


RANGE_PASSES = ("auto", "forward")


ONLINE_KINDS = {"HadamardRotation": "hadamard", "OnlineMatrix": "matrix", "ChannelScale": "scale"}   # module type -> kind


def online_transforms_of(model: MambaLM) -> dict[str, str]:
    """{activation point: kind} of the online transforms a recipe left in the model."""
    out = {}
    for name, module in model.named_modules():
        kind = ONLINE_KINDS.get(type(module).__name__)
        if kind is not None:
            out[name.removesuffix(".0")] = kind
    return out


def quantize(model: MambaLM, recipe: str, calib: torch.Tensor, config: QuantConfig = QuantConfig(),
             progress: bool = True, range_pass: str = "auto") -> QuantizedModel:
    """Quantize a copy of `model` with a named recipe, calibrating on token windows `calib` [n, L].

    Static activation ranges come from a pass over the transformed model (range_pass="forward"),
    or, with "auto", from the recipe's own statistics pass where it can map each activation through
    its transforms (MambaQuant on a CPU: one pass instead of two; the same ranges up to rounding)."""
    from .recipes import get_recipe
    recipe_impl = get_recipe(recipe)
    check_recipe_options(recipe, config)
    try:
        model.check_inputs(calib)
    except ValueError as e:
        raise MQDeployError(f"calibration data: {e}") from None
    from .mixed_precision import check_mixed_precision, quantize_mixed
    check_mixed_precision(model, config)
    if config.effective_bits is not None:
        return quantize_mixed(model, recipe, calib, config, progress, range_pass)
    seconds = {}
    start = time.perf_counter()
    work = _work_copy(model, torch_device(config.device))       # float32 storage, every fold in float64
    replayed = _replayed_range_observers(recipe_impl, work, calib, config, model.dtype, range_pass)
    try:
        if replayed is None:
            percentiles = recipe_impl.transform(work, calib, config, progress=progress) or {}
        else:
            percentiles = recipe_impl.transform(work, calib, config, progress=progress, observe=replayed) or {}
            if percentiles:
                raise RuntimeError(f"recipe {recipe} replays its ranges but overrides percentiles")
    except ValueError as e:   # a size the recipe's transforms cannot handle, e.g. no Hadamard of that order
        raise MQDeployError(f"recipe {recipe} cannot be applied to this model: {e}") from None
    work = work.to(model.dtype)
    transformed = _stored_weights(work)
    seconds["transforms"] = time.perf_counter() - start
    start = time.perf_counter()
    gptq = gptq_linears(work, config)
    awq = awq_linears(work, config)
    awq_alpha = {}
    second_moments = {point: [CovarianceObserver(point)] for point in set(gptq.values()) | set(awq.values())}

    def round_layer(i: int) -> None:
        # layer i has run over every chunk: its Hessians are complete and nothing that is still to
        # run reads its weights, so AWQ scales and GPTQ rounds them now and frees them (one layer's
        # H at a time). AWQ's folds are exact, so the layers still to run see the same inputs.
        prefix = f"backbone.layers.{i}."
        hessians = {}
        for name, point in awq.items():
            if name.startswith(prefix):
                h = second_moments[point][0].second_moment()
                s, awq_alpha[name] = awq_scale(work, config, name, h)
                s = s.to(h)
                hessians[name] = h / torch.outer(s, s)          # the second moment of the scaled input
        if hessians:                    # the folded layer, as the artifact stores it (before rounding)
            for key, tensor in work.backbone.layers[i].state_dict(prefix=prefix).items():
                transformed[key] = tensor.detach().clone()
        for name, point in gptq.items():
            if name.startswith(prefix):
                h = hessians[name] if name in hessians else second_moments[point][0].second_moment()
                gptq_round(work, config, name, h, transformed)
        for point, (observer,) in second_moments.items():
            if point.startswith(prefix):
                observer.release()

    if replayed is None:
        ranges = install_activation_quantizers(work, calib, config, percentiles, progress=progress,
                                               also_observe=second_moments,
                                               after_layer=round_layer if second_moments else None)
    else:
        ranges = install_static_quantizers(work, config, replayed)
    specs = quantize_weights(work, config)
    if config.quantizes_scan_output:
        install_paper_scan(work)
    seconds["quantizers"] = time.perf_counter() - start
    work = work.cpu()
    return QuantizedModel(work, recipe, config, specs, ranges, online_transforms_of(work), seconds, transformed,
                          ranges_replayed=replayed is not None, awq_alpha=awq_alpha)


def _stored_weights(work: MambaLM) -> Mapping[str, torch.Tensor]:
    """The transformed weights the artifact stores: on disk until it is written (SpilledTensors), or
    in memory when the temp folder lacks the room."""
    state = work.state_dict()
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    if spill_fits(nbytes):
        return SpilledTensors(state)
    return {k: v.detach().clone() for k, v in state.items()}


def _work_copy(model: MambaLM, device: torch.device) -> MambaLM:
    """The copy of `model` that the recipe transforms, on `device`: float32 storage (float64 for a
    float64 model), allocated once and filled tensor by tensor (no intermediate copy). Each fold
    computes in float64 from the stored weight and rounds once into it (transforms/fold.py: _f64,
    _store): a whole float64 copy would take 8 bytes a parameter where this takes 4, 22 GB for
    mamba-2.8b, and differ by a few float32 roundings (a few 1e-8 relative)."""
    dtype = torch.float64 if model.dtype == torch.float64 else torch.float32
    with torch.device("meta"):
        work = type(model)(copy.deepcopy(model.config)).to(dtype)
    tied = is_tied_head(model)
    if tied:                                        # to_empty would give the head a tensor of its own
        work.lm_head.register_parameter("weight", None)
    work = work.to_empty(device=device)
    if tied:
        work.lm_head.weight = work.backbone.embeddings.weight
    work.load_state_dict(model.state_dict())
    for name, module in model.named_modules():      # non-parameter state, e.g. S-SiLU gate scales
        if getattr(module, "gate_scale", None) is not None:
            work.get_submodule(name).gate_scale = module.gate_scale.to(device=device, dtype=dtype)
    return work.eval()
