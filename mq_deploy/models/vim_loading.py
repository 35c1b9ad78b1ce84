"""Read and write Vision Mamba checkpoints.

Two formats:
- the official hustvl/Vim `.pth` files (`vim_t_midclstok_76p1acc.pth`, `vim_s_midclstok_ft_81p6acc.pth`,
  ...): DeiT-style dicts with the weights under "model" (a bare state_dict is taken too). They carry
  no config: the sizes come from the tensor shapes, and the image size and patch stride from the
  number of position embeddings (14² patches: 224 px at stride 16; 27²: 224 px at stride 8, the
  fine-tuned "stride8" models; 24²: 384 px), unless given;
- ours: a directory with config.json (`model_type: "vim"`) and model.safetensors, what `save_vim` writes.
Every bad input ends in one MQDeployError that says what is wrong and what to do.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic_dir import atomic_directory
from ..errors import MQDeployError
from .loading import _first_line, _read_json, check_finite_weights, load_torch_file, tensor_mismatches
from .safetensors_io import map_safetensors, write_safetensors
from .vim import VimConfig, VisionMamba

STANDARD_IMAGE_SIZES = (224, 384, 448, 512)
_TOP_LEVEL = {"cls_token": "backbone.cls_token", "pos_embed": "backbone.pos_embed",
              "norm_f.weight": "backbone.norm_f.weight", "head.weight": "classifier.weight",
              "head.bias": "classifier.bias"}


@dataclass
class LoadedVim:
    model: VisionMamba
    config: VimConfig
    path: Path
    source_format: str                  # "official" (a hustvl/Vim .pth) or "mq-deploy"


def canonical_vim_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official parameter names -> ours (names already ours pass through)."""
    out = {}
    for key, value in state.items():
        if key in _TOP_LEVEL:
            key = _TOP_LEVEL[key]
        elif key.startswith(("layers.", "patch_embed.")):
            key = "backbone." + key
        out[key] = value
    return out


