"""What to quantize and how: one small config shared by every recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import MQDeployError
from .quantizer import QuantSpec

# Quantized linears and the activation point that feeds each (DESIGN.md §3.3).
LINEAR_INPUTS = {"in_proj": "in_proj_input", "x_proj": "x_proj_input", "dt_proj": "dt_proj_input",
                 "out_proj": "out_proj_input"}
MODES = ("deploy", "paper")


# The depthwise conv, quantized on request (DESIGN.md §3.3: "optionally conv1d").
CONV_INPUT = {"conv1d": "conv_input"}


def input_point_of(linear: str) -> str:
    """The activation point that feeds a quantized module ('backbone.layers.0.mixer.in_proj' -> ..._input)."""
    if linear == "lm_head":
        return "lm_head_input"
    parent, _, leaf = linear.rpartition(".")
    return f"{parent}.{(LINEAR_INPUTS | CONV_INPUT)[leaf]}"


@dataclass(frozen=True)
class QuantConfig:
    w_bits: int = 8
    a_bits: int | None = None        # 16: activations stay in floating point; None: 8 for W8, 16 for W4
                                     # (W4A16 is what TensorRT runs; W4A8 has no INT4 x INT8 GEMM)
    mode: str = "deploy"             # deploy: what TensorRT runs; paper: the MambaQuant paper's settings
    group_size: int = 128            # 4-bit weights: elements per group along the input dimension
    quantize_lm_head: bool = False
    quantize_conv: bool = False      # the depthwise conv1d: INT8 per-channel weights (+ its input at A8)
    act_percentile: float = 100.0    # static activation range: 100 = min/max
    seed: int = 0                    # random Hadamard signs
    batch_size: int = 8              # calibration windows per forward pass

    def __post_init__(self):
        if self.a_bits is None:
            object.__setattr__(self, "a_bits", 16 if self.w_bits == 4 else 8)
        if (self.w_bits, self.a_bits) not in ((8, 8), (4, 8), (4, 16), (8, 16)):
            raise MQDeployError(f"unsupported bit widths W{self.w_bits}A{self.a_bits}: choose W8A8, W4A8 or W4A16")
        if self.mode not in MODES:
            raise MQDeployError(f"unknown mode {self.mode!r}: choose deploy or paper")
        if not 50.0 < self.act_percentile <= 100.0:
            raise MQDeployError(f"act_percentile must be in (50, 100], got {self.act_percentile}")

    def export_blocker(self) -> str | None:
        """Why `mq-deploy export` cannot deploy an artifact made with this config, or None."""
        if self.mode != "deploy":
            return ("a paper-mode artifact (asymmetric weights, dynamic per-sample activations) is for fake-quant "
                    "evaluation; TensorRT cannot run it: quantize with --mode deploy to export")
        if self.w_bits == 4 and self.a_bits != 16:
            return (f"W4A{self.a_bits}: TensorRT runs 4-bit weights weight-only (INT4 weights, FP16 activations); "
                    "it has no INT4 x INT8 GEMM: use W4A16 (--w-bits 4 --a-bits 16) or W8A8 (--w-bits 8 --a-bits 8)")
        return None

    @property
    def label(self) -> str:
        return f"W{self.w_bits}A{self.a_bits}"

    @property
    def quantizes_scan_output(self) -> bool:
        """The paper fake-quantizes h and C at the scan's output contraction (8-bit, per time step)."""
        return self.mode == "paper" and self.a_bits < 16

    def weight_spec(self, in_features: int) -> QuantSpec:
        """Per output channel at 8 bits; per group along the input at 4 bits (the group shrinks to the
        largest divisor of in_features, so small layers such as dt_proj stay quantizable)."""
        symmetric = self.mode == "deploy"
        if self.w_bits == 8:
            return QuantSpec(8, symmetric, "channel", axis=0)
        group = max(d for d in range(1, min(self.group_size, in_features) + 1) if in_features % d == 0)
        return QuantSpec(self.w_bits, symmetric, "group", group_size=group)

    def conv_weight_spec(self) -> QuantSpec:
        """The depthwise conv's K taps per channel: 8 bits per channel at every setting (the weight is
        tiny; 4 bits would cost accuracy for no memory)."""
        return QuantSpec(8, self.mode == "deploy", "channel", axis=0)

    def activation_spec(self) -> QuantSpec | None:
        if self.a_bits >= 16:
            return None
        return QuantSpec(self.a_bits, self.mode == "deploy", "tensor")

    def to_dict(self) -> dict:
        return asdict(self)
