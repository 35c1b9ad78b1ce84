"""The model an export set was made from: found through its manifest (or given), checked against
the sha256 export recorded, and loaded as the torch model or tokenizer a reference needs."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MQDeployError
from ..models import MambaLM
from ..models.checkpoints import is_vision_checkpoint, load_checkpoint
from ..models.tokenizer import load_tokenizer
from ..quant.artifact import directory_hash, is_quantized_artifact, load_quantized, read_quant_meta
from .manifest import Manifest


def source_dir(manifest: Manifest, override=None) -> Path:
    """The model directory or artifact the graphs came from (the manifest's source, or `override`),
    checked against the sha256 export recorded: a reference made from another model would turn
    every later figure (token range, logits, perplexity) into a misleading one."""
    path = Path(override) if override else manifest.source_path
    if not (path.is_dir() or (path.is_file() and is_vision_checkpoint(path))):     # an official Vim .pth
        raise MQDeployError(f"the model the graph was exported from is not at {path}; pass --model DIR "
                            "(the FP checkpoint or quantized artifact given to `mq-deploy export`)")
    recorded = manifest.source_sha256
    if recorded and directory_hash(path) != recorded:
        raise MQDeployError(f"this graph was not exported from {path}: its files' sha256 differs from the one "
                            f"manifest.json records (export read {manifest.raw['source'].get('path')}); pass --model "
                            "with the model directory or artifact given to `mq-deploy export`, or re-export from it")
    return path


def torch_model(path: Path, quantized: bool = True) -> MambaLM:
    """The fake-quant model of an artifact (quantized=True) or the same function unquantized (the
    transformed FP model: rotations in place, no rounding); an FP checkpoint's model either way."""
    if is_quantized_artifact(path):
        return load_quantized(path, with_quantizers=quantized).model.eval()
    return load_checkpoint(path).model.eval()


def fp_source_of(path: Path) -> Path | None:
    """An artifact's FP source checkpoint when it is still where quantize read it, unchanged; else None."""
    recorded = read_quant_meta(path).get("source") or {}
    fp_source = recorded.get("path")
    if not fp_source or not (Path(fp_source).is_file() or Path(fp_source, "config.json").is_file()):
        return None
    return Path(fp_source) if recorded.get("sha256") in (None, directory_hash(Path(fp_source))) else None


def fp_model_and_note(path: Path) -> tuple[MambaLM, str | None]:
    """The unquantized model, and why it is not the FP function (None when it is): an artifact's FP
    source checkpoint when it is still there unchanged (hashed once), else the artifact's transformed
    FP model, the same function except for GPTQ-rounded linears; an FP checkpoint's model."""
    if not is_quantized_artifact(path):
        return torch_model(path), None
    source = fp_source_of(path)
    if source is not None:
        return load_checkpoint(source).model.eval(), None
    return torch_model(path, quantized=False), _rounded_fallback_note(path)


def fp_model(path: Path) -> MambaLM:
    return fp_model_and_note(path)[0]


def fp_fallback_note(path: Path) -> str | None:
    """Why `fp_model(path)` is not the FP function, or None."""
    if not is_quantized_artifact(path) or fp_source_of(path) is not None:
        return None
    return _rounded_fallback_note(path)


def _rounded_fallback_note(path: Path) -> str | None:
    """A GPTQ artifact whose source is gone stores its rounded weights: unquantized, it still carries
    their rounding."""
    meta = read_quant_meta(path)
    if meta["config"].get("weight_rounding") != "gptq":
        return None
    source = (meta.get("source") or {}).get("path")
    return (f"the FP source checkpoint of {path} ({source}) is not there unchanged, and the artifact's weights "
            "are GPTQ-rounded: the unquantized reference still carries that rounding, so it understates the "
            "quantization error; put the source back where quantize read it to compare with the true FP model")


def tokenizer_of(path: Path, manifest: Manifest):
    return load_tokenizer(path, manifest.tokenizer)


def bundled_training_set(path) -> str | None:
    """The bundled image set ("digits", "mnist") a vision model was trained on, from the training.json
    our training script writes beside it; for a quantized artifact, its source checkpoint's. None
    when nothing says (a user's checkpoint, a moved source)."""
    path = Path(path)
    if is_quantized_artifact(path):
        try:
            source = (read_quant_meta(path).get("source") or {}).get("path")
        except MQDeployError:
            return None
        if not source:
            return None
        path = Path(source)
    try:
        settings = json.loads((path / "training.json").read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(settings, dict) or "patch" not in settings:       # not a vision model's record
        return None
    # runs from before train.py took --data trained on its default, the digits
    return settings.get("data", "digits")
