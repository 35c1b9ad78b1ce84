"""A Mamba-2 language model as an ONNX graph: the Mamba-1 emitter (graph_builder.py) with Mamba-2's
mixer. Embedding, RMSNorms, residual stream, lm_head, QDQ and the graph I/O are the same code.

    in_proj (QDQ) -> Split z | xBC | dt -> depthwise causal conv over xBC (+ state) -> SiLU
    -> Split x | B | C -> SSDScan (plugin node + local function; decode: standard ops with the state)
    -> gated RMSNorm: norm(y * gate(z)) * w in float32 statistics, per group of channels
    -> the out_proj input's online Hadamard (R2) -> out_proj (QDQ)

State per layer: conv_state [batch, conv_dim, K-1] (x, B and C's conv window, the graph's float type)
and ssm_state [batch, heads, head_dim, state_size] (float32), as Mamba2LM's MambaState holds them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..deploy.contract import state_names
from .graph_builder import MambaGraphEmitter
from .ssd_scan_node import clamped_dt, emit_ssd_body, emit_ssd_scan_node, plugin_attributes


class Mamba2GraphEmitter(MambaGraphEmitter):
    GRAPH_NAME = "mamba2_lm"

    def state_shapes(self) -> tuple[list[int], list[int]]:
        cfg = self.cfg
        return [cfg.conv_dim, cfg.conv_kernel - 1], [cfg.num_heads, cfg.head_dim, cfg.state_size]

    def scan_attributes(self) -> dict:
        cfg = self.cfg
        return plugin_attributes(cfg.head_dim, cfg.n_groups, dt_softplus=True, dt_limit=cfg.time_step_limit)

    def mixer(self, i: int, hidden: str) -> str:
        b, prefix, names = self.b, f"backbone.layers.{i}.mixer", state_names(i)
        mixer = self.model.get_submodule(prefix)
        heads, groups_n = mixer.num_heads, mixer.n_groups * mixer.d_state
        z, xbc, dt = b.node("Split", [self.linear(hidden, f"{prefix}.in_proj"),
                                      b.small([mixer.d_inner, mixer.conv_dim, heads])], 3,
                            name=f"{prefix}.split_z_xBC_dt", axis=-1)
        xbc, conv_state = self.causal_conv(xbc, mixer.conv1d, prefix, names["conv_in"] if self.decode else None)
        b.node("Identity", [conv_state], [names["conv_out"]], name=f"{prefix}.conv_state_out")
        xbc = b.node("Mul", [xbc, b.node("Sigmoid", [xbc], name=f"{prefix}.conv_sigmoid")], name=f"{prefix}.conv_silu")
        x, B, C = b.node("Split", [xbc, b.small([mixer.d_inner, groups_n, groups_n])], 3, name=f"{prefix}.split_x_B_C",
                         axis=-1)
        A = self.fp(-torch.exp(mixer.A_log.double()), f"{prefix}.A", np.float32)
        D = self.fp(mixer.D, f"{prefix}.D", np.float32)
        dt_bias = self.fp(mixer.dt_bias, f"{prefix}.dt_bias", np.float32)
        inputs = [x, dt, A, B, C, D, dt_bias]
        if self.decode:
            y, h = self.state_update(mixer, inputs, names["ssm_in"], f"{prefix}.state_update")
            b.node("Identity", [h], [names["ssm_out"]], name=f"{prefix}.ssm_state_out")
        elif self.scan == "plugin":
            y, _ = emit_ssd_scan_node(b, inputs, f"{prefix}.ssd_scan", [b.unique(f"{prefix}.scan_y"), names["ssm_out"]],
                                      head_dim=mixer.head_dim, n_groups=mixer.n_groups,
                                      dt_limit=self.cfg.time_step_limit)
        else:
            y, _ = emit_ssd_body(b, inputs, [b.unique(f"{prefix}.scan_y"), names["ssm_out"]],
                                 prefix=f"{prefix}.ssd_scan", attrs=self.scan_attributes())
        return self.out_projection(prefix, self.gated_norm(mixer, y, z, prefix))

    def state_update(self, mixer, inputs: list[str], h_in: str, p: str) -> tuple[str, str]:
        """One token of the SSDScan math with the state in and out, standard ops, float32, static
        head shapes (the batch dim is the only free one)."""
        b = self.b
        x, dt, A, B, C, D, dt_bias = inputs
        heads, head_dim, groups, n = mixer.num_heads, mixer.head_dim, mixer.n_groups, mixer.d_state
        f = {name: self.to_float(t, f"{p}.{name}_f32") for name, t in (("x", x), ("dt", dt), ("B", B), ("C", C))}
        step = clamped_dt(b, f["dt"], dt_bias, self.scan_attributes(), p)                           # [b, 1, H]
        step = b.node("Reshape", [step, b.small([-1, heads, 1, 1])], name=f"{p}.dt_heads")          # [b, H, 1, 1]
        decay = b.node("Exp", [b.node("Mul", [step, b.node("Reshape", [A, b.small([heads, 1, 1])], name=f"{p}.A_col")],
                                      name=f"{p}.dtA")], name=f"{p}.decay")
        x3 = b.node("Reshape", [f["x"], b.small([-1, heads, head_dim])], name=f"{p}.x_heads")        # [b, H, P]
        dtx = b.node("Mul", [b.node("Unsqueeze", [x3, b.small([3])], name=f"{p}.x_col"), step], name=f"{p}.dt_x")

        def per_head(t: str, name: str) -> str:        # [b, 1, G*N] -> [b, H, 1, N]
            g = b.node("Reshape", [t, b.small([-1, groups, 1, 1, n])], name=f"{p}.{name}_groups")
            wide = b.node("Expand", [g, b.small([1, 1, heads // groups, 1, 1])], name=f"{p}.{name}_expand")
            return b.node("Reshape", [wide, b.small([-1, heads, 1, n])], name=f"{p}.{name}_heads")

        h = b.node("Add", [b.node("Mul", [decay, h_in], name=f"{p}.decay_h"),
                           b.node("Mul", [dtx, per_head(f["B"], "B")], name=f"{p}.dtx_B")], name=f"{p}.h")
        y = b.node("ReduceSum", [b.node("Mul", [h, per_head(f["C"], "C")], name=f"{p}.hC"), b.small([-1])],
                   name=f"{p}.y_heads", keepdims=0)                                                    # [b, H, P]
        y = b.node("Add", [y, b.node("Mul", [x3, b.node("Unsqueeze", [D, b.small([-1])], name=f"{p}.D_col")],
                                     name=f"{p}.D_x")], name=f"{p}.skip")
        y = b.node("Reshape", [y, b.small([-1, 1, heads * head_dim])], name=f"{p}.y_tokens")
        return self.to_graph_type(y, f"{p}.y"), h

    def gated_norm(self, mixer, y: str, z: str, prefix: str) -> str:
        """GatedRMSNorm (models/mamba2.py): the gate z * sigmoid(s * z) and the group statistics in
        float32, the normalized value cast to the graph type, then the weight; no norm: y * gate."""
        b, norm, p = self.b, mixer.norm, f"{prefix}.norm"
        yf, zf = self.to_float(y, f"{p}.y_f32"), self.to_float(z, f"{p}.z_f32")
        scaled = zf if mixer.gate_scale is None else b.node(
            "Mul", [zf, self.fp(mixer.gate_scale, f"{prefix}.gate_scale", np.float32)], name=f"{p}.s_z")
        gate = b.node("Mul", [zf, b.node("Sigmoid", [scaled], name=f"{p}.gate_sigmoid")], name=f"{p}.gate")
        if norm is None:
            return self.to_graph_type(b.node("Mul", [yf, gate], name=f"{p}.gated"), f"{p}.to_graph_type")
        if not norm.norm_before_gate:
            yf = b.node("Mul", [yf, gate], name=f"{p}.gated")
        groups = b.node("Reshape", [yf, b.small([0, 0, -1, norm.group_size])], name=f"{p}.groups")
        mean_sq = b.node("ReduceMean", [b.node("Mul", [groups, groups], name=f"{p}.square"), b.small([-1])],
                         name=f"{p}.mean_square", keepdims=1)
        eps = b.small(np.float32(norm.eps), dtype=np.float32)
        inv_rms = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [mean_sq, eps], name=f"{p}.plus_eps")],
                                               name=f"{p}.rms")], name=f"{p}.inv_rms")
        normalized = b.node("Reshape", [b.node("Mul", [groups, inv_rms], name=f"{p}.normalize"),
                                        b.small([0, 0, mixer.d_inner])], name=f"{p}.ungroup")
        out = b.node("Mul", [self.to_graph_type(normalized, f"{p}.to_graph_type"), self.fp(norm.weight, f"{p}.weight")],
                     name=f"{p}.scale")
        if norm.norm_before_gate:
            out = b.node("Mul", [out, self.to_graph_type(gate, f"{p}.gate_to_graph_type")], name=f"{p}.gate_after")
        return out


__all__ = ["Mamba2GraphEmitter"]
