"""The torch models an exported graph is validated against, found from its manifest."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import MQDeployError
from ..models import MambaLM
from ..models.loading import load_model
from ..models.tokenizer import load_tokenizer
from ..quant.artifact import directory_hash, is_quantized_artifact, load_quantized


def source_dir(manifest: dict, override=None) -> Path:
    """The model directory or artifact the graph came from (manifest `source.path`, or `override`),
    checked against the sha256 export recorded: a reference made from another model would turn
    every later figure (token range, logits, perplexity) into a misleading one."""
    path = Path(override or manifest["source"]["path"])
    if not path.is_dir():
        raise MQDeployError(f"the model the graph was exported from is not at {path}; pass --model DIR "
                            "(the FP checkpoint or quantized artifact given to `mq-deploy export`)")
    recorded = (manifest.get("source") or {}).get("sha256")
    if recorded and directory_hash(path) != recorded:
        raise MQDeployError(f"this graph was not exported from {path}: its files' sha256 differs from the one "
                            f"manifest.json records (export read {manifest['source'].get('path')}); pass --model with "
                            "the model directory or artifact given to `mq-deploy export`, or re-export from this one")
    return path


def torch_model(path: Path, quantized: bool = True) -> MambaLM:
    """The fake-quant model of an artifact (quantized=True) or the same function unquantized (the
    transformed FP model: rotations in place, no rounding); an FP checkpoint's model either way."""
    if is_quantized_artifact(path):
        return load_quantized(path, with_quantizers=quantized).model.eval()
    return load_model(path).model.eval()


def tokenizer_of(path: Path, manifest: dict):
    return load_tokenizer(path, manifest["model"].get("mq_deploy", {}).get("tokenizer"))


def torch_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MQDeployError(f"--device {name}: torch sees no CUDA device here; use --device cpu")
    return torch.device(name)
