"""The canonical Mamba-1 language model: pure PyTorch, Hugging Face parameter names, token-major.

The same function as transformers' MambaForCausalLM and mamba_ssm's MambaLMHeadModel (tested
against the former), written so that quantization can work on it without editing it:

- Every place a recipe observes, quantizes or transforms an activation is an `ActivationPoint`
  module (identity by default) with a stable name, e.g. `backbone.layers.3.mixer.out_proj_input`.
  Calibration hooks it; quantization swaps it for a fake-quant or rotation module.
- The gate is y * z * sigmoid(gate_scale * z) with `gate_scale` a buffer (None = plain SiLU), so
  the S-SiLU smoothing of MambaQuant is a change of weights, not of code.
- The recurrent state (conv window and SSM state per layer) is explicit: `forward(ids, state)`
  continues a sequence, which is prefill and decode with one code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ops import causal_conv1d, selective_scan
from .config import MambaConfig

# The activation points of one mixer, in data-flow order.
MIXER_POINTS = ("in_proj_input", "conv_input", "x_proj_input", "dt_proj_input", "scan_x",
                "scan_delta", "scan_B", "scan_C", "scan_gate", "out_proj_input")


class ActivationPoint(nn.Module):
    """A named place in the data flow; the identity until a recipe replaces it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types, the dtype itself for float32 / float64 (so a float64 model is float64
    end to end, which the exactness tests of the transforms rely on)."""
    return torch.promote_types(dtype, torch.float32)


class RMSNorm(nn.Module):
    """RMSNorm as in transformers' MambaRMSNorm: statistics in (at least) float32, weight applied after."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        wide = x.to(at_least_float32(dtype))
        wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * wide.to(dtype)


@dataclass
class MambaState:
    """Recurrent state of the whole model: per layer the conv window [b, d_inner, K-1] and the
    SSM state [b, d_inner, N] (float32)."""

    conv: list[torch.Tensor]
    ssm: list[torch.Tensor]


class MambaMixer(nn.Module):
    PATHS = ("",)            # the name suffixes of its SSM paths (add_ssm_path); a bidirectional mixer: "", "_b"
    # {linear: the activation point that feeds it}, for one SSM path (quantization reads this)
    LINEAR_INPUTS = {"in_proj": "in_proj_input", "x_proj": "x_proj_input", "dt_proj": "dt_proj_input",
                     "out_proj": "out_proj_input"}

    def __init__(self, config: MambaConfig):
        super().__init__()
        d, d_inner, n, rank = (config.hidden_size, config.intermediate_size, config.state_size,
                               config.time_step_rank)
        self.d_inner, self.d_state, self.dt_rank = d_inner, n, rank
        self.in_proj = nn.Linear(d, 2 * d_inner, bias=config.use_bias)
        self.add_ssm_path(config)
        self.out_proj = nn.Linear(d_inner, d, bias=config.use_bias)
        self.register_buffer("gate_scale", None, persistent=False)
        self.scan_impl = "fused"
        for name in MIXER_POINTS:
            setattr(self, name, ActivationPoint())

    def add_ssm_path(self, config, suffix: str = "") -> None:
        """The parameters of one SSM path (conv1d, x_proj, dt_proj, A_log, D), named with `suffix`
        (a bidirectional mixer's backward path: "_b", and A_b_log as the official checkpoints name it)."""
        d_inner, n, rank = config.intermediate_size, config.state_size, config.time_step_rank
        setattr(self, f"conv1d{suffix}", nn.Conv1d(d_inner, d_inner, config.conv_kernel, groups=d_inner,
                                                   padding=config.conv_kernel - 1, bias=config.use_conv_bias))
        setattr(self, f"x_proj{suffix}", nn.Linear(d_inner, rank + 2 * n, bias=False))
        setattr(self, f"dt_proj{suffix}", nn.Linear(rank, d_inner, bias=True))
        setattr(self, f"A{suffix}_log",
                nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d_inner, 1)))
        setattr(self, f"D{suffix}", nn.Parameter(torch.ones(d_inner)))

    @property
    def conv_rows(self) -> slice:
        """The rows of in_proj that feed the depthwise conv (x)."""
        return slice(0, self.d_inner)

    @property
    def gate_rows(self) -> slice:
        """The rows of in_proj that make the gate z."""
        return slice(self.d_inner, 2 * self.d_inner)

    def forward(self, hidden: torch.Tensor, conv_state=None, ssm_state=None):
        """hidden [b, L, d] -> (out [b, L, d], conv_state, ssm_state)."""
        xz = self.in_proj(self.in_proj_input(hidden))
        x, z = xz.chunk(2, dim=-1)
        y, conv_state, ssm_state = self.ssm_path(x, z, conv_state, ssm_state)
        return self.out_proj(self.out_proj_input(y.to(hidden.dtype))), conv_state, ssm_state

    def ssm_path(self, x, z, conv_state=None, ssm_state=None, suffix: str = "", reverse: bool = False):
        """conv -> SiLU -> x_proj -> dt_proj -> gated selective scan, with the parameters and
        activation points named with `suffix` ("" here; a bidirectional mixer's backward path, "_b").
        reverse: the path runs from the last token to the first (an anti-causal conv, a reversed
        scan), which is the official backward branch without its two flips."""
        param = lambda name: getattr(self, name + suffix)          # noqa: E731
        conv = param("conv1d")
        x = param("conv_input")(x)
        if reverse:
            x = causal_conv1d(x.flip(1), conv.weight, conv.bias, None)[0].flip(1)
        else:
            x, conv_state = causal_conv1d(x, conv.weight, conv.bias, conv_state)
        x = F.silu(x)
        dt, B, C = torch.split(param("x_proj")(param("x_proj_input")(x)), [self.dt_rank, self.d_state, self.d_state],
                               dim=-1)
        # every linear runs as its module (dt_proj included, bias and all, as in transformers' torch
        # path), so module-swapping quantizers (ModelOpt, torchao) see and quantize all of them. In
        # a 16-bit model the bias is instead added in float32 inside the scan, as the exported graph
        # (SelectiveScan's delta_bias) and the CUDA kernels do: an FP16 ulp at |bias| ~ 4 is 0.004
        dt = param("dt_proj_input")(dt)
        dt_proj = param("dt_proj")
        if dt_proj.weight.dtype in (torch.float16, torch.bfloat16):
            delta, delta_bias = F.linear(dt, dt_proj.weight), dt_proj.bias.float()
        else:
            delta, delta_bias = dt_proj(dt), None
        a_log = getattr(self, f"A{suffix}_log")
        y, ssm_state = selective_scan(
            param("scan_x")(x), param("scan_delta")(delta), -torch.exp(a_log.float()), param("scan_B")(B),
            param("scan_C")(C), D=param("D").float(), delta_bias=delta_bias, z=param("scan_gate")(z),
            gate_scale=self.gate_scale, delta_softplus=True, initial_state=ssm_state,
            return_final_state=True, reverse=reverse, impl=self.scan_impl)
        return y, conv_state, ssm_state


