"""Mamba-1 language-model configuration, read from and written to Hugging Face's config.json layout."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# Keys of HF's MambaConfig that we read; anything else in a config.json is kept in `extra`
# so a save round-trips it.
_HF_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand",
            "intermediate_size", "conv_kernel", "time_step_rank", "use_bias", "use_conv_bias",
            "layer_norm_epsilon", "residual_in_fp32", "tie_word_embeddings")


@dataclass
class MambaConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    state_size: int = 16
    expand: int = 2
    intermediate_size: int = 0          # 0: expand * hidden_size
    conv_kernel: int = 4
    time_step_rank: int = 0             # 0: ceil(hidden_size / 16), HF's "auto"
    use_bias: bool = False              # in_proj / out_proj bias
    use_conv_bias: bool = True
    layer_norm_epsilon: float = 1e-5
    residual_in_fp32: bool = True
    tie_word_embeddings: bool = True
    tokenizer: str | None = None        # "bytes": the built-in byte-level tokenizer
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.intermediate_size:
            self.intermediate_size = self.expand * self.hidden_size
        if not self.time_step_rank or self.time_step_rank == "auto":
            self.time_step_rank = math.ceil(self.hidden_size / 16)
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "state_size",
                     "intermediate_size", "conv_kernel", "time_step_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"config: {name} must be a positive integer, got {value!r}")

    @classmethod
    def from_hf_dict(cls, data: dict) -> "MambaConfig":
        known = {k: data[k] for k in _HF_KEYS if k in data and data[k] is not None}
        extra = {k: v for k, v in data.items() if k not in _HF_KEYS and k != "mq_deploy"}
        tokenizer = (data.get("mq_deploy") or {}).get("tokenizer")
        return cls(**known, tokenizer=tokenizer, extra=extra)

    def to_hf_dict(self) -> dict:
        """config.json that transformers' MambaForCausalLM also reads."""
        data = dict(self.extra)
        data.update({k: v for k, v in asdict(self).items() if k in _HF_KEYS})
        data["model_type"] = "mamba"
        data["architectures"] = ["MambaForCausalLM"]
        data["hidden_act"] = "silu"
        if self.tokenizer:
            data["mq_deploy"] = {"tokenizer": self.tokenizer}
        return data
