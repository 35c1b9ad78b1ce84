"""A Vision Mamba as an ONNX graph: the language model's emitter (graph_builder.py) with an image
entry and a class-token exit, and bidirectional mixers whose backward path is a SelectiveScan node
with reverse = 1 (no flips in the graph).

    images [batch, C, H, W] float32 -> Conv (patch embedding) -> tokens [batch, M, d]
    -> the class token inserted at M // 2 -> + position embedding -> layers -> the class token
    -> norm_f -> classifier (+ bias) -> logits [batch, num_classes] float32

The batch dim is symbolic; the image size is the model's. Precision and QDQ as for the language
models: the patch embedding and position embeddings stay FP (the paper excludes them too).
"""

from __future__ import annotations

from onnx import TensorProto

from .graph_builder import BATCH, FLOAT, BuiltGraph, GraphIO, MambaGraphEmitter
from .qdq import emit_activation_qdq, emit_linear, emit_weight


class VimGraphEmitter(MambaGraphEmitter):
    GRAPH_NAME = "vision_mamba"

    def mixer(self, i: int, hidden: str):
        """in_proj -> the forward path and the reversed backward path (sharing x and the gate z) ->
        their mean -> out_proj."""
        b, prefix = self.b, f"backbone.layers.{i}.mixer"
        mixer = self.model.get_submodule(prefix)
        x, z = self.split_xz(prefix, mixer, hidden)
        forward = self.ssm_path(mixer, prefix, x, z)
        backward = self.ssm_path(mixer, prefix, x, z, suffix="_b", reverse=True)
        y = b.node("Add", [forward, backward], name=f"{prefix}.add_directions")
        if mixer.divide_out:
            y = b.node("Mul", [y, self.fp(self._half, f"{prefix}.half")], name=f"{prefix}.mean_directions")
        return self.out_projection(prefix, y)

    def embed(self) -> str:
        b, cfg, backbone = self.b, self.cfg, self.model.backbone
        conv = backbone.patch_embed.proj
        images = self.to_graph_type("images", "images.to_graph_type")
        patches = b.node("Conv", [images, self.fp(conv.weight, "backbone.patch_embed.proj.weight"),
                                  self.fp(conv.bias, "backbone.patch_embed.proj.bias")],
                         name="backbone.patch_embed.proj", kernel_shape=[cfg.patch_size] * 2,
                         strides=[cfg.stride] * 2)                                          # [b, d, gh, gw]
        flat = b.node("Reshape", [patches, b.small([0, cfg.hidden_size, -1])], name="backbone.patch_embed.flatten")
        tokens = b.node("Transpose", [flat], name="backbone.patch_embed.to_tokens", perm=[0, 2, 1])   # [b, M, d]
        middle = cfg.token_position
        before = b.node("Slice", [tokens, b.small([0]), b.small([middle]), b.small([1])], name="backbone.tokens_before")
        after = b.node("Slice", [tokens, b.small([middle]), b.small([cfg.num_patches]), b.small([1])],
                       name="backbone.tokens_after")
        batch = b.node("Slice", [b.node("Shape", ["images"], name="backbone.image_shape"), b.small([0]), b.small([1])],
                       name="backbone.batch")
        shape = b.node("Concat", [batch, b.small([1, cfg.hidden_size])], name="backbone.cls_shape", axis=0)
        cls = b.node("Expand", [self.fp(backbone.cls_token, "backbone.cls_token"), shape], name="backbone.cls_tokens")
        tokens = b.node("Concat", [before, cls, after], name="backbone.insert_cls", axis=1)
        return b.node("Add", [tokens, self.fp(backbone.pos_embed, "backbone.pos_embed")], name="backbone.add_pos_embed")

    def build(self) -> BuiltGraph:
        import torch
        b, cfg = self.b, self.cfg
        self._half = torch.tensor(0.5)
        inputs = [GraphIO("images", FLOAT, [BATCH, cfg.in_channels, cfg.img_size, cfg.img_size])]
        outputs = [GraphIO("logits", FLOAT, [BATCH, cfg.num_classes])]
        b._used.add("images")
        hidden = self.embed()
        residual = self.to_float(hidden, "backbone.residual_f32") if cfg.residual_in_fp32 else hidden
        for i, layer in enumerate(self.model.backbone.layers):
            prefix = f"backbone.layers.{i}"
            normed = self.rmsnorm(self.to_float(residual, f"{prefix}.norm_input_f32"), layer.norm, f"{prefix}.norm")
            out = self.mixer(i, normed)
            if cfg.residual_in_fp32:
                out = self.to_float(out, f"{prefix}.mixer_out_f32")
            residual = b.node("Add", [residual, out], name=f"{prefix}.residual_add")
        # norm_f is per token: the class token's row alone gives the head the same input
        row = b.node("Slice", [residual, b.small([cfg.token_position]), b.small([cfg.token_position + 1]),
                               b.small([1])], name="backbone.class_token_row")
        cls = b.node("Reshape", [row, b.small([-1, cfg.hidden_size])], name="backbone.class_token")
        x = self.rmsnorm(self.to_float(cls, "backbone.norm_f_input_f32"), self.model.backbone.norm_f, "backbone.norm_f")
        head = self.model.HEAD
        spec, scale, _ = self.form_of(head)
        if scale is not None:
            x = emit_activation_qdq(b, x, scale, self.ft, head)
        weight = emit_weight(b, self.model.classifier.weight, self.ft, head, spec) if spec is not None else None
        logits = emit_linear(b, x, self.model.classifier, self.ft, head, weight=weight)
        if self.ft == FLOAT:
            b.node("Identity", [logits], ["logits"], name="logits")
        else:
            b.node("Cast", [logits], ["logits"], name="logits", to=TensorProto.FLOAT)
        return BuiltGraph(self._model(inputs, outputs), inputs, outputs, dict(sorted(self.forms.items())))
