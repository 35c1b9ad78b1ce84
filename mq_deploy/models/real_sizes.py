"""The published Mamba-1 sizes (state-spaces/mamba-130m ... 2.8b), shipped as config.json files
only (models/real_configs/), and random-initialised checkpoints of them written offline, so every
size can be exercised without downloading weights.

`materialize(size, out_dir, fmt)` writes the directory a user would have after downloading:
- fmt "hf": transformers' MambaForCausalLM at the -hf config, saved by transformers'
  save_pretrained (config.json + model.safetensors) - a checkpoint this project did not write;
- fmt "mamba_ssm": the mamba_ssm config.json and a pytorch_model.bin with mamba_ssm's key names
  (`backbone.embedding.weight`, tied lm_head, vocab padded to 50280 rows), as MambaLMHeadModel
  saves it (mamba_ssm itself needs CUDA to install, so the file is written here).
`layers` keeps only the first n layers (a slice of the real shape for quick tests).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import torch

from ..atomic_dir import atomic_directory
from ..errors import MQDeployError
from .config import MambaConfig
from .init import init_mamba_weights
from .mamba import MambaLM

REAL_SIZES = ("130m", "370m", "790m", "1.4b", "2.8b")
FORMATS = ("hf", "mamba_ssm")


def real_config(size: str, fmt: str = "hf") -> dict:
    """The published config.json of state-spaces/mamba-<size>[-hf] as a dict."""
    if size not in REAL_SIZES:
        raise MQDeployError(f"unknown size {size!r}; choose one of {', '.join(REAL_SIZES)}")
    if fmt not in FORMATS:
        raise MQDeployError(f"unknown checkpoint format {fmt!r}; choose hf or mamba_ssm")
    name = f"mamba-{size}{'-hf' if fmt == 'hf' else ''}.json"
    return json.loads(resources.files("mq_deploy.models").joinpath("real_configs", name).read_text())


def parameter_count(size: str) -> int:
    cfg = real_config(size)
    d, n, inner, rank, state = (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"],
                                cfg["time_step_rank"], cfg["state_size"])
    per_layer = (d * 2 * inner + inner * 4 + inner + inner * (rank + 2 * state) + rank * inner + inner
                 + inner * state + inner + inner * d + d)
    return cfg["vocab_size"] * d + n * per_layer + d


def _with_layers(cfg: dict, layers: int | None, keys: tuple[str, ...]) -> dict:
    if layers is None:
        return cfg
    if not 1 <= layers <= cfg[keys[0]]:
        raise MQDeployError(f"layers must be in 1..{cfg[keys[0]]}, got {layers}")
    return {**cfg, **{k: layers for k in keys}}


def _materialize_hf(cfg: dict, out: Path, seed: int, dtype: torch.dtype) -> None:
    try:
        import transformers
    except ImportError:
        raise MQDeployError("writing an HF-format checkpoint uses transformers: pip install transformers") from None
    torch.manual_seed(seed)
    config = transformers.MambaConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    model = transformers.MambaForCausalLM(config).to(dtype).eval()
    model.save_pretrained(out, safe_serialization=True)


def _materialize_mamba_ssm(cfg: dict, out: Path, seed: int, dtype: torch.dtype) -> None:
    multiple = cfg.get("pad_vocab_size_multiple", 8)
    padded = math.ceil(cfg["vocab_size"] / multiple) * multiple
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=padded, hidden_size=cfg["d_model"],
                                                   num_hidden_layers=cfg["n_layer"])), seed=seed)
    state = {}
    for key, value in model.to(dtype).state_dict().items():
        if key == "lm_head.weight":
            continue                                   # tied: MambaLMHeadModel saves it, loads ignore it
        state[key.replace("backbone.embeddings.", "backbone.embedding.")] = value
    state["lm_head.weight"] = state["backbone.embedding.weight"]
    torch.save(state, out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def materialize(size: str, out_dir, fmt: str = "hf", layers: int | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> Path:
    """Write a random-initialised checkpoint of a published size to `out_dir` (created atomically;
    an existing path is refused)."""
    cfg = real_config(size, fmt)
    cfg = _with_layers(cfg, layers, ("num_hidden_layers", "n_layer") if fmt == "hf" else ("n_layer",))
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise MQDeployError(f"{out_dir} exists; choose a new directory for the checkpoint")
    with atomic_directory(out_dir) as tmp:
        (_materialize_hf if fmt == "hf" else _materialize_mamba_ssm)(cfg, Path(tmp), seed, dtype)
    return out_dir
