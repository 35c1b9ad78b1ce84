"""The model behind an evaluation: an FP checkpoint or a quantized artifact (its fake-quant model)."""

from __future__ import annotations

from pathlib import Path

from ..models.loading import load_model
from ..models.tokenizer import load_tokenizer


def load_eval_model(model_dir):
    """(model, description) for an FP checkpoint or a quantized artifact directory."""
    from ..quant.artifact import is_quantized_artifact, load_quantized
    if is_quantized_artifact(model_dir):
        qm = load_quantized(model_dir)
        return qm.model, f"{qm.recipe} {qm.config.label} {qm.config.mode} (fake-quant)"
    return load_model(model_dir).model, "FP32"


def load_for_eval(model_dir):
    """(model, tokenizer, description) for an FP checkpoint or a quantized artifact directory."""
    model, label = load_eval_model(model_dir)
    return model, load_tokenizer(Path(model_dir), model.config.tokenizer), label
