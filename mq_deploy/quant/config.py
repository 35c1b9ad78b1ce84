"""What to quantize and how: one small config shared by every recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import MQDeployError
from ..models.mamba import MambaMixer
from .quantizer import QuantSpec

# Quantized linears and the activation point that feeds each (docs/export.md, "Quantization"): a Mamba-1 mixer's;
# each mixer class says its own (a Mamba-2 mixer: in_proj and out_proj).
LINEAR_INPUTS = MambaMixer.LINEAR_INPUTS
MODES = ("deploy", "paper")
WEIGHT_ROUNDINGS = ("auto", "rtn", "gptq")
WEIGHT_SCALES = ("none", "awq")
R1_ROTATIONS = ("klt", "hadamard")   # MambaQuant's residual rotation: K·H (the paper), or H alone
CALIB_DTYPES = ("auto", "float64", "float32")


# The depthwise conv, quantized on request (docs/quantization.md, "Optional: the depthwise conv").
CONV_INPUT = {"conv1d": "conv_input"}

# Deploy mode, 4-bit weights: the INT4 block sizes (along K) of the fused weight-only GEMMs that
# TensorRT runs INT4 with (NVIDIA's INT4 AWQ recipes use 128; 64 is the other size those kernels
# take). A linear whose K takes neither stays in floating point: smaller blocks would export, but
# TensorRT would dequantize them into an FP16 GEMM, paying the accuracy and saving nothing.
DEPLOY_INT4_BLOCKS = (128, 64)


def path_inputs(table: dict[str, str], paths=("",)) -> dict[str, str]:
    """`table` {leaf: its input point} for every SSM path of a mixer: the in/out projections are shared
    by the paths, the others take the path's suffix (a bidirectional mixer's "_b": x_proj_b reads
    x_proj_input_b)."""
    out = {}
    for leaf, point in table.items():
        for suffix in (("",) if leaf in SHARED_LINEARS else paths):
            out[leaf + suffix] = point + suffix
    return out


SHARED_LINEARS = ("in_proj", "out_proj")


def input_point_of(linear: str) -> str:
    """The activation point that feeds a quantized module ('backbone.layers.0.mixer.in_proj' -> ..._input,
    'classifier' -> 'classifier_input')."""
    parent, _, leaf = linear.rpartition(".")
    if not parent:
        return f"{leaf}_input"                  # the head
    return f"{parent}.{path_inputs(LINEAR_INPUTS | CONV_INPUT, ('', '_b'))[leaf]}"


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
    device: str = "cpu"              # where calibration runs and the float64 folds happen: cpu, cuda[:N]
    weight_rounding: str = "auto"    # rtn: round to nearest; gptq: error-compensating rounding (quant/gptq.py),
                                     # Hessians from the calibration inputs after the recipe's transforms;
                                     # auto: gptq for 4-bit weights in deploy mode (4 of 6 recipe x text
                                     # cells on the demo model, docs/quantization.md), else rtn
    calib_dtype: str = "auto"        # the calibration forwards: float64 or float32; auto = float32
                                     # (statistics are float64 sums and the folds float64 either way;
                                     # float64 forwards cost 1.9x on a CPU for changes below 1e-4)
    weight_scales: str = "none"      # awq: activation-aware input-channel scales searched per 4-bit linear
                                     # before rounding (quant/awq.py); weight-only (A16) settings
    effective_bits: float | None = None   # 4-bit weights: a size budget, the mean bits per weight of the
                                          # 4-bit linears; quantize() keeps the linears a sensitivity pass
                                          # finds most sensitive at higher precision within it
                                          # (quant/mixed_precision.py)
    keep_linears: tuple[str, ...] = ()    # 4-bit weights: linears (module names) kept at higher precision:
                                          # FP16 in deploy mode (TensorRT has no INT8 weight-only GEMM: it
                                          # runs INT8 weights with FP16 activations as FP16 weights), 8 bits
                                          # per channel in paper mode; the sensitivity pass's choice or yours
    r1: str = "klt"                       # MambaQuant's R1: klt = K·H (K the KLT of the residual stream, the
                                          # paper's); hadamard = the random Hadamard alone (an ablation:
                                          # docs/r1_ablation_demo.md). Other recipes take klt only (no KLT)

    def __post_init__(self):
        if self.a_bits is None:
            object.__setattr__(self, "a_bits", 16 if self.w_bits == 4 else 8)
        if (self.w_bits, self.a_bits) not in ((8, 8), (4, 8), (4, 16), (8, 16)):
            raise MQDeployError(f"unsupported bit widths W{self.w_bits}A{self.a_bits}: choose W8A8, W4A8 or W4A16")
        if self.mode not in MODES:
            raise MQDeployError(f"unknown mode {self.mode!r}: choose deploy or paper")
        if self.mode == "deploy" and self.w_bits == 4 and self.group_size not in DEPLOY_INT4_BLOCKS:
            raise MQDeployError(f"group_size {self.group_size}: TensorRT's fused INT4 weight-only GEMMs take blocks of "
                                f"{' or '.join(map(str, DEPLOY_INT4_BLOCKS))} along K; choose one, or use --mode paper")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise MQDeployError(f"unknown weight rounding {self.weight_rounding!r}: choose {' or '.join(WEIGHT_ROUNDINGS)}")
        if self.weight_rounding == "auto":
            object.__setattr__(self, "weight_rounding", "gptq" if self.w_bits == 4 and self.mode == "deploy" else "rtn")
        if self.weight_rounding == "gptq" and self.mode != "deploy":
            raise MQDeployError("--weight-rounding gptq takes symmetric weights (deploy mode); the paper mode's "
                                "asymmetric weights round to nearest: use --mode deploy or --weight-rounding rtn")
        if self.weight_scales not in WEIGHT_SCALES:
            raise MQDeployError(f"unknown weight scales {self.weight_scales!r}: choose {' or '.join(WEIGHT_SCALES)}")
        if self.weight_scales == "awq" and (self.w_bits, self.a_bits) != (4, 16):
            raise MQDeployError(f"--weight-scales awq is for 4-bit weight-only quantization (W4A16), not "
                                f"W{self.w_bits}A{self.a_bits}: its scales would move the quantized activations' ranges")
        if self.r1 not in R1_ROTATIONS:
            raise MQDeployError(f"unknown R1 rotation {self.r1!r}: choose {' or '.join(R1_ROTATIONS)}")
        if self.calib_dtype not in CALIB_DTYPES:
            raise MQDeployError(f"unknown calibration dtype {self.calib_dtype!r}: choose {', '.join(CALIB_DTYPES)}")
        if not (self.device == "cpu" or self.device.split(":")[0] == "cuda"):
            raise MQDeployError(f"unknown device {self.device!r}: choose cpu or cuda (cuda:N)")
        if not 50.0 < self.act_percentile <= 100.0:
            raise MQDeployError(f"act_percentile must be in (50, 100], got {self.act_percentile}")
        keep = (self.keep_linears,) if isinstance(self.keep_linears, str) else self.keep_linears
        object.__setattr__(self, "keep_linears", tuple(sorted(set(keep))))     # JSON gives a list
        if (self.keep_linears or self.effective_bits is not None) and self.w_bits != 4:
            raise MQDeployError(f"--effective-bits and --keep-linears are for 4-bit weights; W{self.w_bits} "
                                "has no lower-precision linears to make exceptions among: use --w-bits 4")
        if self.effective_bits is not None and self.weight_scales == "awq":
            raise MQDeployError("--effective-bits with --weight-scales awq is not supported yet (the sensitivity "
                                "pass compares models without AWQ's folds); use one of them, or --keep-linears with awq")
        if self.effective_bits is not None and not 4.0 <= self.effective_bits <= self.kept_bits:
            raise MQDeployError(f"--effective-bits {self.effective_bits}: give the mean bits per weight of the 4-bit "
                                f"linears, between 4 (all at 4 bits) and {self.kept_bits} (all kept at "
                                f"{'FP16' if self.kept_bits == 16 else '8 bits'}, what --keep-linears means in "
                                f"{self.mode} mode)")

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
    def kept_bits(self) -> int:
        """The bits a linear of keep_linears costs: FP16 in deploy mode, 8 in paper mode."""
        return 16 if self.mode == "deploy" else 8

    @property
    def forward_dtype(self):
        """torch dtype of the calibration forwards (statistics are accumulated in float64 anyway)."""
        import torch
        name = "float32" if self.calib_dtype == "auto" else self.calib_dtype
        return getattr(torch, name)

    @property
    def label(self) -> str:
        return f"W{self.w_bits}A{self.a_bits}"

    @property
    def quantizes_scan_output(self) -> bool:
        """The paper fake-quantizes h and C at the scan's output contraction (8-bit, per time step)."""
        return self.mode == "paper" and self.a_bits < 16

    def quantizes_lm_head(self, hidden_size: int) -> bool:
        """--quantize-lm-head asked for, and its K takes a quantization (else the head stays FP, and
        a tied head stays tied)."""
        return self.quantize_lm_head and self.weight_spec(hidden_size, "lm_head") is not None

    def weight_spec(self, in_features: int, linear: str = "", name: str | None = None) -> QuantSpec | None:
        """How a linear's weight (K = in_features, `linear` its leaf name) is quantized, or None
        when it stays in floating point. 8 bits: per output channel. 4 bits, paper mode: per group
        along K, the group shrinking to the largest divisor of K (every linear quantized, as the
        paper does). 4 bits, deploy mode: what TensorRT runs as a fused INT4 weight-only GEMM
        (docs/export.md, "What each linear becomes"): blocks of group_size (128 or 64) along K, or 64
        when K only takes that; dt_proj (K = dt_rank, a low-rank bottleneck) and linears whose K
        takes no block stay FP. `name` (the module's full name) in keep_linears: FP in deploy mode, 8
        bits per output channel in paper mode."""
        symmetric = self.mode == "deploy"
        if name is not None and name in self.keep_linears:
            return None if self.mode == "deploy" else QuantSpec(8, symmetric, "channel", axis=0)
        if self.w_bits == 8:
            return QuantSpec(8, symmetric, "channel", axis=0)
        if self.mode == "paper":
            group = max(d for d in range(1, min(self.group_size, in_features) + 1) if in_features % d == 0)
            return QuantSpec(self.w_bits, symmetric, "group", group_size=group)
        if linear in ("dt_proj", "dt_proj_b"):
            return None
        group = next((g for g in DEPLOY_INT4_BLOCKS if g <= self.group_size and in_features % g == 0), None)
        return None if group is None else QuantSpec(self.w_bits, True, "group", group_size=group)

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
