"""The model behind an evaluation: an FP checkpoint or a quantized artifact (its fake-quant model)."""

from __future__ import annotations

from ..errors import MQDeployError



def load_eval_model(model_dir):
    """(model, description) for an FP checkpoint or a quantized artifact directory."""
    from ..models.checkpoints import is_vision_checkpoint, load_checkpoint
    from ..quant.artifact import is_quantized_artifact, load_quantized
    if is_vision_checkpoint(model_dir):
        raise MQDeployError(f"{model_dir} is a Vision Mamba: perplexity and text tasks are for language models; its "
                            "accuracy is `mq-deploy quantize --eval IMAGES` or `mq-deploy validate --images IMAGES`")
    if is_quantized_artifact(model_dir):
        qm = load_quantized(model_dir)
        return qm.model, f"{qm.recipe} {qm.config.label} {qm.config.mode} (fake-quant)"
    return load_checkpoint(model_dir).model, "FP32"
