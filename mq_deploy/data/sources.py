"""One reader for every --calib / --eval / --text argument: a UTF-8 text file, 'pydoc-topics', or a
token-id file (.npy / .json). A text needs the model's tokenizer, asked for only then, so a
tokenizer-less checkpoint works with token ids; without one, the error names the option to use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MQDeployError
from ..models.tokenizer import NoTokenizerError
from .text import resolve_text_source
from .token_files import check_token_range, is_token_file, read_token_file


@dataclass
class TokenSource:
    ids: np.ndarray             # int64 [b, L]: one row for a text, the file's rows for a token file
    label: str                  # what to call it in reports
    n_bytes: int | None         # UTF-8 bytes of the text (None for token ids: there is no text)
    tokenizer: str              # the tokenizer's name, or "token ids"

    @property
    def stream(self) -> np.ndarray:
        """The ids as one sequence (a token file's rows in order)."""
        return self.ids.reshape(-1)


def load_tokens(spec: str, tokenizer, vocab_size: int, option: str, ids_options: str | None = None) -> TokenSource:
    """`tokenizer`: the model's tokenizer, or a function returning it (called only for a text).
    `ids_options`: the options that take token ids, named when there is no tokenizer (default: option)."""
    if is_token_file(spec):
        ids = read_token_file(spec, option)
        check_token_range(ids, vocab_size, f"{option} {spec}")
        return TokenSource(ids, str(spec), None, "token ids")
    body, label = resolve_text_source(spec)
    try:
        tok = tokenizer if hasattr(tokenizer, "encode") else tokenizer()
    except NoTokenizerError as e:
        raise MQDeployError(f"{e.reason}; pass token ids to {ids_options or option} instead: a .npy or .json file "
                            "of integer ids (JSON: a list, or a list of lists)") from None
    ids = np.asarray(tok.encode(body), dtype=np.int64)[None]
    if ids.size == 0:
        raise MQDeployError(f"{option} {label}: the tokenizer made no tokens of it")
    check_token_range(ids, vocab_size, f"{option} {label} (tokenized by {tok.name})")
    return TokenSource(ids, label, len(body.encode("utf-8")), tok.name)
