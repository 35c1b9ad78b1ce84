"""benchmarks/bench_weight_options.py end to end on the demo model, cut down: one recipe, one seed, a
short text. Its rows are the options it claims, and the FP16-kept row stays within its budget."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_rows_for_every_option_and_a_budget(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_weight_options", REPO / "benchmarks" / "bench_weight_options.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--recipes", "rtn", "--seeds", "1", "--mixed", "5.0", "--max-tokens", "2048",
                "--texts", str(REPO / "samples/data/wiki_heldout.txt"), "--out", str(tmp_path / "t.md")])
    report = (tmp_path / "t.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| rtn |")]
    labels = [r.split("|")[2].strip().split(" (")[0] for r in rows]
    assert labels[:4] == ["rtn", "gptq", "awq+rtn", "awq+gptq"] and len(labels) == 5
    assert labels[4] in ("rtn @ 5 bits", "gptq @ 5 bits")          # the better option without AWQ
    used = float(re.search(r"\(([\d.]+) bits used\)", rows[-1]).group(1))
    assert 4.0 <= used <= 5.0
    assert "- rtn: best 4-bit option" in report
