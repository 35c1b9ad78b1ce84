"""The quantized artifact directory (docs/quantization.md, "The artifact"), written atomically:

    config.json             model config (HF layout)
    model.safetensors       transformed FP weights, before rounding (HF names; transformers reads it,
                            but without the online transforms below it is not the same function)
    transforms.safetensors  online transforms that cannot be folded: per-layer S-SiLU gate scales
                            (`<mixer>.gate_scale`), Hadamard sign vectors (`<point>.signs`) and
                            the exit matrix of a rotated stream into a tied head (`lm_head_input.matrix`),
                            and in paper mode MambaQuant's S4 / S3 scales and R4 signs at the scan's
                            h·C contraction (`<mixer>.hc_scale`, `.hc_channel_scale`, `.hc_signs`, a
                            backward path's with `_b`; quant/paper_scan.py)
    quant.json              recipe, settings, weight quantization specs, activation scales, online
                            transforms, the source model's hash
    report.json             calibration time and accuracy figures

Weight codes are not stored: they are a deterministic function of the FP weights and the spec
(`quantize_tensor`), recomputed identically by `load_quantized` and by the ONNX export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path


from ..atomic_dir import atomic_directory
from ..errors import MQDeployError
from ..models.checkpoints import load_checkpoint, read_canonical_state
from ..models.loading import TOKENIZER_FILES, check_finite_weights, read_weight_file, write_model_files
from ..models.vim import VisionMamba
from ..models.vim_loading import write_vim_files
from ..models.safetensors_io import write_safetensors
from .config import QuantConfig
from .modules import DynamicActivationQuantizer, StaticActivationQuantizer
from .paper_scan import TRANSFORM_BUFFERS, contraction_buffers, install_paper_scan
from .quantize import QuantizedModel, _set_module, _with_quantizer, quantize_weights
from .quantizer import QuantSpec
from .spill import SpilledTensors
from .recipes import RECIPES
from .transforms import ChannelScale, HadamardRotation, OnlineMatrix

FORMAT_VERSION = 1
ONLINE_TENSORS = (".signs", ".matrix", ".scale")   # the tensor of a "hadamard" / "matrix" / "scale" online transform
TENSOR_OF_KIND = {"hadamard": "signs", "matrix": "matrix", "scale": "scale"}
MODULE_OF_KIND = {"hadamard": HadamardRotation, "matrix": OnlineMatrix, "scale": ChannelScale}
QUANT_FILE = "quant.json"
META_KEYS = ("config", "weights", "activations", "online_transforms", "gate_scale_layers")
ARTIFACT_FILES = ("config.json", "model.safetensors", "transforms.safetensors", QUANT_FILE, "report.json")


def is_quantized_artifact(path) -> bool:
    return (Path(path) / QUANT_FILE).is_file()


def is_own_artifact(path) -> bool:
    """A directory `save_quantized` wrote and nobody added to: a readable quant.json of ours and no
    file besides the artifact's own (and the tokenizer files it copies). Only such a directory may
    be replaced (with --force)."""
    path = Path(path)
    try:
        meta = json.loads((path / QUANT_FILE).read_text(encoding="utf-8"))
        names = {p.name for p in path.iterdir()}
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return (isinstance(meta, dict) and meta.get("format_version") == FORMAT_VERSION
            and names <= set(ARTIFACT_FILES) | set(TOKENIZER_FILES))


def directory_hash(path: Path) -> str:
    """sha256 over the model files of a checkpoint directory (config and weights), in name order; a
    checkpoint that is one file (an official Vim .pth), over that file."""
    h = hashlib.sha256()
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin")
        and p.name not in ("report.json", "training.json"))
    for file in files:
        h.update(file.name.encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def check_made_from(artifact_dir, model_dir) -> None:
    """The artifact must have been quantized from `model_dir` (quant.json records its sha256)."""
    recorded = (read_quant_meta(artifact_dir).get("source") or {}).get("sha256")
    if recorded and directory_hash(Path(model_dir)) != recorded:
        raise MQDeployError(f"{artifact_dir} was not quantized from {model_dir}: quant.json records the sha256 of "
                            "another model directory; pass the FP checkpoint the artifact was made from")


def _split_state(qm: QuantizedModel):
    """(plain model weights, online-transform tensors) from the transformed FP state."""
    stored = qm.transformed_weights
    names = [k for k in stored if not k.endswith(ONLINE_TENSORS)]
    if getattr(qm.model.config, "tie_word_embeddings", False) and "lm_head.weight" in names:
        names.remove("lm_head.weight")       # shared with the embedding, as HF saves it
    # the model weights stay where they are (on disk, in quantize()'s spill) until written
    weights = stored.subset(names) if isinstance(stored, SpilledTensors) else {k: stored[k] for k in names}
    transforms = {k: stored[k] for k in stored if k.endswith(ONLINE_TENSORS)}
    for i, layer in enumerate(qm.model.backbone.layers):
        if layer.mixer.gate_scale is not None:
            transforms[f"backbone.layers.{i}.mixer.gate_scale"] = layer.mixer.gate_scale.detach().clone()
        for name, tensor in contraction_buffers(layer.mixer).items():
            transforms[f"backbone.layers.{i}.mixer.{name}"] = tensor.detach().clone()
    return weights, transforms


def _contraction_layers(model) -> list[int]:
    return [i for i, layer in enumerate(model.backbone.layers) if contraction_buffers(layer.mixer)]


def save_quantized(qm: QuantizedModel, out_dir, source_dir=None, report: dict | None = None,
                   replace: bool = False) -> Path:
    """Write the artifact directory, whole or not at all. An existing non-empty `out_dir` is replaced
    only with replace=True (the caller checked it is a previous artifact of ours)."""
    weights, transforms = _split_state(qm)
    meta = {
        "format_version": FORMAT_VERSION, "recipe": qm.recipe, "config": qm.config.to_dict(),
        "weights": {name: dataclasses.asdict(spec) for name, spec in qm.weight_specs.items()},
        "activations": qm.activation_ranges,
        "online_transforms": {p: {"kind": k, "size": int(transforms[f"{p}.{TENSOR_OF_KIND[k]}"].shape[0])}
                              for p, k in qm.online_transforms.items()},
        "gate_scale_layers": sorted(int(k.split(".")[2]) for k in transforms if k.endswith("gate_scale")),
        "contraction_transform_layers": _contraction_layers(qm.model),
        "source": {"path": str(source_dir) if source_dir else None,
                   "sha256": directory_hash(Path(source_dir)) if source_dir else None},
    }
    with atomic_directory(out_dir, replace=replace) as tmp:
        if isinstance(qm.model, VisionMamba):
            write_vim_files(tmp, qm.model.config, weights)
        else:
            write_model_files(tmp, qm.model.config, weights, source_dir)
        write_safetensors(tmp / "transforms.safetensors", transforms)
        (tmp / QUANT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report or {}, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


def read_quant_meta(path) -> dict:
    path = Path(path)
    try:
        meta = json.loads((path / QUANT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MQDeployError(f"{path} is not a quantized artifact (no {QUANT_FILE}); create one with "
                            "`mq-deploy quantize`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MQDeployError(f"{path / QUANT_FILE} is not valid JSON ({e}); re-run `mq-deploy quantize`") from None
    if not isinstance(meta, dict):
        raise MQDeployError(f"{path / QUANT_FILE} is not a JSON object; re-run `mq-deploy quantize`")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise MQDeployError(f"{path} was written by an unknown quantized-artifact format version {version!r} "
                            f"(this mq-deploy reads version {FORMAT_VERSION}); re-run `mq-deploy quantize`")
    if meta.get("recipe") not in RECIPES:
        raise MQDeployError(f"{path} was made by an unknown recipe {meta.get('recipe')!r}; "
                            f"known recipes: {', '.join(RECIPES)}")
    missing = [k for k in META_KEYS if not isinstance(meta.get(k), dict if k != "gate_scale_layers" else list)]
    if missing:
        raise MQDeployError(f"{path / QUANT_FILE} lacks {', '.join(missing)} (or holds them in the wrong form): it "
                            "was edited or cut short; re-run `mq-deploy quantize`")
    return meta


def quant_config_of(meta: dict, path: Path) -> QuantConfig:
    # artifacts written before weight rounding was a setting were all rounded to nearest
    settings = {"weight_rounding": "rtn", **meta["config"]}
    try:
        return QuantConfig(**settings)
    except TypeError as e:
        raise MQDeployError(f"{Path(path) / QUANT_FILE} has settings this mq-deploy does not know ({e}); re-run "
                            "`mq-deploy quantize`") from None


def load_quantized(path, with_quantizers: bool = True) -> QuantizedModel:
    """Rebuild the fake-quant model of an artifact, exactly as `quantize` returned it.

    with_quantizers=False gives the transformed FP model (online transforms in place, no rounding):
    the same function as the original FP model, in the transformed basis - except for linears that
    GPTQ rounded (config.weight_rounding "gptq"), whose stored weights are the rounded ones.
    """
    path = Path(path)
    meta = read_quant_meta(path)
    config = quant_config_of(meta, path)
    model = load_checkpoint(path).model
    if not (path / "transforms.safetensors").is_file():
        raise MQDeployError(f"{path} has no transforms.safetensors; the artifact is incomplete: re-run "
                            "`mq-deploy quantize`")
    transforms = read_weight_file(path / "transforms.safetensors")
    check_finite_weights(transforms, path)
    kinds = {point: info.get("kind") for point, info in meta["online_transforms"].items()}
    if any(kind not in TENSOR_OF_KIND for kind in kinds.values()):
        raise MQDeployError(f"{path / QUANT_FILE} names an online transform this mq-deploy does not know "
                            f"({sorted(set(kinds.values()) - set(TENSOR_OF_KIND))}); re-run `mq-deploy quantize`")
    contraction_layers = meta.get("contraction_transform_layers", [])     # absent before paper-mode S4/R4
    if not isinstance(contraction_layers, list) or not all(
            isinstance(i, int) and 0 <= i < len(model.backbone.layers) for i in contraction_layers):
        raise MQDeployError(f"{path / QUANT_FILE} has a malformed contraction_transform_layers; re-run "
                            "`mq-deploy quantize`")
    needed = [f"backbone.layers.{i}.mixer.gate_scale" for i in meta["gate_scale_layers"]] + \
             [f"{point}.{TENSOR_OF_KIND[kind]}" for point, kind in kinds.items()]
    if any(name not in transforms for name in needed) or not all(
            any(k.startswith(f"backbone.layers.{i}.mixer.hc_") for k in transforms) for i in contraction_layers):
        raise MQDeployError(f"{path / 'transforms.safetensors'} lacks tensors quant.json refers to; the artifact is "
                            "inconsistent: re-run `mq-deploy quantize`")
    # the weights as stored: the model's own tensors (mapped from the file, nothing copied), or with
    # quantizers, which round the model's weights in place, a second mapping of the same file (the
    # file was checked above; mapping it reads nothing)
    transformed = dict(model.state_dict())
    if with_quantizers:
        transformed |= read_canonical_state(path)
    for i in meta["gate_scale_layers"]:
        model.backbone.layers[i].mixer.gate_scale = transforms[f"backbone.layers.{i}.mixer.gate_scale"]
    for i in contraction_layers:       # used by the paper scan only; the FP scan computes the same <h, C>
        mixer = model.backbone.layers[i].mixer
        for name in (base + sfx for sfx in mixer.PATHS for base in TRANSFORM_BUFFERS):
            key = f"backbone.layers.{i}.mixer.{name}"
            if key in transforms:
                mixer.register_buffer(name, transforms[key], persistent=False)
    for point, kind in kinds.items():
        tensor = transforms[f"{point}.{TENSOR_OF_KIND[kind]}"]
        _set_module(model, point, MODULE_OF_KIND[kind](tensor))
        transformed[f"{point}.{TENSOR_OF_KIND[kind]}"] = tensor
    if not with_quantizers:
        return QuantizedModel(model, meta["recipe"], config, {}, {}, {p: v["kind"] for p, v in
                                                                      meta["online_transforms"].items()}, {}, transformed)
    for point, info in meta["activations"].items():
        spec = QuantSpec(bits=info["bits"], symmetric=info["symmetric"])
        quantizer = (DynamicActivationQuantizer(spec) if info.get("dynamic")
                     else StaticActivationQuantizer(spec, info["scale"], info["zero_point"]))
        _set_module(model, point, _with_quantizer(model.get_submodule(point), quantizer))
    specs = quantize_weights(model, config)
    expected = {name: QuantSpec(**spec) for name, spec in meta["weights"].items()}
    if specs != expected:
        raise MQDeployError(f"{path / QUANT_FILE} disagrees with its own settings about the weight specs; "
                            "re-run `mq-deploy quantize`")
    if config.quantizes_scan_output:
        install_paper_scan(model)
    return QuantizedModel(model, meta["recipe"], config, specs, meta["activations"],
                          {p: v["kind"] for p, v in meta["online_transforms"].items()}, {}, transformed)
