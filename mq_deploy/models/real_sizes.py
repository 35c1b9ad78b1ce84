"""The published models of every family, shipped as config files only (models/real_configs/), and
random-initialised checkpoints of them written offline, so every size can be exercised without
downloading weights:

- Mamba-1 language models, state-spaces/mamba-130m ... 2.8b (names "mamba-130m" ..., or just "130m");
- Mamba-2 language models, state-spaces/mamba2-130m ... 2.7b ("mamba2-130m" ...);
- Vision Mamba, hustvl/Vim-{tiny,small,base}-midclstok ("vim-t", "vim-s", "vim-b", and the fine-tuned
  stride-8 "vim-t-ft", "vim-s-ft").

`materialize(name, out_dir, fmt)` writes what a user would have after downloading, in the format
the publisher ships unless asked for another:
- "hf": transformers' MambaForCausalLM / Mamba2ForCausalLM saved by save_pretrained (config.json +
  model.safetensors), a checkpoint this project did not write; for Mamba-2 at the config that
  transformers' conversion script (convert_mamba2_ssm_checkpoint_to_pytorch.py) derives;
- "mamba_ssm": the mamba_ssm config.json and a pytorch_model.bin with mamba_ssm's key names
  (`backbone.embedding.weight`, tied lm_head, vocab padded to the config's multiple), as
  MambaLMHeadModel saves it (mamba_ssm itself needs CUDA to install, so the file is written here);
- "official": a hustvl/Vim .pth under its published file name, {"model": state_dict} with the
  official key names (the released models' settings: bimamba v2, middle class token, div2).
`layers` keeps only the first n layers (a slice of the real shape for quick tests).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from ..atomic_dir import atomic_directory
from ..errors import MQDeployError
from .config import MambaConfig
from .init import init_mamba2_weights, init_mamba_weights
from .mamba import MambaLM
from .mamba2 import Mamba2Config, Mamba2LM
from .vim import VimConfig, VisionMamba


@dataclass(frozen=True)
class PublishedModel:
    name: str                   # "mamba-130m", "mamba2-780m", "vim-s-ft"
    family: str                 # "mamba", "mamba2" or "vim"
    formats: tuple[str, ...]    # the first is what the publisher ships


_LM_SIZES = {"mamba": ("130m", "370m", "790m", "1.4b", "2.8b"), "mamba2": ("130m", "370m", "780m", "1.3b", "2.7b")}
PUBLISHED: dict[str, PublishedModel] = {
    **{f"mamba-{s}": PublishedModel(f"mamba-{s}", "mamba", ("hf", "mamba_ssm")) for s in _LM_SIZES["mamba"]},
    **{f"mamba2-{s}": PublishedModel(f"mamba2-{s}", "mamba2", ("mamba_ssm", "hf")) for s in _LM_SIZES["mamba2"]},
    **{f"vim-{s}": PublishedModel(f"vim-{s}", "vim", ("official",)) for s in ("t", "t-ft", "s", "s-ft", "b")},
}
REAL_SIZES = _LM_SIZES["mamba"]           # the Mamba-1 shorthands ("130m" = "mamba-130m")
FORMATS = ("hf", "mamba_ssm", "official")


def published(name: str) -> PublishedModel:
    """The published model called `name` (a Mamba-1 size alone names the Mamba-1 model)."""
    entry = PUBLISHED.get(f"mamba-{name}" if name in REAL_SIZES else name)
    if entry is None:
        raise MQDeployError(f"unknown model {name!r}; choose one of {', '.join(PUBLISHED)} (or a bare Mamba-1 size: "
                            f"{', '.join(REAL_SIZES)})")
    return entry


def real_config(name: str, fmt: str | None = None) -> dict:
    """The published config of `name` in format `fmt` (default: the publisher's) as a dict: the
    config.json of state-spaces/mamba-<size>[-hf] or mamba2-<size> (its -hf form: transformers'
    conversion), or a Vim's VimConfig with the official file name under "_file"."""
    entry = published(name)
    fmt = fmt or entry.formats[0]
    if fmt not in entry.formats:
        raise MQDeployError(f"{entry.name} comes in {' or '.join(entry.formats)}, not {fmt!r}")
    file = f"{entry.name}{'-hf' if fmt == 'hf' else ''}.json"
    return json.loads(resources.files("mq_deploy.models").joinpath("real_configs", file).read_text())


def model_config(name: str):
    """The project's config object (MambaConfig, Mamba2Config, VimConfig) of a published model."""
    entry = published(name)
    if entry.family == "vim":
        cfg = {k: v for k, v in real_config(name).items() if not k.startswith("_")}
        config = VimConfig.from_dict(cfg)
    else:
        config = (MambaConfig if entry.family == "mamba" else Mamba2Config).from_hf_dict(real_config(name, "hf"))
    return config


def _model_class(family: str):
    return {"mamba": MambaLM, "mamba2": Mamba2LM, "vim": VisionMamba}[family]


def parameter_count(name: str) -> int:
    """Parameters of the published model (a tied head counted once), from its config alone."""
    with torch.device("meta"):
        model = _model_class(published(name).family)(model_config(name))
    return sum(p.numel() for p in model.parameters())


def _check_layers(layers: int, depth: int) -> None:
    if not 1 <= layers <= depth:
        raise MQDeployError(f"layers must be in 1..{depth}, got {layers}")


def _with_layers(cfg: dict, layers: int | None, keys: tuple[str, ...]) -> dict:
    if layers is None:
        return cfg
    _check_layers(layers, cfg[keys[0]])
    return {**cfg, **{k: layers for k in keys}}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise MQDeployError("writing an HF-format checkpoint uses transformers: pip install transformers") from None
    return transformers


def _write_hf(cfg: dict, out: Path, seed: int, dtype: torch.dtype, family: str) -> Path:
    transformers = _transformers()
    torch.manual_seed(seed)
    config_cls, model_cls = ((transformers.MambaConfig, transformers.MambaForCausalLM) if family == "mamba"
                             else (transformers.Mamba2Config, transformers.Mamba2ForCausalLM))
    config = config_cls(**{k: v for k, v in cfg.items() if not k.startswith("_") and k != "architectures"})
    model_cls(config).to(dtype).eval().save_pretrained(out, safe_serialization=True)
    return out


def _write_mamba_ssm(cfg: dict, out: Path, seed: int, dtype: torch.dtype, family: str) -> Path:
    if family == "mamba":
        multiple = cfg.get("pad_vocab_size_multiple", 8)
        padded = math.ceil(cfg["vocab_size"] / multiple) * multiple
        model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=padded, hidden_size=cfg["d_model"],
                                                       num_hidden_layers=cfg["n_layer"])), seed=seed)
    else:
        from .mamba2_loading import config_from_mamba_ssm       # mamba_ssm's defaults for what ssm_cfg leaves out
        model = init_mamba2_weights(Mamba2LM(config_from_mamba_ssm(cfg, out)), seed=seed)
    state = {}
    for key, value in model.to(dtype).state_dict().items():
        if key == "lm_head.weight":
            continue                                   # tied: MambaLMHeadModel saves it, loads ignore it
        state[key.replace("backbone.embeddings.", "backbone.embedding.")] = value
    state["lm_head.weight"] = state["backbone.embedding.weight"]
    torch.save(state, out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


@torch.no_grad()
def _write_vim_official(cfg: dict, out: Path, seed: int, dtype: torch.dtype, family: str) -> Path:
    from .vim_loading import official_vim_keys
    model = init_mamba_weights(VisionMamba(VimConfig.from_dict({k: v for k, v in cfg.items()
                                                                if not k.startswith("_")})), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    backbone = model.backbone
    for tensor in (backbone.cls_token, backbone.pos_embed, model.classifier.weight):   # N(0, 0.02²), as trained Vims start
        tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.02)
    model.classifier.bias.zero_()
    file = out / cfg["_file"]
    torch.save({"model": official_vim_keys(model.to(dtype).state_dict())}, file)
    return file


_WRITERS = {"hf": _write_hf, "mamba_ssm": _write_mamba_ssm, "official": _write_vim_official}
_LAYER_KEYS = {"hf": ("num_hidden_layers", "n_layer"), "mamba_ssm": ("n_layer",), "official": ("num_hidden_layers",)}


def checkpoint_path(name: str, out_dir) -> Path:
    """What materialize(name, out_dir) returns, without writing it: the directory for a language
    model, the published .pth file inside it for a Vision Mamba."""
    out_dir = Path(out_dir)
    return out_dir / real_config(name)["_file"] if published(name).family == "vim" else out_dir


def materialize(name: str, out_dir, fmt: str | None = None, layers: int | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> Path:
    """Write a random-initialised checkpoint of a published model into the new directory `out_dir`
    (created atomically; an existing path is refused). Returns what to give mq-deploy: the directory
    for a language model, the .pth file inside it for a Vision Mamba."""
    entry = published(name)
    fmt = fmt or entry.formats[0]
    cfg = real_config(name, fmt)
    keys = tuple(k for k in _LAYER_KEYS[fmt] if k in cfg)
    cfg = _with_layers(cfg, layers, keys)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise MQDeployError(f"{out_dir} exists; choose a new directory for the checkpoint")
    with atomic_directory(out_dir) as tmp:
        written = _WRITERS[fmt](cfg, Path(tmp), seed, dtype, entry.family)
    return out_dir / written.relative_to(tmp) if written != Path(tmp) else out_dir
