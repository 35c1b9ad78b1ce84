"""The canonical Mamba-2 language model: pure PyTorch, Hugging Face parameter names, token-major.

The same function as transformers' Mamba2ForCausalLM (tested against its torch path, with the
checkpoints it writes) and mamba_ssm's MambaLMHeadModel with `ssm_cfg.layer: "Mamba2"`, built from
the Mamba-1 model's parts (models/mamba.py) so that calibration and quantization handle both alike:

- the blocks are `MambaBlock`s (RMSNorm -> mixer -> residual add, the residual in FP32 as configured)
  whose mixer is a `Mamba2Mixer`: in_proj -> (z, xBC, dt); a depthwise causal conv over xBC and
  SiLU; x, B, C split; the SSD scan (ops/ssd_scan.py: A one scalar per head, B and C shared by the
  heads of a group, the D skip); the gated RMSNorm norm(y * silu(z)) * w, per group of channels
  when n_groups > 1; out_proj;
- every place a recipe observes or transforms an activation is an `ActivationPoint` (MIXER_POINTS,
  in data-flow order). The scan's points see token-major [b, L, channels] tensors as Mamba-1's do
  (x [b, L, d_inner], dt [b, L, heads], B and C [b, L, n_groups * state_size]), reshaped to heads
  and groups after the point;
- the gate is z * sigmoid(gate_scale * z) with `gate_scale` a buffer (None: plain SiLU), as in
  Mamba-1, so S-SiLU smoothing stays a change of weights;
- the recurrent state is explicit (`MambaState`: per layer the conv window [b, conv_dim, K-1] and
  the SSM state [b, heads, head_dim, state_size]), so prefill and decode are one code path;
- `Mamba2LM` has MambaLM's stages (`embed`, `backbone.layers`, `head`) and input checks, so
  calibration runs it a layer at a time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops.causal_conv import causal_conv1d
from ..ops.ssd_scan import CPU_CHUNK_SIZE, ssd_scan
from .mamba import ActivationPoint, LayeredModel, MambaBlock, MambaLM, MambaState, RMSNorm, at_least_float32

# The activation points of one Mamba-2 mixer, in data-flow order.
MIXER_POINTS = ("in_proj_input", "conv_input", "scan_x", "scan_dt", "scan_B", "scan_C", "norm_input",
                "norm_gate", "out_proj_input")

# Keys of HF's Mamba2Config that change the function; anything else in a config.json (the init
# ranges, token ids, "norm_before_gate" / "rms_norm" of older transformers versions, which its
# modeling code never read) is kept in `extra` so a save round-trips it.
_HF_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand", "n_groups", "num_heads",
            "head_dim", "conv_kernel", "use_bias", "use_conv_bias", "layer_norm_epsilon", "residual_in_fp32",
            "tie_word_embeddings", "chunk_size", "time_step_limit")
# What transformers cannot express (a mamba_ssm model's options), kept under config.json's "mq_deploy"
# key: transformers ignores it, we read it back.
_OWN_KEYS = ("tokenizer", "norm_before_gate", "rms_norm", "gated_norm_epsilon")
_NO_LIMIT = (0.0, math.inf)


def _json_float(value):
    """A float from config.json: a number, or transformers 5's {"__float__": "Infinity"} encoding."""
    if isinstance(value, dict) and set(value) == {"__float__"}:
        return float(value["__float__"])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