class MambaBlock(nn.Module):
    def __init__(self, config: MambaConfig, mixer_cls=MambaMixer):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mixer = mixer_cls(config)

    def forward(self, hidden: torch.Tensor, conv_state=None, ssm_state=None):
        residual = hidden.to(at_least_float32(hidden.dtype)) if self.residual_in_fp32 else hidden
        out, conv_state, ssm_state = self.mixer(self.norm(hidden.to(self.norm.weight.dtype)),
                                                conv_state, ssm_state)
        return residual + out, conv_state, ssm_state


class MambaBackbone(nn.Module):
    def __init__(self, config: MambaConfig):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MambaBlock(config) for _ in range(config.num_hidden_layers))
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)


class LayeredModel(nn.Module):
    """What every Mamba-family model here shares: `backbone.layers` of MambaBlocks run in order, so
    calibration and quantization handle them alike. HEAD names the output linear, which reads the
    activation point HEAD + "_input"."""

    HEAD = "lm_head"

    def check_inputs(self, inputs: torch.Tensor) -> None:
        """Raise ValueError naming what is wrong when `inputs` cannot be this model's input."""
        raise NotImplementedError

    def set_scan_impl(self, impl: str) -> None:
        for layer in self.backbone.layers:
            layer.mixer.scan_impl = impl


class MambaLM(LayeredModel):
    """Mamba-1 causal LM. `forward(input_ids [b, L]) -> logits [b, L, vocab]` (float32, or float64 for
    a float64 model)."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.backbone = MambaBackbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.lm_head_input = ActivationPoint()
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def check_inputs(self, input_ids: torch.Tensor) -> None:
        if input_ids.dim() != 2 or input_ids.numel() == 0 or input_ids.dtype.is_floating_point:
            raise ValueError("token input must be a non-empty [samples, seq_len] tensor of token ids")
        if int(input_ids.max()) >= self.config.vocab_size or int(input_ids.min()) < 0:
            raise ValueError(f"token ids fall outside the model's vocabulary (0..{self.config.vocab_size - 1}); "
                             "the text was tokenized for another model")

    def forward(self, input_ids: torch.Tensor, state: MambaState | None = None, return_state: bool = False):
        """Logits for input_ids, continuing from `state` (None: start of sequence).

        With return_state=True also returns the state after the last token, ready for the next call
        (a decode step is forward(next_token[:, None], state)).
        """
        hidden = self.embed(input_ids)
        new_conv, new_ssm = [], []
        for i, layer in enumerate(self.backbone.layers):
            conv, ssm = (state.conv[i], state.ssm[i]) if state is not None else (None, None)
            hidden, conv, ssm = layer(hidden, conv, ssm)
            new_conv.append(conv)
            new_ssm.append(ssm)
        logits = self.head(hidden)
        return (logits, MambaState(new_conv, new_ssm)) if return_state else logits

    # forward's stages, so calibration can run the model a layer at a time (quant/calibrate.py)
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [b, L] -> the first layer's input [b, L, d]."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seqlen], got shape {tuple(input_ids.shape)}")
        return self.backbone.embeddings(input_ids)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last layer's output -> logits."""
        hidden = self.backbone.norm_f(hidden.to(self.backbone.norm_f.weight.dtype))
        logits = self.lm_head(self.lm_head_input(hidden.to(self.dtype)))
        return logits.to(at_least_float32(logits.dtype))
