"""Evaluation and calibration text: a UTF-8 file, or CPython's own documentation topics.

`pydoc-topics` names the text of `pydoc_data.topics` (about 465 K characters of English reference
documentation that every CPython ships), so a fresh machine has real text with nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MQDeployError

PYDOC_TOPICS = "pydoc-topics"


def pydoc_topics_text() -> str:
    from pydoc_data.topics import topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def read_text(path) -> str:
    path = Path(path)
    if not path.exists():
        raise MQDeployError(f"text file {path} does not exist; pass a UTF-8 text file, token ids (.npy / .json) or "
                            f"'{PYDOC_TOPICS}'")
    if not path.is_file():
        raise MQDeployError(f"{path} is not a file; pass a UTF-8 text file, token ids (.npy / .json) or '{PYDOC_TOPICS}'")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise MQDeployError(f"{path} is not UTF-8 text (byte {e.start}); convert it, e.g. iconv -t UTF-8") from None
    if not text.strip():
        raise MQDeployError(f"{path} is empty; evaluation and calibration need real text")
    return text


def resolve_text_source(spec: str) -> tuple[str, str]:
    """(text, label) for a --text argument: a file path, or 'pydoc-topics'."""
    if spec == PYDOC_TOPICS and not Path(spec).exists():
        return pydoc_topics_text(), "pydoc_data.topics"
    return read_text(spec), str(spec)