@dataclass
class Mamba2Config:
    """Defaults are transformers' Mamba2Config's (what it assumes for a key config.json lacks), except
    for the three sizes, which every config.json states."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    state_size: int = 128
    expand: int = 2
    n_groups: int = 8
    num_heads: int = 128
    head_dim: int = 64
    conv_kernel: int = 4
    use_bias: bool = False              # in_proj / out_proj bias
    use_conv_bias: bool = True
    layer_norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    tie_word_embeddings: bool = False
    chunk_size: int = 256               # the CUDA kernels' chunk; the CPU scan picks its own (same result)
    time_step_limit: tuple = _NO_LIMIT  # dt is clamped to it after softplus
    norm_before_gate: bool = False      # True: norm(y) * w * silu(z) (mamba_ssm option; transformers: False)
    rms_norm: bool = True               # False: no gated norm, y * silu(z) (mamba_ssm option)
    gated_norm_epsilon: float | None = None   # None: layer_norm_epsilon (transformers); mamba_ssm: 1e-5
    tokenizer: str | None = None        # "bytes": the built-in byte-level tokenizer
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand", "n_groups",
                     "num_heads", "head_dim", "conv_kernel", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"config: {name} must be a positive integer, got {value!r}")
        if self.expand * self.hidden_size != self.num_heads * self.head_dim:
            raise ValueError(f"config: expand * hidden_size ({self.expand} * {self.hidden_size}) must equal "
                             f"num_heads * head_dim ({self.num_heads} * {self.head_dim})")
        if self.num_heads % self.n_groups:
            raise ValueError(f"config: num_heads {self.num_heads} is not a multiple of n_groups {self.n_groups}")
        limit = self.time_step_limit
        if not isinstance(limit, (list, tuple)) or len(limit) != 2:
            raise ValueError(f"config: time_step_limit must be [min, max], got {limit!r}")
        self.time_step_limit = (_json_float(limit[0]), _json_float(limit[1]))
        if not self.time_step_limit[0] <= self.time_step_limit[1]:
            raise ValueError(f"config: time_step_limit {list(self.time_step_limit)} has min > max")

    @property
    def intermediate_size(self) -> int:
        return self.expand * self.hidden_size

    @property
    def conv_dim(self) -> int:
        """Channels of the causal conv: x, B and C."""
        return self.intermediate_size + 2 * self.n_groups * self.state_size

    @classmethod
    def from_hf_dict(cls, data: dict) -> "Mamba2Config":
        act = data.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise ValueError(f"hidden_act {act!r}: Mamba-2 models use silu")
        known = {k: data[k] for k in _HF_KEYS if k in data and data[k] is not None}
        own = data.get("mq_deploy") or {}
        extra = {k: v for k, v in data.items() if k not in _HF_KEYS and k != "mq_deploy"}
        return cls(**known, **{k: own[k] for k in _OWN_KEYS if k in own}, extra=extra)

    def to_hf_dict(self) -> dict:
        """config.json that transformers' Mamba2ForCausalLM also reads."""
        data = dict(self.extra)
        data.update({k: v for k, v in asdict(self).items() if k in _HF_KEYS})
        data["time_step_limit"] = list(self.time_step_limit)       # inf: json's Infinity, as transformers 4 wrote
        data["model_type"] = "mamba2"
        data["architectures"] = ["Mamba2ForCausalLM"]
        data["hidden_act"] = "silu"
        own = {k: getattr(self, k) for k in _OWN_KEYS
               if getattr(self, k) != self.__dataclass_fields__[k].default}
        if own:
            data["mq_deploy"] = own
        return data


