"""benchmarks/bench_scale.py end to end on a one-layer slice of the 130m shape: each size runs in a
child process that imports this checkout (installed or not), and the table and JSON carry every
measured stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_one_layer_of_each_family_through_load_quantize_export_and_check(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--sizes",
                           "130m,mamba2-130m,vim-s",
                           "--layers", "1", "--samples", "2", "--seq-len", "32", "--workdir", str(tmp_path),
                           "--json", str(tmp_path / "rows.json")], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [row["size"] for row in rows] == ["130m", "mamba2-130m", "vim-s"]
    for row in rows:
        assert row["layers"] == 1 and row["check"] == "ok", row
        for key in ("load_s", "quantize_s", "export_s", "check_s", "quantize_rss_gb", "peak_rss_gb", "artifact_gb",
                    "export_gb", "quantize_anon_gb", "peak_anon_gb"):
            assert row[key] > 0, (row["size"], key)
        assert row["quantize_anon_gb"] <= row["peak_anon_gb"] <= row["peak_rss_gb"]
    mamba1, mamba2, vim = rows
    assert 0.9 < vim["artifact_gb"] / vim["source_gb"] < 1.2, vim     # a .pth file is measured too
    assert all(row["ranges"] == "replayed" for row in rows)   # mambaquant W8A8 on a CPU: one calibration pass
    for row in (mamba1, mamba2):                   # the tied head is written once
        assert 0.9 < row["artifact_gb"] / row["source_gb"] < 1.1, row
    # one Vim-S layer beside its patch and position embeddings and 1000-class head: 1.8 M parameters
    assert 1.5 < vim["params_m"] < 2.5, vim
    assert "| 130m | cpu |" in proc.stdout and "| vim-s | cpu |" in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]   # the work folder is cleaned up


def test_an_unknown_size_is_refused_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--sizes", "130m,mamba3-1b",
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown model 'mamba3-1b'" in proc.stderr
    assert not list(tmp_path.iterdir())
