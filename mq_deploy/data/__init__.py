"""Text and token data from local files (nothing is downloaded)."""

from .text import PYDOC_TOPICS, read_text, resolve_text_source

__all__ = ["PYDOC_TOPICS", "read_text", "resolve_text_source"]