class GatedRMSNorm(nn.Module):
    """transformers' MambaRMSNormGated / mamba_ssm's RMSNormGated: statistics in (at least) float32,
    over groups of `group_size` channels, the weight applied after; the gate z * sigmoid(gate_scale * z)
    before the norm (norm_before_gate False, the released models) or after it."""

    def __init__(self, hidden_size: int, group_size: int, eps: float, norm_before_gate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.group_size = group_size
        self.eps = eps
        self.norm_before_gate = norm_before_gate

    def forward(self, y: torch.Tensor, z: torch.Tensor, gate_scale: torch.Tensor | None = None) -> torch.Tensor:
        dtype = y.dtype
        wide = at_least_float32(dtype)
        y, gate = y.to(wide), _gate(z.to(wide), gate_scale)
        if not self.norm_before_gate:
            y = y * gate
        groups = y.unflatten(-1, (-1, self.group_size))
        y = (groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        out = self.weight * y.to(dtype)
        return out * gate.to(dtype) if self.norm_before_gate else out


def _gate(z: torch.Tensor, gate_scale: torch.Tensor | None) -> torch.Tensor:
    return F.silu(z) if gate_scale is None else z * torch.sigmoid(gate_scale.to(z.dtype) * z)


class Mamba2Mixer(nn.Module):
    PATHS = ("",)            # one SSM path, as MambaMixer
    POINTS = MIXER_POINTS
    LINEAR_INPUTS = {"in_proj": "in_proj_input", "out_proj": "out_proj_input"}   # no x_proj / dt_proj

    def __init__(self, config: Mamba2Config):
        super().__init__()
        d, d_inner = config.hidden_size, config.intermediate_size
        self.d_inner, self.d_state, self.n_groups = d_inner, config.state_size, config.n_groups
        self.num_heads, self.head_dim, self.conv_dim = config.num_heads, config.head_dim, config.conv_dim
        self.in_proj = nn.Linear(d, d_inner + config.conv_dim + config.num_heads, bias=config.use_bias)
        self.conv1d = nn.Conv1d(config.conv_dim, config.conv_dim, config.conv_kernel, groups=config.conv_dim,
                                padding=config.conv_kernel - 1, bias=config.use_conv_bias)
        self.dt_bias = nn.Parameter(torch.zeros(config.num_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, config.num_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(config.num_heads))
        eps = config.layer_norm_epsilon if config.gated_norm_epsilon is None else config.gated_norm_epsilon
        self.norm = (GatedRMSNorm(d_inner, d_inner // config.n_groups, eps, config.norm_before_gate)
                     if config.rms_norm else None)
        self.out_proj = nn.Linear(d_inner, d, bias=config.use_bias)
        self.register_buffer("gate_scale", None, persistent=False)
        limit = tuple(config.time_step_limit)
        self.dt_limit = None if limit == _NO_LIMIT else limit
        self.scan_impl = "chunked"
        self.scan_chunk_size = CPU_CHUNK_SIZE
        for name in MIXER_POINTS:
            setattr(self, name, ActivationPoint())

    @property
    def conv_rows(self) -> slice:
        """The rows of in_proj that feed the depthwise conv (x, B and C)."""
        return slice(self.d_inner, self.d_inner + self.conv_dim)

    @property
    def gate_rows(self) -> slice:
        """The rows of in_proj that make the gate z."""
        return slice(0, self.d_inner)

    def forward(self, hidden: torch.Tensor, conv_state=None, ssm_state=None):
        """hidden [b, L, d] -> (out [b, L, d], conv_state [b, conv_dim, K-1], ssm_state [b, H, P, N])."""
        batch, length, _ = hidden.shape
        heads, groups, n = self.num_heads, self.n_groups, self.d_state
        z, xbc, dt = torch.split(self.in_proj(self.in_proj_input(hidden)), [self.d_inner, self.conv_dim, heads],
                                 dim=-1)
        xbc, conv_state = causal_conv1d(self.conv_input(xbc), self.conv1d.weight, self.conv1d.bias, conv_state)
        x, B, C = torch.split(F.silu(xbc), [self.d_inner, groups * n, groups * n], dim=-1)
        x, dt, B, C = self.scan_x(x), self.scan_dt(dt), self.scan_B(B), self.scan_C(C)
        wide = at_least_float32(self.A_log.dtype)
        y, ssm_state = ssd_scan(
            x.reshape(batch, length, heads, self.head_dim), dt, -torch.exp(self.A_log.to(wide)),
            B.reshape(batch, length, groups, n), C.reshape(batch, length, groups, n), D=self.D.to(wide),
            dt_bias=self.dt_bias.to(wide), dt_softplus=True, dt_limit=self.dt_limit, initial_state=ssm_state,
            chunk_size=self.scan_chunk_size, impl=self.scan_impl)
        y, z = self.norm_input(y.reshape(batch, length, self.d_inner)), self.norm_gate(z)
        if self.norm is not None:
            y = self.norm(y, z, self.gate_scale)
        else:
            wide = at_least_float32(y.dtype)
            y = (y.to(wide) * _gate(z.to(wide), self.gate_scale)).to(y.dtype)
        return self.out_proj(self.out_proj_input(y.to(hidden.dtype))), conv_state, ssm_state


class Mamba2Backbone(nn.Module):
    def __init__(self, config: Mamba2Config):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MambaBlock(config, mixer_cls=Mamba2Mixer) for _ in range(config.num_hidden_layers))
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)


class Mamba2LM(LayeredModel):
    """Mamba-2 causal LM. `forward(input_ids [b, L], state=None, return_state=False) -> logits [b, L,
    vocab]` (float32, or float64 for a float64 model), and the state after the last token with
    return_state (a decode step is forward(next_token[:, None], state, return_state=True)).

    Not a MambaLM subclass (code that builds Mamba-1 graphs must not take it); the stages, input
    checks and forward are MambaLM's own functions, which only use backbone.embeddings,
    backbone.layers, backbone.norm_f, lm_head and lm_head_input."""

    HEAD = "lm_head"

    def __init__(self, config: Mamba2Config):
        super().__init__()
        self.config = config
        self.backbone = Mamba2Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.lm_head_input = ActivationPoint()
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    dtype = MambaLM.dtype
    check_inputs = MambaLM.check_inputs
    forward = MambaLM.forward
    embed = MambaLM.embed
    head = MambaLM.head


__all__ = ["Mamba2Config", "Mamba2LM", "Mamba2Mixer", "GatedRMSNorm", "MIXER_POINTS", "MambaState"]