def official_vim_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our parameter names -> the official ones (the inverse of canonical_vim_keys)."""
    ours = {v: k for k, v in _TOP_LEVEL.items()}
    return {ours.get(key, key.removeprefix("backbone.")): value for key, value in state.items()}


def read_official_checkpoint(file: Path) -> dict[str, torch.Tensor]:
    """The state_dict of a hustvl/Vim .pth (its "model" entry). Loaded with weights_only: tensors,
    containers and the training run's argparse.Namespace, nothing that runs code."""
    if not file.is_file():
        raise MQDeployError(f"{file} does not exist; give the path of a Vim checkpoint such as "
                            "vim_t_midclstok_76p1acc.pth (hustvl/Vim-tiny-midclstok)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = load_torch_file(file)
    except Exception as e:  # noqa: BLE001 - a truncated zip/pickle, or objects that are not weights
        raise MQDeployError(f"cannot read {file} as a PyTorch checkpoint: it is truncated, corrupt or holds objects "
                            f"other than weights ({_first_line(e)}); restore it from the original download") from None
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MQDeployError(f"{file} holds no state_dict of tensors (neither under 'model' nor at the top level); "
                            "give an official Vim checkpoint or torch.save({'model': model.state_dict()}, ...)")
    return state


def _shape(state: dict, key: str, where: Path) -> tuple[int, ...]:
    if key not in state:
        official = key.removeprefix("backbone.").replace("classifier.", "head.")      # the name the user's file uses
        raise MQDeployError(f"{where} is not a Vision Mamba checkpoint: it has no {official}; give a hustvl/Vim "
                            "checkpoint (vim_{t,s,b}_midclstok*.pth) or a directory written by mq-deploy")
    return tuple(state[key].shape)


def config_from_official(state: dict[str, torch.Tensor], where: Path, img_size: int | None = None,
                         stride: int | None = None) -> VimConfig:
    """A VimConfig from an official state_dict's shapes (canonical names)."""
    d, channels, patch, _ = _shape(state, "backbone.patch_embed.proj.weight", where)
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"backbone\.layers\.(\d+)\.", k))})
    if not layers:
        raise MQDeployError(f"{where} is not a Vision Mamba checkpoint: it has no layers.N.mixer weights")
    mixer = "backbone.layers.0.mixer."
    if f"{mixer}A_b_log" in state and f"{mixer}conv1d_b.weight" not in state:
        raise MQDeployError(f"{where} is a bimamba v1 model (a second A only, shared conv and x_proj); only the "
                            "released v2 models (with conv1d_b, x_proj_b, dt_proj_b) are supported")
    if f"{mixer}A_b_log" not in state:
        raise MQDeployError(f"{where} has unidirectional mixers (no A_b_log): it is not a bidirectional Vision Mamba; "
                            "a Mamba language model is read by `load_model`")
    d_inner = _shape(state, f"{mixer}in_proj.weight", where)[0] // 2
    n = _shape(state, f"{mixer}A_log", where)[1]
    rank = _shape(state, f"{mixer}dt_proj.weight", where)[1]
    kernel = _shape(state, f"{mixer}conv1d.weight", where)[-1]
    classes = _shape(state, "classifier.weight", where)[0]
    tokens = _shape(state, "backbone.pos_embed", where)[1]
    grid = math.isqrt(tokens - 1)
    if grid * grid != tokens - 1:
        raise MQDeployError(f"{where}: pos_embed holds {tokens} positions, not a square grid of patches plus the "
                            "class token; the checkpoint is not a Vim image classifier with one middle class token")
    if stride is None:
        fits = [(s, (grid - 1) * s + patch) for s in (patch, patch // 2) if s > 0]
        stride = next((s for s, size in fits if size in STANDARD_IMAGE_SIZES and (img_size in (None, size))), None)
        if stride is None:
            stride = patch if img_size is None else (img_size - patch) // max(grid - 1, 1)
    if img_size is None:
        img_size = (grid - 1) * stride + patch
    config = VimConfig(hidden_size=d, num_hidden_layers=len(layers), state_size=n,
                       expand=d_inner // d if d_inner % d == 0 else 1,
                       intermediate_size=d_inner, conv_kernel=kernel, time_step_rank=rank, img_size=img_size,
                       patch_size=patch, stride=stride, in_channels=channels, num_classes=classes,
                       use_bias=f"{mixer}in_proj.bias" in state, use_conv_bias=f"{mixer}conv1d.bias" in state)
    if config.grid_size != grid:
        raise MQDeployError(f"{where}: {img_size} px images at stride {stride} give a {config.grid_size}² patch grid, "
                            f"but pos_embed has {grid}²; give the image size and stride the model was trained at")
    return config


def _check_vim_tensors(state: dict, model: VisionMamba, where: Path) -> None:
    problems = tensor_mismatches(state, {k: tuple(v.shape) for k, v in model.state_dict().items()}, "expected")
    if problems:
        raise MQDeployError(f"{where} does not hold a consistent Vision Mamba ({' | '.join(problems)}); the file was "
                            "cut short, renamed or mixed from two models: restore it from the original download")


def load_vim(path, img_size: int | None = None, stride: int | None = None,
             dtype: torch.dtype = torch.float32) -> LoadedVim:
    """A Vision Mamba from an official .pth file or one of our directories."""
    path = Path(path)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise MQDeployError(f"{path} has no config.json; give a Vim .pth file or a directory written by mq-deploy")
        raw = _read_json(config_file)
        if raw.get("model_type") != "vim":
            raise MQDeployError(f"{config_file} has model_type {raw.get('model_type')!r}, not 'vim'; a Mamba language "
                                "model is read by `load_model`")
        try:
            config = VimConfig.from_dict(raw)
        except (TypeError, ValueError) as e:
            raise MQDeployError(f"{config_file}: {e}; restore the file") from None
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise MQDeployError(f"{path} has no model.safetensors; the directory is incomplete")
        try:
            state = map_safetensors(weights)
        except (ValueError, OSError) as e:
            raise MQDeployError(f"cannot read {weights}: it is truncated or not a safetensors file "
                                f"({_first_line(e)}); restore it") from None
        source = "mq-deploy"
    else:
        state = canonical_vim_keys(read_official_checkpoint(path))
        config = config_from_official(state, path, img_size, stride)
        source = "official"
    check_finite_weights(state, path)
    with torch.device("meta"):
        model = VisionMamba(config)
    _check_vim_tensors(state, model, path)
    model = model.to_empty(device="cpu")
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    return LoadedVim(model.to(dtype).eval(), config, path, source)


def save_vim(model: VisionMamba, out_dir) -> Path:
    """config.json + model.safetensors, written whole or not at all (out_dir new or empty)."""
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        write_vim_files(tmp, model.config, {k: v.detach() for k, v in model.state_dict().items()})
    return out_dir


def write_vim_files(directory: Path, config: VimConfig, state: dict) -> None:
    """config.json (model_type "vim") and model.safetensors into `directory`."""
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    write_safetensors(directory / "model.safetensors", state)
