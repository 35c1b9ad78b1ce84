"""The GPU verification (scripts/gpu_verify.sh) as far as a CPU can check it:

- always: the shell script parses; the planned plugin cases cover what issue 12 asks (dtypes,
  multi-chunk lengths, reverse, batch > 1, D not a multiple of 128, N 16 and 64; Hadamard at every
  base order); the report is complete after every stage and keeps earlier stages when a later one
  breaks;
- with TensorRT headers (MQ_TRT_INCLUDE_ROOT, or several in MQ_TRT_INCLUDE_ROOTS separated by ':',
  each a folder with include/NvInfer.h, e.g. `git archive` of github.com/NVIDIA/TensorRT's include/):
  the plugin harness and the sanitizer driver build with -Werror against the first (CMake, nvcc
  needed) and the harness compiles against the others; the built harness then runs every check that
  launches nothing on the CPU: the negative checks and the whole build phase of each planned case.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest
from conftest import load_module

REPO = pathlib.Path(__file__).resolve().parents[1]
VERIFY = REPO / "scripts" / "gpu_verify"




plugin_checks = load_module("plugin_checks", VERIFY / "plugin_checks.py")
report_mod = load_module("gpu_verify_report", VERIFY / "report.py")
profile_mod = load_module("profile_kernels", VERIFY / "profile_kernels.py")


def test_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_verify.sh")], check=True)


def test_plugin_cases_cover_the_issue():
    cases = plugin_checks.plugin_scan_cases()
    assert {c.dtype for c in cases} == {"float32", "float16", "bfloat16"}
    assert any(c.seqlen >= 4096 for c in cases if c.dtype == "float16")
    assert {c.reverse for c in cases} == {False, True}
    assert any(c.batch > 1 for c in cases) and any(c.dim % 128 for c in cases)
    assert {c.dstate for c in cases} == {16, 64}
    assert {c.delta_softplus for c in cases} == {False, True}
    quick = plugin_checks.plugin_scan_cases(quick=True)
    assert set(quick) < set(cases) and {c.dstate for c in quick} == {16, 64}


def test_hadamard_sizes_cover_every_base_order():
    from mq_deploy.quant.transforms.hadamard import hadamard_factors

    seen = {}
    for n in plugin_checks.hadamard_sizes():
        m, k = hadamard_factors(n)
        seen.setdefault(m, set()).add(k)
    assert set(seen) == {1, 12, 20, 28, 40}
    assert max(plugin_checks.hadamard_sizes()) == 16384
    assert all(len(ks) >= 1 for ks in seen.values()) and sum(len(ks) > 2 for ks in seen.values()) >= 3


def test_report_is_whole_after_every_stage(tmp_path):
    copy = tmp_path / "out"
    rep = report_mod.Report(tmp_path / "r.md", "T", ["- header"], copies=[copy / "r.md"])
    assert "IN PROGRESS" in (tmp_path / "r.md").read_text() and "(no stage finished yet)" in (tmp_path / "r.md").read_text()
    rep.add(report_mod.StageResult("build", report_mod.PASS, "built", 1.0), "body one")
    rep.add(report_mod.StageResult("kernels", report_mod.ERROR, "RuntimeError: boom", 2.0), "trace")
    text = (tmp_path / "r.md").read_text()
    assert "## build: pass" in text and "body one" in text and "## kernels: ERROR" in text
    assert "2 stages, 1 failed" in text and "IN PROGRESS" in text
    assert (copy / "r.md").read_text() == text
    rep.finish()
    assert "Run finished" in (tmp_path / "r.md").read_text() and rep.failed() == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


# ---- the ncu profile stage: its command and the raw CSV page it reads ------------------------------------

def _raw_page(rows: list[dict]) -> str:
    """ncu --csv --page raw --print-units base as it prints it: its own ==PROF== lines and the
    program's output first, a header row, a units row, then one row per launch (quoted, numbers with
    thousands separators)."""
    import csv
    import io

    names = ["ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream", "Block Size",
             "Grid Size", "Device", "CC"] + sorted({k for r in rows for k in r if "__" in k})
    units = {"gpu__time_duration.sum": "nsecond", "launch__registers_per_thread": "register/thread"}
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(names)
    writer.writerow([units.get(n, "%" if "pct" in n else ("inst" if "ratio" in n else "")) if "__" in n else ""
                     for n in names])
    for i, r in enumerate(rows):
        writer.writerow([str(i), "4242", "python3", "127.0.0.1", r["name"], "1", "7", r["block"], r["grid"], "0", "9.0"]
                        + [r.get(n, "n/a") for n in names[11:]])
    return "==PROF== Connected to process 4242 (/usr/bin/python3.12)\nsome program output\n" + \
        "==PROF== Profiling \"onepass_scan_kernel\": 0%....50%....100% - 38 passes\n" + out.getvalue()


def test_profile_reads_nsight_computes_raw_page():
    stall = lambda reason: f"{profile_mod.STALL_PREFIX}{reason}{profile_mod.STALL_SUFFIX}"  # noqa: E731
    onepass = {"name": "onepass_scan_kernel", "block": "(128, 1, 1)", "grid": "(384, 1, 1)",
               "gpu__time_duration.sum": "117,040", "sm__throughput.avg.pct_of_peak_sustained_elapsed": "23.5",
               "launch__registers_per_thread": "157", "sm__warps_active.avg.pct_of_peak_sustained_active": "17.9",
               "smsp__average_warp_latency_per_inst_issued.ratio": "31.2",
               stall("barrier"): "12.5", stall("short_scoreboard"): "7.25", stall("selected"): "1",
               stall("not_selected"): "40", stall("long_scoreboard"): "0.5", stall("wait"): "3.1",
               stall("math_pipe_throttle"): "0.75", "l1tex__m_xbar2l1tex_read_bytes.sum": "412,316,352",
               "dram__bytes_read.sum": "19,660,800", "smsp__inst_executed.sum": "26,112,000"}
    chunk = {"name": "chunk_scan_kernel", "block": "(256, 1, 1)", "grid": "(96, 32, 1)",
             "gpu__time_duration.sum": "30,500.5", stall("long_scoreboard"): "9.0"}
    rows = profile_mod.summarize(profile_mod.parse_raw_csv(_raw_page([onepass, chunk])))
    assert [r["kernel"] for r in rows] == ["onepass_scan_kernel", "chunk_scan_kernel"]
    first = rows[0]
    assert first["duration µs"] == pytest.approx(117.04) and first["registers"] == 157
    assert first["grid"] == "(384, 1, 1)" and first["SM throughput %"] == pytest.approx(23.5)
    assert first["achieved occupancy %"] == pytest.approx(17.9)
    assert first["cycles per issued instruction"] == pytest.approx(31.2)
    assert first["L2→L1 MB"] == pytest.approx(412.316352) and first["DRAM read MB"] == pytest.approx(19.6608)
    assert first["warp instructions M"] == pytest.approx(26.112)
    # waiting reasons only, largest first, the top four
    assert first["top stalls (cycles per instruction)"] == "barrier 12.5, short_scoreboard 7.2, wait 3.1, " \
                                                         "math_pipe_throttle 0.8"
    assert rows[1]["duration µs"] == pytest.approx(30.5005)
    assert math.isnan(rows[1]["SM throughput %"])          # a metric this ncu did not collect
    assert profile_mod.parse_raw_csv("==PROF== Error: no kernels were profiled\n") == []


def test_profile_command_leaves_the_clocks_alone_and_profiles_only_the_scans(tmp_path):
    cmd = profile_mod.ncu_command("/usr/local/cuda/bin/ncu", tmp_path / "libmq_kernels.so")
    assert cmd[cmd.index("--clock-control") + 1] == "none"
    pattern = cmd[cmd.index("--kernel-name") + 1]
    assert pattern.startswith("regex:") and all(k in pattern for k in ("onepass_scan_kernel", "chunk_scan_kernel",
                                                                       "chunk_carry_kernel", "ssd_chunk_kernel"))
    assert cmd[cmd.index("--page") + 1] == "raw" and "--csv" in cmd
    # the memory and instruction counters by name, every one of them a column of the report
    named = cmd[cmd.index("--metrics") + 1].split(",")
    assert set(named) == set(profile_mod.MEMORY_METRICS)
    assert all(any(m in names for _, names, _ in profile_mod.COLUMNS) for m in named)
    assert "--metrics" not in profile_mod.ncu_command("ncu", tmp_path / "lib.so", memory_metrics=False)
    assert cmd[-3:] == [str(VERIFY / "profile_kernels.py"), "--target", str(tmp_path / "libmq_kernels.so")]
    # every kernel name the pattern lists is a kernel the plugins define
    sources = "".join(p.read_text() for p in (REPO / "plugins").rglob("*.cu*"))
    assert all(f"{k}<" in sources or f"{k}(" in sources for k in profile_mod.KERNELS)


def test_profile_stage_reports_what_ncu_printed(tmp_path, monkeypatch):
    """The stage end to end with a stand-in ncu that prints a recorded raw page (the real one needs
    a GPU): the report row names the one-pass kernel's time, occupancy and top stalls, and the log
    is kept."""
    page = _raw_page([{"name": "onepass_scan_kernel", "block": "(128, 1, 1)", "grid": "(384, 1, 1)",
                       "gpu__time_duration.sum": "117,040", "sm__warps_active.avg.pct_of_peak_sustained_active": "17.9",
                       f"{profile_mod.STALL_PREFIX}barrier{profile_mod.STALL_SUFFIX}": "12.5"}])
    (tmp_path / "page.csv").write_text(page)
    fake = tmp_path / "bin" / "ncu"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat {tmp_path / 'page.csv'}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    run = load_module("gpu_verify_run", VERIFY / "run.py")
    verify = run.Verify(argparse.Namespace(build_dir=str(tmp_path / "build"), copy_to=str(tmp_path / "out"),
                                           profile_timeout=60))
    verify.libs = {"kernels": tmp_path / "libmq_kernels.so"}
    status, summary, body = verify.stage_profile()
    assert status == report_mod.PASS, (summary, body)
    assert summary.startswith("1 launches; onepass_scan_kernel 117.0 µs, achieved occupancy 18 %, top stalls barrier 12.5")
    assert "| onepass_scan_kernel | (384, 1, 1) |" in body and "--clock-control none" in body
    assert (tmp_path / "out" / "ncu_profile.log").read_text().count("onepass_scan_kernel") >= 2
    # an ncu that does not know one of the named counters: once more with the sections alone
    fake.write_text("#!/bin/sh\ncase \"$*\" in *--metrics*) echo '==ERROR== Failed to find metric "
                    "regex:^l1tex__m_xbar2l1tex_read_bytes.sum$' >&2; exit 1;; esac\n"
                    f"cat {tmp_path / 'page.csv'}\n")
    status, summary, body = verify.stage_profile()
    assert status == report_mod.PASS and "--metrics" not in body, (summary, body)
    assert (tmp_path / "out" / "ncu_profile.log").read_text().count("Failed to find metric") == 1
    fake.write_text("#!/bin/sh\necho '==ERROR== Failed to initialize the profiler: LibraryNotLoaded' >&2\nexit 1\n")
    status, summary, _ = verify.stage_profile()
    assert status == report_mod.FAIL and "LibraryNotLoaded" in summary
    assert (tmp_path / "out" / "ncu_profile.log").read_text().count("LibraryNotLoaded") == 1   # not retried
    # a hung profile is killed with the program it profiles (its process group), and the stage fails
    fake.write_text("#!/bin/sh\nsleep 30 &\necho $! > " + str(tmp_path / "child.pid") + "\nwait\n")
    verify.args.profile_timeout = 1
    status, summary, _ = verify.stage_profile()
    assert status == report_mod.FAIL and "timed out" in summary
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.2)
    assert not pathlib.Path(f"/proc/{child}").exists() or "Z" in pathlib.Path(f"/proc/{child}/stat").read_text().split()[2]


def test_profile_without_ncu_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(profile_mod, "find_ncu", lambda: None)
    verdict, rows, detail = profile_mod.profile(tmp_path / "lib.so", tmp_path / "log", 10)
    assert verdict == "no ncu" and rows == [] and "ncu" in detail


# ---- with TensorRT headers ----------------------------------------------------------------------------

def _header_roots() -> list[pathlib.Path]:
    raw = [os.environ.get("MQ_TRT_INCLUDE_ROOT", "")] + os.environ.get("MQ_TRT_INCLUDE_ROOTS", "").split(os.pathsep)
    roots = [pathlib.Path(r) for r in raw if r]
    return [r for r in roots if (r / "include" / "NvInfer.h").exists()]


def _cuda_include() -> pathlib.Path | None:
    nvcc = shutil.which("nvcc")
    bases = ([pathlib.Path(nvcc).resolve().parents[1]] if nvcc else []) + [pathlib.Path("/usr/local/cuda")]
    return next((b / "include" for b in bases if (b / "include" / "cuda_runtime_api.h").exists()), None)


@pytest.fixture(scope="module")
def harness_build(tmp_path_factory):
    roots = _header_roots()
    if not roots:
        pytest.skip("no TensorRT headers (set MQ_TRT_INCLUDE_ROOT to a folder with include/NvInfer.h)")
    if shutil.which("cmake") is None or shutil.which("nvcc") is None:
        pytest.skip("cmake and nvcc are needed to build the harness")
    build = tmp_path_factory.mktemp("harness_build")
    cmd = ["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_CUDA_ARCHITECTURES=80", "-DMQ_WERROR=ON",
           "-DMQ_TRT_HEADERS_ONLY=ON", f"-DTensorRT_ROOT={roots[0]}", "-DMQ_BUILD_TESTS=OFF",
           "-DMQ_BUILD_DYNAMIC_PLUGIN=OFF"]
    for step in (cmd, ["cmake", "--build", str(build), "-j", "2", "--target", "mq_plugin_harness", "mq_gpu_sanitize"]):
        result = subprocess.run(step, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return {"lib": build / "plugins" / "libmq_plugin_harness.so", "roots": roots}


def test_harness_links_no_tensorrt_library(harness_build):
    lib = harness_build["lib"]
    assert lib.exists() and (lib.parent / "mq_gpu_sanitize").exists()
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True).stdout
    assert "nvinfer" not in needed  # and --no-undefined at link time proves nothing is missing


def test_harness_compiles_against_every_header_version(harness_build):
    cuda = _cuda_include()
    if cuda is None:
        pytest.skip("CUDA headers not found")
    cxx = shutil.which("g++") or shutil.which("c++")
    sources = [REPO / "plugins" / p for p in ("harness/plugin_harness.cpp", "harness/ssd_harness.cpp",
                                             "selective_scan/selective_scan_plugin.cpp", "ssd_scan/ssd_scan_plugin.cpp",
                                             "hadamard/hadamard_plugin.cpp", "common/plugin_log.cpp")]
    for root in harness_build["roots"]:
        for src in sources:
            cmd = [cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                   "-DMQ_PLUGIN_NO_NVINFER", f"-isystem{root / 'include'}", f"-isystem{cuda}",
                   f"-I{REPO / 'plugins'}", f"-I{REPO / 'plugins' / 'selective_scan'}",
                   f"-I{REPO / 'plugins' / 'ssd_scan'}",
                   f"-I{REPO / 'plugins' / 'hadamard'}", f"-I{REPO / 'plugins' / 'harness'}", str(src)]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{root}: {src.name}\n{result.stderr[-3000:]}"


def test_harness_negative_checks_on_cpu(harness_build):
    harness = plugin_checks.Harness(harness_build["lib"])
    failed, log = harness.self_test()
    assert failed == 0, log
    assert log.count("ok: ") >= 15 and "WRONG" not in log


def test_ssd_plugin_negative_checks_and_build_phase_on_cpu(harness_build):
    """SSDScan through the harness without a GPU: bad fields, shapes and types refused; every planned
    case's build phase (parser-typed INT and FLOAT fields, state shape [b, heads, head_dim, N] through
    FLOOR_DIV, every format, the workspace at the profile maximum) passes."""
    import ctypes

    ssd_check = load_module("ssd_check", REPO / "plugins" / "ssd_scan" / "ssd_check.py")
    harness = plugin_checks.Harness(harness_build["lib"])
    failed, log = harness.ssd_self_test()
    assert failed == 0 and log.count("ok: ") >= 10 and "WRONG" not in log, log
    kernels = ctypes.CDLL(str(harness_build["lib"]))
    kernels.mq_ssd_scan_workspace_size.argtypes = [ctypes.c_int32] * 5
    kernels.mq_ssd_scan_workspace_size.restype = ctypes.c_size_t
    for case in plugin_checks.plugin_ssd_cases(ssd_check):
        problem = plugin_checks.ssd_problem(case)
        ws = harness.ssd_build(problem)
        assert ws >= 0, (case, harness.error())
        assert ws >= kernels.mq_ssd_scan_workspace_size(1, problem.max_seqlen, case.heads, case.head_dim, case.dstate)
        assert "state [b, heads, head_dim, N]" in harness.log()
    bad = plugin_checks.ssd_problem(ssd_check.SsdCase(1, 8, 4, 64, 3, 128, "float16"))   # 4 heads in 3 groups
    assert harness.ssd_build(bad) == -1 and harness.error()


def test_harness_build_phase_of_every_planned_case_on_cpu(harness_build):
    """Creation, output types and shapes, every format combination, configurePlugin and the
    workspace request run without a GPU; the workspace covers the run and the profile maximum."""
    import ctypes

    kernels = ctypes.CDLL(str(harness_build["lib"]))  # the harness carries the kernels' C API too
    kernels.mq_selective_scan_workspace_size.argtypes = [ctypes.c_int32] * 4
    kernels.mq_selective_scan_workspace_size.restype = ctypes.c_size_t
    harness = plugin_checks.Harness(harness_build["lib"])
    for case in plugin_checks.plugin_scan_cases():
        problem = plugin_checks._scan_problem(case)
        ws = harness.scan_build(problem)
        assert ws >= 0, (case, harness.error())
        need = kernels.mq_selective_scan_workspace_size(case.batch, problem.max_seqlen, case.dim, case.dstate)
        assert ws >= need
        assert "supportsFormatCombination over every type and format" in harness.log()
    bad = plugin_checks.ScanProblem(0, 1, 0, 1, 8, 64, 65, 1, 8)  # N = 65
    assert harness.scan_build(bad) == -1 and harness.error()


@pytest.mark.parametrize("body, expected", [
    ("import pytest\npytest.skip('no TensorRT', allow_module_level=True)\n", "SKIP"),
    ("import pytest\n\n@pytest.mark.skip\ndef test_a():\n    pass\n", "SKIP"),
    ("def test_a():\n    pass\n", "PASS"),
    ("def test_a():\n    assert False\n", "FAIL"),
], ids=["module-skip", "all-skipped", "passed", "failed"])
def test_a_pytest_stage_that_ran_nothing_is_a_skip(tmp_path, body, expected):
    """A GPU stage's pytest run is judged from what real pytest returns: a module skipped whole (exit
    5) or a run where every test skipped is SKIP, not PASS (nothing was verified) nor FAIL."""
    run = load_module("gpu_verify_run", VERIFY / "run.py")
    (tmp_path / "test_case.py").write_text(body)
    code, out = run.sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                        str(tmp_path / "test_case.py")], 120)
    assert run.pytest_status(code, out.strip().splitlines()[-1]) == getattr(report_mod, expected)


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("nvcc") is None, reason="needs cmake and nvcc")
@pytest.mark.parametrize("with_headers", [False, True], ids=["no-headers", "other-major"])
def test_tensorrt_stage_says_which_headers_it_needs(tmp_path, with_headers):
    """The tensorrt stage builds a loadable plugin library against the TensorRT that Python imports. A
    pip wheel ships no headers: with none found, or only headers of another major version, it says
    which headers to give instead of building against the wrong ones (CMake really configures here)."""
    roots = _header_roots()
    if with_headers and not roots:
        pytest.skip("no TensorRT headers (MQ_TRT_INCLUDE_ROOT)")
    run = load_module("gpu_verify_run", VERIFY / "run.py")
    root = roots[0] if with_headers else tmp_path / "no-headers"
    verify = run.Verify(argparse.Namespace(build_dir=str(tmp_path / "build"), copy_to=None, trt_root=str(root),
                                           arch="90"))
    major = int(verify.trt_version(root).split(".")[0]) + 1 if with_headers else 10
    library, body = verify.build_plugin_library(f"{major}.0.0")      # a version no header folder here has
    assert library is None and body.startswith(f"no TensorRT {major}.x headers"), body
