"""The model behind an evaluation: an FP checkpoint or a quantized artifact (its fake-quant model)."""

from __future__ import annotations

from ..models.loading import load_model


def load_eval_model(model_dir):
    """(model, description) for an FP checkpoint or a quantized artifact directory."""
    from ..quant.artifact import is_quantized_artifact, load_quantized
    if is_quantized_artifact(model_dir):
        qm = load_quantized(model_dir)
        return qm.model, f"{qm.recipe} {qm.config.label} {qm.config.mode} (fake-quant)"
    return load_model(model_dir).model, "FP32"
