"""The gpu_verify stage `profile`: Nsight Compute (ncu) on the scan kernels at issue 15's acceptance
shape and a mamba2-130m mixer, so that one GPU call says *why* a kernel is where it is (occupancy,
issue-slot use, the pipes it keeps busy, what its warps wait on, the bytes it pulls from L2 and
DRAM, the instructions it executed), not only how long it takes
(plugins/selective_scan/NOTES_onepass.md: section 6, the one-pass kernel missed its prediction 4x
and the next step is its stall reasons; section 8, its B/C traffic from L2, predicted).

Two halves:
- `python profile_kernels.py --target LIB` is what ncu runs: the inputs (torch kernels, filtered
  out by name), then each profiled scan launched once;
- `profile()` builds the ncu command, runs it, and turns its raw CSV page into report rows
  (`parse_raw_csv`, `summarize`; tested on the CPU with a recorded layout, tests/test_gpu_verify.py).

ncu runs with `--clock-control none` (the device notes: never change the card's clocks). The
memory and instruction counters are asked for by name (`--metrics`); an ncu that refuses one of
them is run once more with the sections alone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]

# The kernels of the profiled launches, by function name (ncu --kernel-name-base function).
KERNELS = ("onepass_scan_kernel", "chunk_scan_kernel", "chunk_carry_kernel", "ssd_chunk_kernel", "ssd_carry_kernel",
           "ssd_mma_state_kernel", "ssd_mma_output_kernel")
SECTIONS = ("SpeedOfLight", "Occupancy", "LaunchStats", "WarpStateStats", "SchedulerStats", "ComputeWorkloadAnalysis")
STALL_PREFIX, STALL_SUFFIX = "smsp__average_warps_issue_stalled_", "_per_issue_active.ratio"
# Stall reasons that are not waiting: a warp being issued, or eligible but not picked.
NOT_WAITING = ("selected", "not_selected")

# (report column, metric names in order of preference: ncu versions name a few differently)
COLUMNS = [
    ("duration µs", ("gpu__time_duration.sum",), 1e-3),            # base unit: nanoseconds
    ("SM throughput %", ("sm__throughput.avg.pct_of_peak_sustained_elapsed",), 1),
    ("memory throughput %", ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",), 1),
    ("registers", ("launch__registers_per_thread",), 1),
    ("theoretical occupancy %", ("sm__maximum_warps_per_active_cycle_pct",), 1),
    ("achieved occupancy %", ("sm__warps_active.avg.pct_of_peak_sustained_active",), 1),
    ("issue slots busy %", ("smsp__issue_active.avg.pct_of_peak_sustained_active",
                            "sm__inst_issued.avg.pct_of_peak_sustained_active"), 1),
    ("cycles per issued instruction", ("smsp__average_warp_latency_per_inst_issued.ratio",
                                       "smsp__average_warps_active_per_issue_active.ratio"), 1),
    ("XU (MUFU) pipe %", ("sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active",
                          "sm__pipe_xu_cycles_active.avg.pct_of_peak_sustained_active"), 1),
    ("FMA pipe %", ("sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
                    "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"), 1),
]
# Where the bytes come from (NOTES_onepass.md section 8: the one-pass kernel's B/C re-reads) and how
# many instructions it took: no section collects these, so they are asked for by name (--metrics).
MEMORY_COLUMNS = [
    ("L2→L1 MB", ("l1tex__m_xbar2l1tex_read_bytes.sum",), 1e-6),
    ("DRAM read MB", ("dram__bytes_read.sum",), 1e-6),
    ("L1 hit %", ("l1tex__t_sector_hit_rate.pct",), 1),
    ("shared bank conflicts k", ("l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum",), 1e-3),
    ("warp instructions M", ("smsp__inst_executed.sum",), 1e-6),
]
COLUMNS += MEMORY_COLUMNS
MEMORY_METRICS = tuple(names[0] for _, names, _ in MEMORY_COLUMNS)


# ---- the target: what runs under ncu -----------------------------------------------------------------

def run_target(lib_path: str) -> None:
    """Each profiled scan once, at issue 15's acceptance shape (float16, B=1, L=2048, D=1536, N=16,
    gate on) and a mamba2-130m mixer (float16, B=1, L=2048, 24 heads of 64, N=128: the scalar chunked
    SSD kernel and the tensor-core one)."""
    import torch

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "plugins" / "selective_scan"))
    sys.path.insert(0, str(REPO / "plugins" / "ssd_scan"))
    import gpu_check
    import ssd_check
    from mq_deploy.ops.cuda_kernels import MqKernels

    lib = MqKernels(lib_path)
    case = gpu_check.ScanCase(1, 2048, 1536, "float16", gate=True)
    inputs = gpu_check.make_inputs(case, seed=11)
    y = torch.empty_like(inputs["x"])
    state = torch.empty(case.batch, case.dim, case.dstate, device="cuda")
    ws = torch.empty(max(lib.workspace_size(case.batch, case.seqlen, case.dim, case.dstate), 16), dtype=torch.uint8,
                     device="cuda")
    for algorithm in ("onepass", "chunked"):
        lib.selective_scan(**inputs, y=y, final_state=state, workspace=ws, algorithm=algorithm)
    ssd = ssd_check.SsdCase(1, 2048, 24, 64, 1, 128, "float16")
    ssd_inputs = ssd_check.make_inputs(ssd, seed=12)
    ssd_y = torch.empty_like(ssd_inputs["x"])
    ssd_state = torch.empty(1, 24, 64, 128, device="cuda")
    ssd_ws = torch.empty(max(lib._lib.mq_ssd_scan_workspace_size(1, 2048, 24, 64, 128), 16), dtype=torch.uint8,
                         device="cuda")
    lib.ssd_scan(**ssd_inputs, y=ssd_y, final_state=ssd_state, workspace=ssd_ws, algorithm="chunked")
    lib.ssd_scan(**ssd_inputs, y=ssd_y, final_state=ssd_state, algorithm="mma")     # its own workspace
    torch.cuda.synchronize()


# ---- the driver ----------------------------------------------------------------------------------------

def find_ncu() -> str | None:
    found = shutil.which("ncu")
    if found:
        return found
    for root in (pathlib.Path("/usr/local/cuda/bin"), *sorted(pathlib.Path("/opt/nvidia").glob("nsight-compute/*"))):
        if (root / "ncu").is_file():
            return str(root / "ncu")
    return None


def ncu_command(ncu: str, lib_path: pathlib.Path, memory_metrics: bool = True) -> list[str]:
    names = "|".join(KERNELS)       # unanchored: the function name may carry its namespace (mq::scan::)
    cmd = [ncu, "--clock-control", "none", "--target-processes", "all", "--kernel-name-base", "function",
           "--kernel-name", f"regex:({names})", "--csv", "--page", "raw", "--print-units", "base",
           "--print-kernel-base", "function"]
    for section in SECTIONS:
        cmd += ["--section", section]
    if memory_metrics:
        cmd += ["--metrics", ",".join(MEMORY_METRICS)]
    return cmd + [sys.executable, str(pathlib.Path(__file__).resolve()), "--target", str(lib_path)]


def number(text: str) -> float | None:
    """A raw-page value: thousands separators dropped; "n/a" and the like are None."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def parse_raw_csv(text: str) -> list[dict]:
    """One record per profiled launch: {"kernel", "grid", "block", "metrics": {name: (value, unit)}}.
    ncu's own `==PROF==` lines and the program's output come first and are skipped; of the CSV, the
    first row names the columns, the second gives their units, the others are launches."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    if len(rows) < 2 or "Kernel Name" not in rows[0]:
        return []
    header, units = rows[0], rows[1]
    records = []
    for row in rows[2:]:
        if len(row) != len(header):
            continue
        cells = dict(zip(header, row))
        metrics = {name: (number(value), unit) for name, value, unit in zip(header, row, units) if "__" in name}
        records.append({"kernel": cells["Kernel Name"], "grid": cells.get("Grid Size", ""),
                        "block": cells.get("Block Size", ""), "metrics": metrics})
    return records


def metric(record: dict, names) -> float | None:
    for name in names:
        value = record["metrics"].get(name, (None, ""))[0]
        if value is not None:
            return value
    return None


def stalls(record: dict, top: int = 4) -> list[tuple[str, float]]:
    """The reasons warps waited, in cycles per issued instruction, largest first."""
    found = [(name[len(STALL_PREFIX):-len(STALL_SUFFIX)], value) for name, (value, _) in record["metrics"].items()
             if name.startswith(STALL_PREFIX) and name.endswith(STALL_SUFFIX) and value is not None]
    found = [(reason, value) for reason, value in found if reason not in NOT_WAITING]
    return sorted(found, key=lambda item: -item[1])[:top]


def summarize(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        row = {"kernel": r["kernel"], "grid": r["grid"], "block": r["block"]}
        for column, names, factor in COLUMNS:
            value = metric(r, names)
            row[column] = math.nan if value is None else value * factor
        row["top stalls (cycles per instruction)"] = ", ".join(f"{k} {v:.1f}" for k, v in stalls(r)) or "-"
        rows.append(row)
    return rows


def table_columns() -> list[tuple[str, str, str]]:
    fmt = {"duration µs": ".1f", "registers": ".0f", "cycles per issued instruction": ".1f",
           "warp instructions M": ".2f"}
    return ([("kernel", "kernel", ""), ("grid", "grid", ""), ("block", "block", "")]
            + [(c, c, fmt.get(c, ".0f")) for c, _, _ in COLUMNS]
            + [("top stalls (cycles per instruction)", "top stalls (cycles per instruction)", "")])


def profile(lib_path: pathlib.Path, log: pathlib.Path, timeout: float) -> tuple[str, list[dict], str]:
    """(verdict, rows, detail): verdict "ok", "no ncu" or "failed"."""
    ncu = find_ncu()
    if ncu is None:
        return "no ncu", [], "ncu (Nsight Compute) is not on the PATH"
    home = log.parent / "ncu_home"          # ncu deploys its section files under $HOME
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    deadline = time.monotonic() + timeout
    logs = []
    for memory_metrics in (True, False):
        cmd = ncu_command(ncu, lib_path, memory_metrics)
        code, out, err = run_in_own_group(cmd, env, max(1.0, deadline - time.monotonic()))
        logs.append(" ".join(cmd) + "\n\n" + out + "\n----- stderr -----\n" + err)
        log.write_text("\n\n".join(logs))
        rows = summarize(parse_raw_csv(out))
        if code is None:
            return "failed", rows, f"ncu timed out after {timeout:.0f} s (killed with the program)"
        if code == 0 and rows:
            return "ok", rows, " ".join(cmd)
        # An ncu that does not know one of the extra metrics refuses the whole run: once more without.
        if not (memory_metrics and "metric" in (err + out).lower()):
            break
    return "failed", rows, f"ncu exit {code}: " + (err.strip() or out.strip())[-1500:]


def run_in_own_group(cmd: list[str], env: dict, timeout: float) -> tuple[int | None, str, str]:
    """(exit code, or None on a timeout; stdout; stderr). The command runs in its own process group:
    on a timeout ncu *and* the profiled program go, so nothing holds the GPU during later stages."""
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):      # it may have ended at that very moment
            os.killpg(process.pid, signal.SIGKILL)
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:                  # something outside the group holds the pipes
            out, err = "", ""
        return None, out, err

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--target":
        run_target(sys.argv[2])
    else:
        sys.exit("usage: profile_kernels.py --target LIBMQ_KERNELS (run by ncu; see profile())")
