"""Markdown tables for reports that people read (GPU report, benchmarks)."""

from __future__ import annotations


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """columns: (title, key, format spec or "" for str())."""
    head = "| " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(format(r[key], fmt) if fmt else str(r[key]) for _, key, fmt in columns) + " |"
            for r in rows]
    return "\n".join([head, rule, *body])
