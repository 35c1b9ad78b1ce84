"""Read and write Mamba-1 checkpoints.

Three directory formats, told apart by config.json:
- Hugging Face transformers (`model_type: "mamba"`, e.g. state-spaces/mamba-130m-hf): weights in
  model.safetensors (optionally sharded with an index) or pytorch_model.bin.
- mamba_ssm's MambaLMHeadModel (`d_model`, `n_layer`, `ssm_cfg`, ... and no model_type, e.g.
  state-spaces/mamba-130m): pytorch_model.bin, vocab padded to `pad_vocab_size_multiple`,
  `backbone.embedding.weight`, tied lm_head.
- Ours: the HF layout written by `save_model` (safetensors), which transformers also reads.
Everything becomes one canonical `MambaLM`. Every bad input ends in one `MQDeployError` that says
what is wrong and what to do.
"""

from __future__ import annotations

import json
import math
import mmap
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic_dir import atomic_directory
from ..errors import MQDeployError
from .config import MambaConfig
from .mamba import MambaLM
from .safetensors_io import map_safetensors, write_safetensors
from .tokenizer import load_tokenizer

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model")


@dataclass
class LoadedModel:
    model: MambaLM
    config: MambaConfig
    path: Path
    source_format: str                  # "hf" or "mamba_ssm"
    _tokenizer: object = field(default=None, repr=False)

    @property
    def tokenizer(self):
        """The model's tokenizer, loaded on first use (a mamba_ssm directory has none)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.path, self.config.tokenizer)
        return self._tokenizer


# ---------------------------------------------------------------------------------------- config

def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MQDeployError(f"{path} is not valid JSON ({e}); restore the file from the original checkpoint") from None
    if not isinstance(data, dict):
        raise MQDeployError(f"{path} holds a JSON {type(data).__name__}, not an object; restore the file from the "
                            "original checkpoint")
    return data


def _reject_unsupported(raw: dict, where: Path) -> None:
    model_type = raw.get("model_type")
    ssm_cfg = raw.get("ssm_cfg")
    ssm_layer = ssm_cfg.get("layer", "Mamba1") if isinstance(ssm_cfg, dict) else "Mamba1"
    if model_type == "mamba2" or ssm_layer == "Mamba2":
        raise MQDeployError(f"{where} is a Mamba-2 checkpoint; this command reads Mamba-1 models only so far "
                            "(quantize, eval and compare-recipes take Mamba-2; docs/mamba2.md). Give a Mamba-1 "
                            "checkpoint such as state-spaces/mamba-130m-hf.")
    if model_type == "falcon_mamba":
        raise MQDeployError(f"{where} is a Falcon-Mamba checkpoint, which adds RMS norms of B, C and dt "
                            "inside the mixer; it is not supported yet.")
    if model_type == "vim":
        raise MQDeployError(f"{where} is a Vision Mamba (Vim) model; this language-model command does not take it: "
                            "quantize, export, check, validate --images, bench and build do (docs/vision.md)")
    if model_type not in (None, "mamba"):
        raise MQDeployError(f"{where} has model_type {model_type!r}, which is not a Mamba model; "
                            "mq-deploy reads Mamba-1 language models (model_type 'mamba').")


def reject_mamba_ssm_variants(raw: dict, where: Path, family: str) -> None:
    """The mamba_ssm configurations no loader here reads: hybrids and LayerNorm models."""
    if raw.get("d_intermediate", 0) or raw.get("attn_layer_idx"):
        raise MQDeployError(f"{where} is a hybrid mamba_ssm model (MLP or attention layers), which is not "
                            f"supported; only pure {family} stacks are.")
    if not raw.get("rms_norm", True):
        raise MQDeployError(f"{where} uses LayerNorm (rms_norm=false); only RMSNorm {family} models are supported.")


def _config_from_mamba_ssm(raw: dict, where: Path) -> MambaConfig:
    reject_mamba_ssm_variants(raw, where, "Mamba-1")
    ssm = raw.get("ssm_cfg") or {}
    multiple = raw.get("pad_vocab_size_multiple", 8)
    vocab = raw.get("vocab_size", 50277)
    padded = math.ceil(vocab / multiple) * multiple  # as MambaLMHeadModel.__init__ does
    d_model = raw["d_model"]
    dt_rank = ssm.get("dt_rank", "auto")
    return MambaConfig(
        vocab_size=padded, hidden_size=d_model, num_hidden_layers=raw["n_layer"],
        state_size=ssm.get("d_state", 16), expand=ssm.get("expand", 2), conv_kernel=ssm.get("d_conv", 4),
        time_step_rank=0 if dt_rank == "auto" else dt_rank, use_bias=ssm.get("bias", False),
        use_conv_bias=ssm.get("conv_bias", True), layer_norm_epsilon=raw.get("norm_epsilon", 1e-5),
        residual_in_fp32=raw.get("residual_in_fp32", True),
        tie_word_embeddings=raw.get("tie_embeddings", True),
        extra={"mamba_ssm_vocab_size": vocab})


def load_config(path) -> tuple[MambaConfig, str]:
    """(config, source format) of a checkpoint directory, with the checks on the directory itself."""
    path = Path(path)
    if not path.exists():
        raise MQDeployError(f"model directory {path} does not exist; pass the directory that holds config.json "
                            "and the weights (for the bundled demo: samples/models/mamba-byte-demo)")
    if not path.is_dir():
        raise MQDeployError(f"{path} is a file; pass the model directory that holds config.json and the weights")
    config_path = path / "config.json"
    if not config_path.is_file():
        pth = sorted(path.glob("*.pth"))
        if pth:     # an official Vision Mamba checkpoint is the .pth file itself, not its folder
            raise MQDeployError(f"{path} has no config.json but holds {pth[0].name}: give the .pth file itself "
                                f"(--model {pth[0]}) for an official Vision Mamba checkpoint")
        raise MQDeployError(f"{path} has no config.json; a Hugging Face or mamba_ssm checkpoint directory has one")
    raw = _read_json(config_path)
    _reject_unsupported(raw, path)
    try:
        if raw.get("model_type") == "mamba":
            return MambaConfig.from_hf_dict(raw), "hf"
        if "d_model" in raw and "n_layer" in raw:
            return _config_from_mamba_ssm(raw, path), "mamba_ssm"
    except (TypeError, ValueError) as e:
        raise MQDeployError(f"{config_path} is not a valid Mamba config: {e}") from None
    raise MQDeployError(f"{config_path} is neither a Hugging Face Mamba config (model_type 'mamba') nor a "
                        "mamba_ssm config (d_model, n_layer); cannot tell the architecture")


# --------------------------------------------------------------------------------------- weights

def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def load_torch_file(file: Path):
    """torch.load of a checkpoint with weights_only, its tensors mapped from the file (MAP_PRIVATE:
    copy-on-write, the file is never written) where torch's zip format allows, so the system can
    drop their pages instead of holding a second copy of the weights in memory; read whole from
    the legacy format, which cannot be mapped."""
    if not zipfile.is_zipfile(file):
        return torch.load(file, map_location="cpu", weights_only=True)
    previous = torch.serialization.get_default_mmap_options()
    torch.serialization.set_default_mmap_options(mmap.MAP_PRIVATE)     # whatever the caller set
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    finally:
        torch.serialization.set_default_mmap_options(previous)


def read_weight_file(file: Path) -> dict[str, torch.Tensor]:
    """One weight file; a truncated or corrupt file (either format) is one MQDeployError."""
    if file.suffix == ".safetensors":
        try:
            return map_safetensors(file)      # mapped, not read: pages come in as the weights are used
        except (ValueError, OSError) as e:      # malformed header or offsets, unreadable file
            raise MQDeployError(f"cannot read {file}: it is truncated or not a safetensors file ({_first_line(e)}); "
                                "restore it from the original checkpoint (re-download or re-copy it)") from None
    try:
        state = load_torch_file(file)
    except Exception as e:  # noqa: BLE001 - a truncated zip/pickle, or a pickle that is not a state_dict
        raise MQDeployError(f"cannot read {file} as a PyTorch state_dict: it is truncated, corrupt or not a plain "
                            f"state_dict ({_first_line(e)}); restore it from the original checkpoint") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MQDeployError(f"{file} holds a {type(state).__name__}, not a state_dict of tensors; save the model "
                            "with torch.save(model.state_dict(), ...)")
    return state


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".index.json"):
            index = _read_json(file)
            weight_map = index.get("weight_map") if isinstance(index, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                raise MQDeployError(f"{file} has no weight_map; restore it from the original checkpoint")
            shards = sorted(set(map(str, weight_map.values())))
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise MQDeployError(f"{file} lists shard files that are missing: {', '.join(missing)}")
            state = {}
            for shard in shards:
                state.update(read_weight_file(path / shard))
            return state
        return read_weight_file(file)
    raise MQDeployError(f"{path} has no weights: expected one of {', '.join(WEIGHT_FILES)}")


def canonical_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map mamba_ssm and bare MambaModel names onto MambaLM's (HF) names."""
    out = {}
    for key, value in state.items():
        if not key.startswith(("backbone.", "lm_head.")):
            key = "backbone." + key                         # a bare MambaModel state_dict
        key = key.replace("backbone.embedding.", "backbone.embeddings.")  # mamba_ssm's name
        out[key] = value
    return out


