"""Vision Mamba (Vim, Zhu et al. 2024) as released in hustvl/Vim: the canonical image classifier.

The same function as the official `VisionMamba` with its released flags (RMSNorm, FP32 residual,
bidirectional "v2" mixers, the class token in the middle, absolute position embeddings, the two
directions averaged before out_proj), built from the language model's parts so that quantization
works on it unchanged:

- the blocks are `MambaBlock`s whose mixer is a `BiMambaMixer`: the Mamba-1 mixer plus a backward
  path with its own conv1d_b / x_proj_b / dt_proj_b / A_b_log / D_b and activation points named
  with "_b"; in_proj, the gate z and out_proj are shared, and out_proj reads (y_f + y_b) / 2;
- the backward path is the official branch without its flips: an anti-causal conv and a reversed
  selective scan (the SelectiveScan op's `reverse`), position by position the same numbers. The
  official CPU fallback computes the forward direction only; both are always computed here;
- the same stage methods as `MambaLM` (`embed`, `backbone.layers`, `head`), so calibration runs it
  a layer at a time.

Parameter names are ours (`backbone.layers.N.mixer...`, `backbone.patch_embed.proj`, `classifier`:
`head` is the stage method, as in MambaLM); models/vim_loading.py maps the official checkpoints onto them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from .mamba import MIXER_POINTS, ActivationPoint, LayeredModel, MambaBlock, MambaMixer, RMSNorm, at_least_float32

# The backward path's activation points: every mixer point but the shared in_proj and out_proj inputs.
BACKWARD_POINTS = tuple(f"{p}_b" for p in MIXER_POINTS if p not in ("in_proj_input", "out_proj_input"))


@dataclass
class VimConfig:
    hidden_size: int = 192               # embed_dim: 192 tiny, 384 small, 768 base
    num_hidden_layers: int = 24
    state_size: int = 16
    expand: int = 2
    intermediate_size: int = 0           # 0: expand * hidden_size
    conv_kernel: int = 4
    time_step_rank: int = 0              # 0: ceil(hidden_size / 16)
    img_size: int = 224
    patch_size: int = 16
    stride: int = 16                     # 8 for the fine-grained "stride8" variants
    in_channels: int = 3
    num_classes: int = 1000
    layer_norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    divide_out: bool = True              # out_proj reads (y_f + y_b) / 2, the released "div2" models
    use_bias: bool = False               # in_proj / out_proj bias
    use_conv_bias: bool = True
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.intermediate_size:
            self.intermediate_size = self.expand * self.hidden_size
        if not self.time_step_rank:
            self.time_step_rank = math.ceil(self.hidden_size / 16)
        for name in ("hidden_size", "num_hidden_layers", "state_size", "intermediate_size", "conv_kernel",
                     "time_step_rank", "img_size", "patch_size", "stride", "in_channels", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"config: {name} must be a positive integer, got {value!r}")
        if self.img_size < self.patch_size:
            raise ValueError(f"config: img_size {self.img_size} is smaller than patch_size {self.patch_size}")

    @property
    def grid_size(self) -> int:
        return (self.img_size - self.patch_size) // self.stride + 1

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def token_position(self) -> int:
        """Where the class token sits among the num_patches + 1 tokens: the middle (M // 2)."""
        return self.num_patches // 2

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "extra"}
        return {**self.extra, **data, "model_type": "vim"}

    @classmethod
    def from_dict(cls, data: dict) -> "VimConfig":
        names = set(cls.__dataclass_fields__) - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names and k != "model_type"})


