"""The Mamba-1 LM as an ONNX graph, emitted from the weights (docs/export.md has the picture).

Token-major throughout ([batch, seqlen, channels]); dims `batch` and `seqlen` are symbolic.
Precision (FP16 graph): weights and activations FP16; the residual stream, RMSNorm statistics,
the SSM state and the scan's parameters FP32 (as the torch model and the SelectiveScan contract
have them), with explicit Casts where the two meet, so a strongly typed TensorRT network gets
exactly these types. In an FP32 graph the Casts vanish.

`decode=True` builds the single-token step: conv and SSM states are inputs and outputs, and the
state update is standard ops instead of the SelectiveScan node.

`fuse_quantize=True` (plugin graphs) emits out_proj's online Hadamard and its INT8 input quantizer as
one HadamardQuantize node (codes out, DequantizeLinear -> MatMul after it), instead of
HadamardTransform -> QuantizeLinear -> DequantizeLinear.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from ..deploy.contract import state_names
from ..quant.config import input_point_of
from .hadamard_node import (emit_hadamard_inline, emit_hadamard_node, emit_hadamard_quantize_node, hadamard_function,
                            hadamard_quantize_function)
from .linear_forms import linear_form, quantizes_input
from .onnx_builder import (DOMAIN, DOMAIN_VERSION, FLOAT_TYPES, INT4_IR_VERSION, INT4_OPSET, IR_VERSION, NUMPY_OF,
                           OPSET, GraphBuilder)
from .qdq import (ACT_QUANTIZE_SUFFIX, activation_scale_consts, emit_activation_dequantize, emit_activation_qdq,
                  emit_conv_weight, emit_linear, emit_weight)
from .selective_scan_node import emit_scan_body, emit_selective_scan_node, selective_scan_function
from .ssd_scan_node import ssd_scan_function
from .source import ExportSource

FLOAT = TensorProto.FLOAT
BATCH, SEQLEN = "batch", "seqlen"
PRODUCER = "mq-deploy"


@dataclass
class GraphIO:
    name: str
    dtype: int
    shape: list

    def as_dict(self) -> dict:
        return {"name": self.name, "dtype": helper.tensor_dtype_to_np_dtype(self.dtype).name, "shape": self.shape}


@dataclass
class BuiltGraph:
    model: onnx.ModelProto
    inputs: list[GraphIO] = field(default_factory=list)
    outputs: list[GraphIO] = field(default_factory=list)
    linear_forms: dict[str, str] = field(default_factory=dict)      # linear -> form (linear_forms.py)


class MambaGraphEmitter:
    GRAPH_NAME = "mamba_lm"

    def __init__(self, source: ExportSource, precision: str, scan: str, decode: bool, fuse_quantize: bool = False):
        self.src, self.cfg = source, source.config
        self.fuse_quantize = fuse_quantize and scan == "plugin"
        self.precision, self.ft = precision, FLOAT_TYPES[precision]
        self.np_ft = NUMPY_OF[self.ft]
        self.scan, self.decode = scan, decode
        self.b = GraphBuilder()
        self.model = source.model
        self.forms: dict[str, str] = {}          # linear -> form in this graph (linear_forms.py)

    # ------------------------------------------------------------------ helpers
    def to_float(self, x: str, name: str) -> str:
        return x if self.ft == FLOAT else self.b.cast(x, FLOAT, name=name)

    def to_graph_type(self, x: str, name: str) -> str:
        return x if self.ft == FLOAT else self.b.cast(x, self.ft, name=name)

    def fp(self, tensor: torch.Tensor, name: str, dtype=None) -> str:
        return self.b.const(tensor.detach().double().numpy().astype(dtype or self.np_ft), name)

    def form_of(self, module_name: str):
        """(weight spec, input scale or None, form) of a linear in this graph (linear_forms.py)."""
        spec = self.src.weight_specs.get(module_name)
        scale = self.src.activation_scales.get(self.src.input_point(module_name)) if spec else None
        form = linear_form(spec, scale, "decode" if self.decode else "prefill")
        self.forms[module_name] = form
        return spec, (scale if quantizes_input(form) else None), form

    def linear(self, x: str, module_name: str) -> str:
        spec, scale, _ = self.form_of(module_name)
        return emit_linear(self.b, x, self.model.get_submodule(module_name), self.ft, module_name, spec, scale,
                           use_bias=not module_name.endswith((".dt_proj", ".dt_proj_b")))   # the scan's delta_bias

    def rmsnorm(self, residual: str, norm, name: str) -> str:
        """fp32 statistics of the fp32 residual, normalized value cast to the graph type, then γ."""
        b = self.b
        mean_sq = b.node("ReduceMean", [b.node("Mul", [residual, residual], name=f"{name}.square"), b.small([-1])],
                         name=f"{name}.mean_square", keepdims=1)
        eps = b.small(np.float32(norm.eps), dtype=np.float32)
        inv_rms = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [mean_sq, eps], name=f"{name}.plus_eps")],
                                               name=f"{name}.rms")], name=f"{name}.inv_rms")
        normalized = self.to_graph_type(b.node("Mul", [residual, inv_rms], name=f"{name}.normalize"),
                                        f"{name}.to_graph_type")
        return b.node("Mul", [normalized, self.fp(norm.weight, f"{name}.weight")], name=f"{name}.scale")

    # ------------------------------------------------------------------ mixer
    def causal_conv(self, x: str, conv: torch.nn.Conv1d, prefix: str, conv_state_in: str | None,
                    suffix: str = "", reverse: bool = False):
        """Depthwise causal conv on [b, L, D]: pad K-1 steps of history (zeros, or the carried state),
        Conv with group=D, and return the last K-1 inputs as the new state [b, D, K-1].
        reverse: the anti-causal conv of a backward path (the causal conv of the time-flipped input,
        flipped back): K-1 zeros after the sequence, the kernel's taps in reverse order, no state."""
        b, k = self.b, conv.kernel_size[0]
        xt = b.node("Transpose", [x], name=f"{prefix}.conv{suffix}_to_channels", perm=[0, 2, 1])     # [b, D, L]
        if reverse:
            padded = b.node("Pad", [xt, b.small([0, 0, 0, 0, 0, k - 1])], name=f"{prefix}.conv{suffix}_pad",
                            mode="constant")
        elif conv_state_in is None:
            padded = b.node("Pad", [xt, b.small([0, 0, k - 1, 0, 0, 0])], name=f"{prefix}.conv_pad", mode="constant")
        else:
            padded = b.node("Concat", [conv_state_in, xt], name=f"{prefix}.conv_window", axis=2)
        name = f"{prefix}.conv1d{suffix}"
        spec = self.src.weight_specs.get(name)
        scale = self.src.activation_scales.get(input_point_of(name)) if spec else None
        if scale is not None:
            # Q/DQ on the whole window, next to the Conv where TensorRT fuses it. The carried state
            # is already quantized (re-quantizing a DQ output gives the same code) and the padding
            # is 0, so this is the torch model's per-token quantization of the conv input.
            padded = emit_activation_qdq(b, padded, scale, self.ft, name)
        taps = conv.weight.flip(-1) if reverse else conv.weight
        weight = emit_conv_weight(b, taps, self.ft, name, spec) if spec else self.fp(taps, f"{name}.weight")
        inputs = [padded, weight]
        if conv.bias is not None:
            inputs.append(self.fp(conv.bias, f"{name}.bias"))
        y = b.node("Conv", inputs, name=name, group=conv.in_channels, kernel_shape=[k], pads=[0, 0])
        state = None if reverse else b.node("Slice", [padded, b.small([-(k - 1)]), b.small([np.iinfo(np.int64).max]),
                                                      b.small([2])], name=f"{prefix}.conv_state")
        return b.node("Transpose", [y], name=f"{prefix}.conv{suffix}_to_tokens", perm=[0, 2, 1]), state

    def scan_params(self, mixer, prefix: str, suffix: str = "") -> list[str]:
        gate_scale = mixer.gate_scale if mixer.gate_scale is not None else torch.ones(mixer.d_inner)
        return [self.fp(-torch.exp(getattr(mixer, f"A{suffix}_log").double()), f"{prefix}.A{suffix}", np.float32),
                self.fp(getattr(mixer, "D" + suffix), f"{prefix}.D{suffix}", np.float32),
                self.fp(getattr(mixer, "dt_proj" + suffix).bias, f"{prefix}.delta_bias{suffix}", np.float32),
                self.fp(gate_scale, f"{prefix}.gate_scale", np.float32)]

    def state_update(self, x, delta, A, B, C, D, delta_bias, z, gate_scale, h_in: str, p: str):
        """One token of the SelectiveScan math with state in/out, standard ops, float32."""
        b = self.b
        f = {n: self.to_float(t, f"{p}.{n}_f32") for n, t in (("x", x), ("delta", delta), ("B", B), ("C", C), ("z", z))}
        dt = b.node("Softplus", [b.node("Add", [f["delta"], delta_bias], name=f"{p}.delta_plus_bias")], name=f"{p}.dt")
        cols = lambda t, n: b.node("Transpose", [t], name=f"{p}.{n}_col", perm=[0, 2, 1])     # noqa: E731 [b,D,1]
        dt_col = cols(dt, "dt")
        decay = b.node("Exp", [b.node("Mul", [dt_col, A], name=f"{p}.dtA")], name=f"{p}.decay")          # [b, D, N]
        dBx = b.node("Mul", [cols(b.node("Mul", [dt, f["x"]], name=f"{p}.dt_x"), "dtx"), f["B"]], name=f"{p}.dBx")
        h = b.node("Add", [b.node("Mul", [decay, h_in], name=f"{p}.decay_h"), dBx], name=f"{p}.h")
        y = b.node("ReduceSum", [b.node("Mul", [h, f["C"]], name=f"{p}.hC"), b.small([-1])], name=f"{p}.y_col",
                   keepdims=1)                                                                      # [b, D, 1]
        y = b.node("Add", [cols(y, "y"), b.node("Mul", [f["x"], D], name=f"{p}.D_x")], name=f"{p}.skip")
        gate = b.node("Mul", [f["z"], b.node("Sigmoid", [b.node("Mul", [gate_scale, f["z"]], name=f"{p}.s_z")],
                                             name=f"{p}.sigmoid_sz")], name=f"{p}.gate")
        y = self.to_graph_type(b.node("Mul", [y, gate], name=f"{p}.gated"), f"{p}.y")
        return y, h

    def ssm_path(self, mixer, prefix: str, x: str, z: str, suffix: str = "", reverse: bool = False,
                 names: dict | None = None) -> str:
        """conv -> SiLU -> x_proj -> dt_proj -> SelectiveScan of one SSM path (`suffix` names its
        parameters: "" or a backward path's "_b", which runs reversed); returns the gated scan output.
        names: the layer's state I/O names (a language model's graph), None for a stateless graph."""
        b, p = self.b, f"{prefix}{suffix}"
        conv_in = names["conv_in"] if names and self.decode else None
        x, conv_state = self.causal_conv(x, getattr(mixer, "conv1d" + suffix), prefix, conv_in, suffix, reverse)
        if names:
            b.node("Identity", [conv_state], [names["conv_out"]], name=f"{prefix}.conv_state_out")
        x = b.node("Mul", [x, b.node("Sigmoid", [x], name=f"{p}.conv_sigmoid")], name=f"{p}.conv_silu")
        point, x_proj_in = f"{prefix}.x_proj_input{suffix}", x
        if point in self.src.channel_scales:        # SmoothQuant's pre-quantization multiply (x_proj only:
            x_proj_in = b.node("Mul", [x, self.fp(self.src.channel_scales[point], f"{point}.scale")],   # the scan
                               name=f"{p}.x_proj_smooth")                                            # reads x)
        dbc = self.linear(x_proj_in, f"{prefix}.x_proj{suffix}")
        dt, B, C = b.node("Split", [dbc, b.small([mixer.dt_rank, mixer.d_state, mixer.d_state])], 3,
                          name=f"{p}.split_dt_B_C", axis=-1)
        delta = self.linear(dt, f"{prefix}.dt_proj{suffix}")
        inputs = [x, delta] + self.scan_params(mixer, prefix, suffix)
        inputs = [inputs[0], inputs[1], inputs[2], B, C, inputs[3], inputs[4], z, inputs[5]]   # contract order
        state_out = names["ssm_out"] if names else b.unique(f"{p}.scan_final_state")
        if self.decode:
            y, h = self.state_update(*inputs, h_in=names["ssm_in"], p=f"{prefix}.state_update")
            b.node("Identity", [h], [state_out], name=f"{prefix}.ssm_state_out")
        elif self.scan == "plugin":
            y, _ = emit_selective_scan_node(b, inputs, f"{p}.selective_scan", reverse=reverse,
                                            outputs=[b.unique(f"{p}.scan_y"), state_out])
        else:
            y, _ = emit_scan_body(b, inputs, [b.unique(f"{p}.scan_y"), state_out],
                                  prefix=f"{p}.selective_scan", delta_softplus=1, reverse=int(reverse))
        return y

    def out_projection(self, prefix: str, y: str) -> str:
        """The out_proj input's online transform (R2's Hadamard), then out_proj; with fuse_quantize and
        a quantized input, the transform emits the INT8 codes itself (HadamardQuantize)."""
        b, name = self.b, f"{prefix}.out_proj"
        point = f"{prefix}.out_proj_input"
        if point in self.src.hadamard_signs:
            signs = self.src.hadamard_signs[point]
            if self.scan == "plugin":
                signs = self.fp(signs, f"{point}.signs", np.float32)
                spec, scale, _ = self.form_of(name)
                if self.fuse_quantize and scale is not None:
                    s, zp = activation_scale_consts(b, scale, self.ft, name)
                    codes = emit_hadamard_quantize_node(b, y, signs, s, f"{name}{ACT_QUANTIZE_SUFFIX}")
                    return emit_linear(b, emit_activation_dequantize(b, codes, s, zp, name),
                                       self.model.get_submodule(name), self.ft, name, spec)
                y = emit_hadamard_node(b, y, signs, f"{prefix}.hadamard")
            else:
                y = emit_hadamard_inline(b, y, signs, self.ft, f"{prefix}.hadamard")
        return self.linear(y, name)

    def split_xz(self, prefix: str, mixer, hidden: str) -> tuple[str, str]:
        xz = self.linear(hidden, f"{prefix}.in_proj")
        return self.b.node("Split", [xz, self.b.small([mixer.d_inner, mixer.d_inner])], 2, name=f"{prefix}.split_xz",
                           axis=-1)

    def mixer(self, i: int, hidden: str):
        prefix = f"backbone.layers.{i}.mixer"
        mixer = self.model.get_submodule(prefix)
        x, z = self.split_xz(prefix, mixer, hidden)
        return self.out_projection(prefix, self.ssm_path(mixer, prefix, x, z, names=state_names(i)))

    # ------------------------------------------------------------------ model
    def state_shapes(self) -> tuple[list[int], list[int]]:
        """A layer's conv and SSM state shapes after the batch dim."""
        cfg = self.cfg
        return [cfg.intermediate_size, cfg.conv_kernel - 1], [cfg.intermediate_size, cfg.state_size]

    def head_weight(self) -> str | None:
        """A tied, unquantized lm_head reads the embedding table through a Transpose (stored once)."""
        if self.model.lm_head.weight is self.model.backbone.embeddings.weight and "lm_head" not in self.src.weight_specs:
            return self.b.node("Transpose", [self.embedding_table], name="lm_head.weight_transpose", perm=[1, 0])
        return None

    def build(self) -> BuiltGraph:
        b, cfg = self.b, self.cfg
        seq = 1 if self.decode else SEQLEN
        inputs = [GraphIO("input_ids", TensorProto.INT64, [BATCH, seq])]
        outputs = [GraphIO("logits", FLOAT, [BATCH, seq, cfg.vocab_size])]
        conv_shape, ssm_shape = self.state_shapes()
        for i in range(cfg.num_hidden_layers):
            n = state_names(i)
            if self.decode:
                inputs += [GraphIO(n["conv_in"], self.ft, [BATCH, *conv_shape]), GraphIO(n["ssm_in"], FLOAT, [BATCH, *ssm_shape])]
            outputs += [GraphIO(n["conv_out"], self.ft, [BATCH, *conv_shape]), GraphIO(n["ssm_out"], FLOAT, [BATCH, *ssm_shape])]
        for io in inputs:
            b._used.add(io.name)
        self.embedding_table = self.fp(self.model.backbone.embeddings.weight, "backbone.embeddings.weight")
        hidden = b.node("Gather", [self.embedding_table, "input_ids"], name="backbone.embeddings", axis=0)
        residual_type = FLOAT if cfg.residual_in_fp32 else self.ft
        residual = hidden if residual_type == self.ft else b.cast(hidden, FLOAT, name="backbone.residual_f32")
        for i, layer in enumerate(self.model.backbone.layers):
            prefix = f"backbone.layers.{i}"
            normed = self.rmsnorm(self.to_float(residual, f"{prefix}.norm_input_f32"), layer.norm, f"{prefix}.norm")
            out = self.mixer(i, normed)
            if residual_type == FLOAT:
                out = self.to_float(out, f"{prefix}.mixer_out_f32")
            residual = b.node("Add", [residual, out], name=f"{prefix}.residual_add")
        normed = self.rmsnorm(self.to_float(residual, "backbone.norm_f_input_f32"), self.model.backbone.norm_f,
                              "backbone.norm_f")
        spec, scale, _ = self.form_of("lm_head")
        x = normed
        if "lm_head_input" in self.src.online_matrices:     # a rotated stream's exit into a tied head
            x = b.node("MatMul", [x, self.fp(self.src.online_matrices["lm_head_input"], "lm_head_input.matrix")],
                       name="lm_head_input.exit_transform")
        weight = self.head_weight()
        if scale is not None:
            x = emit_activation_qdq(b, x, scale, self.ft, "lm_head")
        if spec is not None:
            weight = emit_weight(b, self.model.lm_head.weight, self.ft, "lm_head", spec)
        logits = emit_linear(b, x, self.model.lm_head, self.ft, "lm_head", weight=weight)
        if self.ft == FLOAT:
            b.node("Identity", [logits], ["logits"], name="logits")
        else:
            b.node("Cast", [logits], ["logits"], name="logits", to=FLOAT)
        return BuiltGraph(self._model(inputs, outputs), inputs, outputs, dict(sorted(self.forms.items())))

    def _model(self, inputs: list[GraphIO], outputs: list[GraphIO]) -> onnx.ModelProto:
        b = self.b
        io_names = {io.name for io in inputs + outputs} | {t.name for t in b.initializers}
        graph = helper.make_graph(
            b.nodes, f"{self.GRAPH_NAME}_decode_step" if self.decode else self.GRAPH_NAME,
            [helper.make_tensor_value_info(io.name, io.dtype, io.shape) for io in inputs],
            [helper.make_tensor_value_info(io.name, io.dtype, io.shape) for io in outputs],
            b.initializers, value_info=b.value_infos(io_names))
        functions = []
        if any(n.op_type == "SelectiveScan" for n in b.nodes):
            functions.append(selective_scan_function())
        if any(n.op_type == "SSDScan" for n in b.nodes):
            functions.append(ssd_scan_function())
        for op, function_of in (("HadamardTransform", hadamard_function),
                                ("HadamardQuantize", hadamard_quantize_function)):
            if any(n.op_type == op for n in b.nodes):
                sizes = {s.numel() for s in self.src.hadamard_signs.values()}
                if len(sizes) != 1:
                    raise ValueError(f"online Hadamard transforms of several sizes {sorted(sizes)}; one is supported")
                functions.append(function_of(sizes.pop()))
        int4 = any(t.data_type == TensorProto.INT4 for t in b.initializers)
        opset = INT4_OPSET if int4 else OPSET
        for function in functions:                 # a function imports the model's ai.onnx version
            for imp in function.opset_import:
                if imp.domain in ("", "ai.onnx"):
                    imp.version = opset
        opsets = [helper.make_opsetid("", opset)]
        if functions:
            opsets.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        model = helper.make_model(graph, opset_imports=opsets, functions=functions, producer_name=PRODUCER)
        model.ir_version = INT4_IR_VERSION if int4 else IR_VERSION
        onnx.helper.set_model_props(model, {"mq_deploy.graph": "decode" if self.decode else "prefill",
                                            "mq_deploy.precision": self.precision, "mq_deploy.scan": self.scan})
        return model


def build_graph(source: ExportSource, precision: str = "fp16", scan: str = "plugin", decode: bool = False,
                fuse_quantize: bool = False) -> BuiltGraph:
    from ..models.mamba2 import Mamba2LM
    from ..models.vim import VisionMamba
    if isinstance(source.model, Mamba2LM):
        from .mamba2_graph import Mamba2GraphEmitter as emitter
    elif isinstance(source.model, VisionMamba):
        if decode:
            raise ValueError("a Vision Mamba has no decode graph: it classifies whole images")
        from .vim_graph import VimGraphEmitter as emitter
    else:
        emitter = MambaGraphEmitter
    return emitter(source, precision, scan, decode, fuse_quantize).build()