def tensor_mismatches(state: dict, expected: dict[str, tuple[int, ...]], implied: str = "config implies") -> list[str]:
    """What keeps `state` from loading into a model with `expected` {name: shape}: the missing and
    unexpected tensors and the shape mismatches, the first few of each named."""
    def first(names, n):
        return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: checkpoint {tuple(state[k].shape)}, {implied} {expected[k]}"
             for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != expected[k]]
    problems = [f"missing tensors: {first(missing, 5)}"] if missing else []
    problems += [f"unexpected tensors: {first(unexpected, 5)}"] if unexpected else []
    if wrong:
        problems.append("shape mismatches: " + "; ".join(wrong[:3]) + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""))
    return problems


def _check_tensors(state: dict, model: torch.nn.Module, config, where: Path, family: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    problems = tensor_mismatches(state, expected)
    if problems:
        raise MQDeployError(f"{where} does not match its config.json ({' | '.join(problems)}); "
                            f"the weights and config.json must come from the same {family} checkpoint")


def check_finite_weights(state: dict[str, torch.Tensor], where: Path) -> None:
    """NaN or inf in a weight makes every output NaN; say which tensor, before any work."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise MQDeployError(f"{where}: the weight {name} holds {bad} NaN/inf value(s); the checkpoint is "
                                "corrupt (or was saved after a diverged training step): restore it from the original")


def load_model(path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a checkpoint directory (HF, mamba_ssm, or ours) as a canonical MambaLM in eval mode."""
    path = Path(path)
    config, source_format = load_config(path)
    return build_language_model(MambaLM, config, source_format, path, "Mamba-1", dtype)


def build_language_model(model_cls, config, source_format: str, path: Path, family: str,
                         dtype: torch.dtype = torch.float32) -> LoadedModel:
    """`model_cls(config)` (MambaLM, Mamba2LM) with the weights of the checkpoint at `path`, under our
    names: a head tied to the embedding stays tied unless the file holds a different one, the
    tensors are checked against the config (errors name the `family`) and for NaN/inf before they
    are loaded."""
    state = canonical_keys(read_state_dict(path))
    head, embedding = state.get("lm_head.weight"), state.get("backbone.embeddings.weight")
    if config.tie_word_embeddings and head is not None:
        if embedding is not None and not torch.equal(head, embedding):
            config.tie_word_embeddings = False   # the file says otherwise: believe the weights
        else:
            state.pop("lm_head.weight")
    with torch.device("meta"):
        model = model_cls(config)
    _check_tensors(state, model, config, path, family)
    check_finite_weights(state, path)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["backbone.embeddings.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.backbone.embeddings.weight
    for name, value in list(model.named_buffers()):
        if value is not None and value.is_meta:
            raise MQDeployError(f"internal: buffer {name} was not initialised while loading {path}")
    return LoadedModel(model.to(dtype).eval(), config, path, source_format)


# ------------------------------------------------------------------------------------------ save

def save_model(model: MambaLM, out_dir, copy_tokenizer_from=None) -> Path:
    """Write `model` as config.json + model.safetensors (HF layout), atomically: the directory
    appears complete or not at all."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)         # shared with the embedding, as HF saves it
    with atomic_directory(out_dir) as tmp:
        write_model_files(tmp, model.config, state, copy_tokenizer_from)
    return Path(out_dir)


def write_model_files(directory: Path, config: MambaConfig, state: dict, copy_tokenizer_from=None) -> None:
    """config.json, model.safetensors and the tokenizer files (if any) into `directory`."""
    (directory / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n", encoding="utf-8")
    write_safetensors(directory / "model.safetensors", state, metadata={"format": "pt"})
    if copy_tokenizer_from is not None:
        for name in TOKENIZER_FILES:
            if (Path(copy_tokenizer_from) / name).is_file():
                shutil.copy2(Path(copy_tokenizer_from) / name, directory / name)