class BiMambaMixer(MambaMixer):
    """The bidirectional ("bimamba v2") mixer: one in_proj, a forward and a backward SSM path, the
    two outputs averaged into one out_proj."""

    PATHS = ("", "_b")

    def __init__(self, config: VimConfig):
        super().__init__(config)
        self.divide_out = config.divide_out
        self.add_ssm_path(config, "_b")
        for name in BACKWARD_POINTS:
            setattr(self, name, ActivationPoint())

    def forward(self, hidden: torch.Tensor, conv_state=None, ssm_state=None):
        """hidden [b, L, d] -> (out [b, L, d], None, None): a whole image at once, no carried state."""
        if conv_state is not None or ssm_state is not None:
            raise ValueError("a bidirectional mixer sees the whole sequence at once: it has no recurrent state")
        xz = self.in_proj(self.in_proj_input(hidden))
        x, z = xz.chunk(2, dim=-1)
        forward, _, _ = self.ssm_path(x, z)
        backward, _, _ = self.ssm_path(x, z, suffix="_b", reverse=True)
        y = forward + backward
        if self.divide_out:
            y = y / 2
        return self.out_proj(self.out_proj_input(y.to(hidden.dtype))), None, None


class PatchEmbed(nn.Module):
    def __init__(self, config: VimConfig):
        super().__init__()
        self.proj = nn.Conv2d(config.in_channels, config.hidden_size, kernel_size=config.patch_size,
                              stride=config.stride)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)          # [b, d, h, w] -> [b, h·w, d]


class VimBackbone(nn.Module):
    def __init__(self, config: VimConfig):
        super().__init__()
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))
        self.layers = nn.ModuleList(MambaBlock(config, mixer_cls=BiMambaMixer) for _ in range(config.num_hidden_layers))
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon)


class VisionMamba(LayeredModel):
    """Vim image classifier. `forward(images [b, C, H, W]) -> logits [b, num_classes]` (float32, or
    float64 for a float64 model); images preprocessed as data/images.py does (ImageNet mean and std)."""

    HEAD = "classifier"

    def __init__(self, config: VimConfig):
        super().__init__()
        self.config = config
        self.backbone = VimBackbone(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_classes)       # the official `head`
        self.classifier_input = ActivationPoint()

    @property
    def dtype(self) -> torch.dtype:
        return self.classifier.weight.dtype

    def check_inputs(self, images: torch.Tensor) -> None:
        cfg = self.config
        shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != shape or images.shape[0] == 0:
            raise ValueError(f"images must be a non-empty [batch, {', '.join(map(str, shape))}] tensor, got shape "
                             f"{tuple(images.shape)}; preprocess them to the model's image size first")
        if not images.dtype.is_floating_point:
            raise ValueError(f"images must be floating point (preprocessed), got {images.dtype}")
        if not torch.isfinite(images).all():
            raise ValueError("images hold NaN or inf values")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(images)
        for layer in self.backbone.layers:
            hidden = layer(hidden)[0]
        return self.head(hidden)

    # forward's stages, as MambaLM's (quant/calibrate.py runs a model a layer at a time)
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [b, C, H, W] -> the first layer's input [b, num_patches + 1, d]: patches, the class
        token inserted in the middle, position embeddings added."""
        cfg = self.config
        if images.dim() != 4 or tuple(images.shape[1:]) != (cfg.in_channels, cfg.img_size, cfg.img_size):
            raise ValueError(f"images must be [batch, {cfg.in_channels}, {cfg.img_size}, {cfg.img_size}], got "
                             f"shape {tuple(images.shape)}")
        patches = self.backbone.patch_embed(images.to(self.dtype))
        middle = cfg.token_position
        cls = self.backbone.cls_token.expand(patches.shape[0], -1, -1)
        tokens = torch.cat((patches[:, :middle], cls, patches[:, middle:]), dim=1)
        return tokens + self.backbone.pos_embed

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The last layer's output -> logits [b, num_classes], from the class token."""
        hidden = self.backbone.norm_f(hidden.to(self.backbone.norm_f.weight.dtype))
        cls = hidden[:, self.config.token_position].to(self.dtype)
        logits = self.classifier(self.classifier_input(cls))
        return logits.to(at_least_float32(logits.dtype))

