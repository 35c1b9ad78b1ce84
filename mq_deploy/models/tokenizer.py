"""Tokenizers: the built-in byte-level one, and a model directory's own through transformers."""

from __future__ import annotations

from pathlib import Path

from ..errors import MQDeployError

BYTE_TOKENIZER = "bytes"


class NoTokenizerError(MQDeployError):
    """A model directory with no tokenizer. `reason` is the message without a fix, so the caller
    can name the option that takes token ids instead."""

    def __init__(self, reason: str):
        super().__init__(f"{reason}; pass token ids instead of text (a .npy or .json file of integer ids)")
        self.reason = reason


class ByteTokenizer:
    """UTF-8 bytes are the tokens (vocab 256). Decoding replaces invalid sequences."""

    name = BYTE_TOKENIZER
    vocab_size = 256
    end_of_text_id = None           # no special tokens: every id is a byte

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class HFTokenizer:
    """A tokenizer directory (tokenizer.json / tokenizer_config.json) read by transformers, offline."""

    def __init__(self, model_dir: Path):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise MQDeployError(f"{model_dir} has its own tokenizer, which needs transformers: "
                                "pip install 'mq-deploy[hf]'") from None
        try:
            self._tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - transformers raises many types for a broken tokenizer
            raise MQDeployError(f"cannot read the tokenizer files in {model_dir} ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); restore them from the original "
                                "checkpoint, or remove them and pass token ids") from None
        # the file is what the user knows; transformers picks the class from config.json's model type
        files = "tokenizer.json" if (model_dir / "tokenizer.json").is_file() else "tokenizer_config.json"
        self.name = f"{model_dir.resolve().name}/{files} ({type(self._tok).__name__}, {len(self._tok):,} tokens)"
        self.vocab_size = len(self._tok)
        self.end_of_text_id = self._tok.eos_token_id    # GPT-NeoX's <|endoftext|> for Mamba checkpoints

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])


def has_own_tokenizer(model_dir: Path) -> bool:
    return (Path(model_dir) / "tokenizer.json").is_file() or (Path(model_dir) / "tokenizer_config.json").is_file()


def has_tokenizer(model_dir: Path, declared: str | None) -> bool:
    """Whether load_tokenizer finds a tokenizer (token-id-only checkpoints, e.g. mamba_ssm's, have none)."""
    return has_own_tokenizer(model_dir) or declared == BYTE_TOKENIZER


def load_tokenizer(model_dir: Path, declared: str | None):
    """The tokenizer for a model directory: its own files if present, else the declared built-in."""
    model_dir = Path(model_dir)
    if has_own_tokenizer(model_dir):
        return HFTokenizer(model_dir)
    if declared == BYTE_TOKENIZER:
        return ByteTokenizer()
    raise NoTokenizerError(
        f"no tokenizer for {model_dir}: it has no tokenizer.json and its config.json declares no built-in "
        "tokenizer (copy the model family's tokenizer files into it: mamba_ssm checkpoints use "
        "EleutherAI/gpt-neox-20b's tokenizer.json)")
