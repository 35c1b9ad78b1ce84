"""The compare-recipes reports in docs/: each .md is what to_markdown makes of its .json (the table
people read is the data that was measured), and a footnote about a peer appears only beside its rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mq_deploy.reports.compare_recipes import to_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPORTS = sorted(DOCS.glob("compare_recipes_*.json"))


def test_there_are_reports():
    assert len(REPORTS) >= 4


@pytest.mark.parametrize("path", REPORTS, ids=[p.stem for p in REPORTS])
def test_markdown_is_made_from_its_json(path):
    result = json.loads(path.read_text(encoding="utf-8"))
    markdown = to_markdown(result)
    assert path.with_suffix(".md").read_text(encoding="utf-8") == markdown
    has_fp8_peer = any(r["recipe"] == "modelopt-w4a8-awq" for r in result["rows"])
    assert ("quantizes activations to FP8" in markdown) == has_fp8_peer
