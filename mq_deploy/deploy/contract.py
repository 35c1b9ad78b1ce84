"""The contract between an exported graph, the TensorRT plugins and every program that runs them
(plugins/*/README.md, docs/export.md). Plain names: no onnx, no torch."""

from __future__ import annotations

# ---- custom ops: ONNX node == TensorRT plugin ------------------------------------------------------
DOMAIN = "mq_deploy"                 # ONNX domain of the nodes and of their local functions
DOMAIN_VERSION = 1
PLUGIN_VERSION = "1"                 # node attribute plugin_version == the plugin's version
PLUGIN_NAMESPACE = "mq_deploy"       # node attribute plugin_namespace == the plugin's namespace

SCAN_OP = "SelectiveScan"
SCAN_INPUTS = ("x", "delta", "A", "B", "C", "D", "delta_bias", "z", "gate_scale")   # all present, this order
SCAN_OUTPUTS = ("y", "final_state")
SCAN_FP32_INPUTS = ("A", "D", "delta_bias", "gate_scale")
SCAN_ATTRIBUTES = ("delta_softplus", "reverse")           # int 0/1, besides plugin_version/namespace

# Mamba-2's scan (docs/export.md, plugins/ssd_scan/README.md): its own op, not SelectiveScan with more
# shapes: A is one scalar per head, dt one value per head, B and C are shared by the heads of a group,
# the state is [batch, heads, head_dim, N], and the gate lives in the gated RMSNorm after it.
SSD_SCAN_OP = "SSDScan"
SSD_SCAN_INPUTS = ("x", "dt", "A", "B", "C", "D", "dt_bias")          # all present, this order
SSD_SCAN_OUTPUTS = ("y", "final_state")
SSD_SCAN_FP32_INPUTS = ("A", "D", "dt_bias")
SSD_SCAN_INT_ATTRIBUTES = ("head_dim", "n_groups")      # positive ints: x is [B, L, heads*head_dim], B/C [B, L, n_groups*N]
SSD_SCAN_FLAG_ATTRIBUTES = ("dt_softplus",)             # int 0/1
SSD_SCAN_FLOAT_ATTRIBUTES = ("dt_min", "dt_max")        # dt is always clamped to [dt_min, dt_max] (the
                                                        # defaults 0, inf change nothing after the softplus)

HADAMARD_OP = "HadamardTransform"
HADAMARD_INPUTS = ("x", "signs")
HADAMARD_OUTPUTS = ("y",)

# The Hadamard with out_proj's input quantization in its epilogue (export --fuse-quantize): INT8 codes
# saturate(round_half_even(float32(x·diag(signs)·H_n) / float32(scale))), scale a scalar in x's type (the
# same initializer the DequantizeLinear after it reads), so the graph keeps DQ -> MatMul for TensorRT.
HADAMARD_QUANTIZE_OP = "HadamardQuantize"
HADAMARD_QUANTIZE_INPUTS = ("x", "signs", "scale")
HADAMARD_QUANTIZE_OUTPUTS = ("y",)

PLUGIN_OPS = (SCAN_OP, SSD_SCAN_OP, HADAMARD_OP, HADAMARD_QUANTIZE_OP)

# ---- graphs and their state -------------------------------------------------------------------------
GRAPH_KINDS = ("prefill", "decode")
INPUT_IDS = "input_ids"
IMAGES = "images"                  # a vision graph's input [batch, C, H, W], float32
LOGITS = "logits"
CONV_STATE = "conv_state"            # [batch, conv channels, conv_kernel - 1], the graph's float type
                                     # (Mamba-1: d_inner channels; Mamba-2: x, B and C's conv_dim)
SSM_STATE = "ssm_state"              # float32; Mamba-1 [batch, d_inner, state_size],
                                     # Mamba-2 [batch, heads, head_dim, state_size]
OUT_SUFFIX = "_out"


def state_names(layer: int) -> dict[str, str]:
    """Per-layer state tensor names: decode inputs (`*_in`), and the outputs of both graphs."""
    return {"conv_in": f"{CONV_STATE}.{layer}", "ssm_in": f"{SSM_STATE}.{layer}",
            "conv_out": f"{CONV_STATE}{OUT_SUFFIX}.{layer}", "ssm_out": f"{SSM_STATE}{OUT_SUFFIX}.{layer}"}


def is_state_output(name: str) -> bool:
    return name.startswith((f"{CONV_STATE}{OUT_SUFFIX}.", f"{SSM_STATE}{OUT_SUFFIX}."))


def carry(outputs: dict) -> dict:
    """A graph's outputs -> the next decode step's state inputs: `conv_state_out.3` feeds
    `conv_state.3`, `ssm_state_out.3` feeds `ssm_state.3`; logits are not carried. Values are
    passed through untouched (numpy arrays or device tensors)."""
    return {name.replace(OUT_SUFFIX + ".", ".", 1): value for name, value in outputs.items() if is_state_output(name)}
