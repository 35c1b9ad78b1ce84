"""scripts/gpu_verify.sh's driver: build for the local GPU, then every check that needs a GPU but
not TensorRT, then the kernel timings, writing docs/gpu_report.md after every stage.

Stages (each one a section of the report; a failure never stops the later stages):
  build       CMake: libmq_kernels, the exp-rate benchmark, libmq_plugin_harness and
              mq_gpu_sanitize (the last two need TensorRT headers, never libnvinfer)
  kernels     every kernel against the float64 torch reference (plugins/selective_scan/gpu_check.py)
  c-api       the C API refuses an in-place chunked scan (final_state aliasing initial_state)
  ssd         the SSD (Mamba-2) kernels against the float64 reference, the Mamba-2 demo model's
              perplexity with the CUDA SSD scan, their timing at the mamba2-130m/780m/2.7b mixer sizes
  plugins     the three plugins through the harness: creation from parser-typed fields, build queries,
              serialization, clone, attachToContext, enqueue on a non-default stream; outputs vs
              the reference; garbage inputs; the Hadamard plugin at every base order
  model       the demo model's held-out perplexity with the CUDA scan vs the torch scan
  timing      copy bandwidth and exp rate (the floors), scan and Hadamard kernel times
  profile     Nsight Compute on the scan kernels at the acceptance shape and a mamba2-130m mixer:
              occupancy, issue-slot use, pipe use and the top stall reasons (profile_kernels.py)
  sanitizer   compute-sanitizer memcheck / racecheck / initcheck / synccheck on mq_gpu_sanitize
  pytest-gpu  the GPU tests of the suite (tests/test_gpu_*.py), which skip on machines without one
  calibration quantize --device cuda agrees with a CPU calibration; calibration time and memory per
              size (benchmarks/bench_scale.py; --scale-sizes 130m,2.8b for the issue's 2.8b figure)
  tensorrt    engine build and validation, only where TensorRT is importable

Exit status: 0 when every stage that ran passed, 1 otherwise, 2 without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import os
import re
import pathlib
import platform
import shutil
import subprocess
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from mq_deploy.markdown import markdown_table  # noqa: E402
from report import ERROR, FAIL, PASS, SKIP, Report, StageResult, copy_file  # noqa: E402


def load_module(name: str, path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_check = load_module("gpu_check", REPO / "plugins" / "selective_scan" / "gpu_check.py")
ssd_check = load_module("ssd_check", REPO / "plugins" / "ssd_scan" / "ssd_check.py")
from mq_deploy.ops import cuda_kernels as mq_kernels_ctypes  # noqa: E402
import plugin_checks  # noqa: E402
import profile_kernels  # noqa: E402


def sh(cmd: list[str], timeout: float, log: pathlib.Path | None = None, env=None) -> tuple[int, str]:
    """Runs cmd; returns (exit status, combined output). 124 on timeout."""
    try:
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                env=env)
        code, out = result.returncode, result.stdout
    except subprocess.TimeoutExpired as exc:
        code, out = 124, (exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")) + \
            f"\n[timed out after {timeout:.0f} s]"
    except FileNotFoundError as exc:
        code, out = 127, str(exc)
    if log is not None:
        log.write_text(out)
    return code, out


def first_line(cmd: list[str]) -> str:
    code, out = sh(cmd, 30)
    return out.strip().splitlines()[0] if code == 0 and out.strip() else "unavailable"


def pytest_status(code: int, last_line: str) -> str:
    """A pytest run's stage status: exit 5 (nothing collected or all skipped at module level) and a run
    that passed nothing are skips, not passes or failures."""
    if code == 5 or (code == 0 and " passed" not in f" {last_line}"):
        return SKIP
    return PASS if code == 0 else FAIL


class Verify:
    def __init__(self, args):
        self.args = args
        self.build = pathlib.Path(args.build_dir).resolve()
        self.build.mkdir(parents=True, exist_ok=True)
        self.out = pathlib.Path(args.copy_to).resolve() if args.copy_to else None
        self.libs = {}

    # ---- stages ----------------------------------------------------------------------------------

    def stage_build(self):
        trt = pathlib.Path(self.args.trt_root).resolve() if self.args.trt_root else None
        have_headers = trt is not None and (trt / "include" / "NvInfer.h").exists()
        cmd = ["cmake", "-S", str(REPO), "-B", str(self.build), "-DCMAKE_BUILD_TYPE=Release",
               f"-DCMAKE_CUDA_ARCHITECTURES={self.args.arch}", "-DMQ_BUILD_BENCH=ON", "-DMQ_BUILD_TESTS=OFF",
               "-DMQ_WERROR=ON"]
        cmd += [f"-DTensorRT_ROOT={trt}", "-DMQ_TRT_HEADERS_ONLY=ON"] if have_headers else ["-DMQ_BUILD_PLUGINS=OFF"]
        code, out = sh(cmd, 300, self.build / "configure.log")
        targets = ["mq_kernels", "mq_kernels_bench"] + (["mq_plugin_harness", "mq_gpu_sanitize"] if have_headers else [])
        if code == 0:
            code, out2 = sh(["cmake", "--build", str(self.build), "-j", str(os.cpu_count() or 4), "--target", *targets],
                            600, self.build / "build.log")
            out += out2
        copy_file(self.build / "build.log", self.out)
        plugins = self.build / "plugins"
        self.libs = {"kernels": plugins / "libmq_kernels.so", "bench": plugins / "libmq_kernels_bench.so",
                     "harness": plugins / "libmq_plugin_harness.so", "sanitize": plugins / "mq_gpu_sanitize"}
        built = [k for k, p in self.libs.items() if p.exists()]
        headers = f"TensorRT headers {trt} ({self.trt_version(trt)})" if have_headers else \
            "no TensorRT headers (pass --trt-root): harness and sanitizer driver not built"
        body = f"`{' '.join(cmd)}`\n\n{headers}. Built: {', '.join(built) or 'nothing'}.\n"
        if code != 0:
            body += "\n```\n" + out[-4000:] + "\n```\n"
            return FAIL, f"build failed (exit {code})", body
        return PASS, f"built {', '.join(built)} for sm_{self.args.arch}", body

    @staticmethod
    def trt_version(trt: pathlib.Path | None) -> str:
        if trt is None:
            return "?"
        text = (trt / "include" / "NvInferVersion.h").read_text(errors="replace")
        import re
        parts = []
        for part in ("MAJOR", "MINOR", "PATCH"):
            m = re.search(rf"#define\s+(?:TRT_{part}_ENTERPRISE|NV_TENSORRT_{part})\s+(\d+)", text)
            parts.append(m.group(1) if m else "?")
        return ".".join(parts)

    def kernels(self):
        return mq_kernels_ctypes.MqKernels(self.libs["kernels"])

    def algorithms(self) -> tuple[str, ...]:
        chosen = tuple(a for a in self.args.algorithms.split(",") if a)
        unknown = [a for a in chosen if a not in gpu_check.ALGORITHMS]
        if unknown or not chosen:
            raise ValueError(f"--algorithms {self.args.algorithms!r}: choose from {', '.join(gpu_check.ALGORITHMS)}")
        return chosen

    def stage_kernels(self):
        lib = self.kernels()
        ref_fn = gpu_check.load_reference()
        rows = gpu_check.correctness(lib, ref_fn, self.args.quick, self.algorithms())
        hadamard, source = gpu_check.check_hadamard(lib)
        failed = [r for r in rows + hadamard if not r["ok"]]
        body = "Normwise relative error max|out − ref| / max|ref| against the float64 reference " \
               "(mq_deploy.ops.selective_scan.selective_scan_ref); outputs and workspace poisoned with NaN.\n\n"
        body += markdown_table(rows, [("case", "case", ""), ("kernel", "algorithm", ""), ("err y", "err_y", ".2e"),
                                      ("tol y", "tol_y", ".1e"), ("err state", "err_state", ".2e"), ("ok", "ok", "")])
        body += f"\n\nfinal_state tolerance {gpu_check.STATE_TOLERANCE:.0e}. Fast Walsh–Hadamard vs dense " \
                f"x·diag(s)·H_n (H_n from {source}); `codes off` counts HadamardQuantize's INT8 codes that " \
                "differ (by one, at float32 rounding of a tie: anything else fails the row) from " \
                "round-half-even of the float64 transform over a scale that clips the top 1 %:\n\n"
        body += markdown_table(hadamard, [("n", "n", ""), ("base m", "m", ""), ("dtype", "dtype", ""),
                                          ("err", "err", ".2e"), ("codes off", "q_flips", ""), ("ok", "ok", "")])
        status = PASS if not failed else FAIL
        return status, f"{len(rows) + len(hadamard) - len(failed)}/{len(rows) + len(hadamard)} checks within tolerance", body

    def stage_c_api(self):
        import torch

        lib = self.kernels()
        case = gpu_check.ScanCase(1, 4096, 512, "float16", initial_state=True)  # several chunks
        inputs = gpu_check.make_inputs(case, seed=7)
        ws = torch.empty(max(lib.workspace_size(1, 4096, 512, 16), 16), dtype=torch.uint8, device="cuda")
        y = torch.empty_like(inputs["x"])
        numel = inputs["initial_state"].numel()
        buf = torch.empty(numel + 1, device="cuda")
        verdicts = {}
        for label, (h0, h1) in {"equal": (buf[:numel], buf[:numel]), "overlapping": (buf[:numel], buf[1:])}.items():
            h0.copy_(inputs["initial_state"].view(-1))
            try:
                lib.selective_scan(**{**inputs, "initial_state": h0.view(case.batch, case.dim, case.dstate)}, y=y,
                                   final_state=h1.view(case.batch, case.dim, case.dstate), workspace=ws)
                verdicts[label] = "ACCEPTED"
            except mq_kernels_ctypes.MqKernelsError as exc:
                verdicts[label] = "refused" if "invalid argument" in str(exc) else f"error: {exc}"
        one_case = gpu_check.ScanCase(4, 1, 300, "float16", initial_state=True)
        one = gpu_check.make_inputs(one_case, seed=8)
        state = one["initial_state"].clone()
        lib.selective_scan(**{**one, "initial_state": state}, y=torch.empty_like(one["x"]), final_state=state,
                           algorithm="decode")
        torch.cuda.synchronize()
        _, s_ref = gpu_check.reference(gpu_check.load_reference(), one, one_case)
        decode_ok = gpu_check.normwise_error(state, s_ref) <= gpu_check.STATE_TOLERANCE
        ok = verdicts == {"equal": "refused", "overlapping": "refused"} and decode_ok
        body = (f"- mq_selective_scan (L=4096, several chunks) with final_state == initial_state: {verdicts['equal']}\n"
                f"- with overlapping, unequal state buffers: {verdicts['overlapping']}\n"
                f"- mq_selective_state_update in place (the decode contract): "
                f"{'matches the reference' if decode_ok else 'WRONG'}\n")
        return (PASS if ok else FAIL), ("aliased states refused by the chunked scan, allowed for decode" if ok
                                        else "state aliasing check failed"), body

    def stage_ssd(self):
        import model_check

        lib = self.kernels()
        rows = ssd_check.correctness(lib, gpu_check, self.args.quick)
        model = model_check.run(lib, family="mamba2")
        bandwidth = gpu_check.copy_bandwidth()
        perf = ssd_check.timing(lib, gpu_check, self.args.reps, bandwidth, self.args.quick,
                                progress=lambda line: print(f"ssd timing: {line}", flush=True))
        bad = [r for r in rows + model if not r["ok"]]
        body = "SSD scan kernels (plugins/ssd_scan) against the float64 reference (mq_deploy.ops.ssd_scan), " \
               "outputs and workspace NaN-poisoned; `sequential-inplace` updates the initial state in place:\n\n"
        body += markdown_table(rows, ssd_check.CORRECTNESS_COLUMNS)
        body += "\n\nThe Mamba-2 demo model with the CUDA SSD scan vs the torch chunked scan:\n\n"
        body += markdown_table(model, [("dtype", "dtype", ""), ("ppl torch scan", "ppl_torch", ".5f"),
                                       ("ppl CUDA kernel", "ppl_cuda", ".5f"), ("rel. diff", "rel_ppl", ".1e"),
                                       ("tol", "tol", ".0e"), ("argmax agreement", "argmax", ".4f"), ("ok", "ok", "")])
        body += f"\n\nTiming (copy rate {bandwidth / 1e12:.2f} TB/s; the memory floor moves x, dt, B, C, y and the " \
                "final state once; TFLOP/s counts the recurrence's 2 FMAs per state element and token):\n\n"
        body += markdown_table(perf, ssd_check.TIMING_COLUMNS)
        key = [r for r in perf if r["dtype"] == "float16" and (r["B"], r["L"], r["H"]) == (1, 2048, 24)]
        summary = "; ".join(f"{r['impl']} {r['time_us']:.1f} µs" for r in key)
        total = len(rows) + len(model)
        return (PASS if not bad else FAIL), f"{total - len(bad)}/{total} checks right; mamba2-130m mixer B=1 " \
            f"L=2048 fp16: {summary}", body

    def stage_plugins(self):
        import torch

        if not self.libs.get("harness", pathlib.Path("/nonexistent")).exists():
            return SKIP, "harness not built (no TensorRT headers)", "Pass --trt-root with a TensorRT include/ folder."
        harness = plugin_checks.Harness(self.libs["harness"])
        failed_negative, log = harness.self_test()
        ref_fn = gpu_check.load_reference()
        rows = []
        for i, case in enumerate(plugin_checks.plugin_scan_cases(self.args.quick)):
            rows.append(plugin_checks.check_scan_case(harness, gpu_check, ref_fn, case, seed=5000 + i))
            walk = harness.log()
        for i, case in enumerate(plugin_checks.plugin_scan_cases(True)[:3]):
            rows.append(plugin_checks.check_scan_case(harness, gpu_check, ref_fn, case, seed=6000 + i, garbage=True))
        ssd_failed, ssd_log = harness.ssd_self_test()
        failed_negative += ssd_failed
        log += ssd_log
        for i, case in enumerate(plugin_checks.plugin_ssd_cases(ssd_check, self.args.quick)):
            rows.append(plugin_checks.check_ssd_case(harness, ssd_check, gpu_check, case, seed=6500 + i))
        from mq_deploy.quant.transforms.hadamard import hadamard_matrix
        hrows = []
        for n in plugin_checks.hadamard_sizes():
            h = hadamard_matrix(n, torch.float64).cuda()
            for dtype in gpu_check.DTYPES:
                hrows.append(plugin_checks.check_hadamard_size(harness, gpu_check, h, dtype, seed=n))
            del h
        bad = [r for r in rows + hrows if not r["ok"]]
        body = "Each row: create from parser-typed fields (kINT32, length 1) → getOutputDataTypes → " \
               "getOutputShapes (constant-folding IExprBuilder, dynamic and constant extents) → " \
               "supportsFormatCombination over every type × format → configurePlugin → getWorkspaceSize at " \
               "the profile max → getFieldsToSerialize → createPlugin(kRUNTIME) → clone → attachToContext → " \
               "onShapeChange → enqueue on a non-default stream. Outputs NaN-poisoned and fenced by " \
               f"{plugin_checks.GUARD_BYTES}-byte guards.\n\nSteps of the last scan walk:\n\n```\n{walk}```\n\n"
        body += markdown_table(rows, [("case", "case", ""), ("workspace B", "workspace", ""), ("err y", "err_y", ".2e"),
                                      ("tol y", "tol_y", ".1e"), ("err state", "err_state", ".2e"),
                                      ("guards", "guards", ""), ("ok", "ok", ""), ("note", "note", "")])
        body += "\n\nHadamardTransform plugin vs dense x·diag(s)·H_n (float64, H_n from " \
                "mq_deploy.quant.transforms.hadamard), x [3, 5, n]; `codes off`: the HadamardQuantize plugin's " \
                "INT8 codes that differ from round-half-even of the float64 transform (by one at a tie, else " \
                "the row fails):\n\n"
        body += markdown_table(hrows, [("n", "n", ""), ("dtype", "dtype", ""), ("err", "err", ".2e"),
                                       ("codes off", "q_flips", ""),
                                       ("guards", "guards", ""), ("ok", "ok", ""), ("note", "note", "")])
        body += f"\n\nNegative checks ({failed_negative} not refused):\n\n```\n{log}```\n"
        ok = not bad and failed_negative == 0
        total = len(rows) + len(hrows)
        return (PASS if ok else FAIL), f"{total - len(bad)}/{total} plugin runs right; " \
            f"{failed_negative} negative checks not refused", body

    def stage_model(self):
        import model_check

        rows = model_check.run(self.kernels())
        body = f"Demo model ({model_check.DEMO_MODEL.relative_to(REPO)}), {rows[0]['tokens']} scored tokens of " \
               f"{model_check.HELDOUT.relative_to(REPO)} in windows of 512, on the GPU.\n\n"
        body += markdown_table(rows, [("dtype", "dtype", ""), ("ppl torch scan", "ppl_torch", ".5f"),
                                      ("ppl CUDA kernel", "ppl_cuda", ".5f"), ("rel. diff", "rel_ppl", ".1e"),
                                      ("tol", "tol", ".0e"), ("logits rel. diff", "rel_logits", ".1e"),
                                      ("argmax agreement", "argmax", ".4f"), ("s torch", "sec_torch", ".2f"),
                                      ("s CUDA", "sec_cuda", ".2f"), ("ok", "ok", "")])
        ok = all(r["ok"] for r in rows)
        return (PASS if ok else FAIL), "; ".join(f"{r['dtype']} ppl {r['ppl_torch']:.4f} vs {r['ppl_cuda']:.4f}"
                                                for r in rows), body

    def stage_timing(self):
        lib = self.kernels()
        bandwidth = gpu_check.copy_bandwidth()
        exps = gpu_check.exp_rate(mq_kernels_ctypes.ExpRateBench(self.libs["bench"]))
        algorithms = self.algorithms()
        perf = gpu_check.timing(lib, self.args.reps, bandwidth, exps, self.args.quick, algorithms,
                                progress=lambda line: print(f"timing: {line}", flush=True))
        had = gpu_check.hadamard_timing(lib, self.args.reps, bandwidth)
        body = f"Measured floors: device-to-device copy {bandwidth / 1e12:.2f} TB/s (read + write), " \
               f"exp2 (MUFU) {exps / 1e12:.2f} T/s. Floor = max(bytes moved / copy rate, B·L·D·N / exp rate); " \
               f"`vs floor` = median time / floor; `vs sequential` = sequential time / this time. Median of up " \
               f"to {self.args.reps} CUDA-event-timed runs (at least 3; about {gpu_check.ROW_BUDGET_S:.2f} s of GPU " \
               "time per row) queued behind a GPU sleep; gate on; inputs as in the correctness checks.\n\n"
        body += markdown_table(perf, gpu_check.TIMING_COLUMNS)
        body += "\n\nHadamard transform (floors: FP16 read + FP16 write, and FP16 read + INT8 write):\n\n" + \
            markdown_table(had, gpu_check.HADAMARD_TIMING_COLUMNS)
        key = [r for r in perf if r["dtype"] == "float16" and (r["B"], r["L"], r["D"], r["N"]) == (1, 2048, 1536, 16)]
        summary = "; ".join(f"{r['impl']} {r['time_us']:.1f} µs = {r['vs_floor']:.2f}× floor" for r in key) or \
            f"{len(perf)} rows"
        return PASS, f"float16 B=1 L=2048 D=1536 N=16: {summary}", body

    def stage_profile(self):
        log = self.build / "ncu_profile.log"
        verdict, rows, detail = profile_kernels.profile(self.libs["kernels"], log, self.args.profile_timeout)
        if log.exists():
            copy_file(log, self.out)
        if verdict == "no ncu":
            return SKIP, detail, ""
        body = ("Nsight Compute, one launch of each scan at float16 B=1 L=2048 D=1536 N=16 (gate on: onepass, then "
                "chunked's kernels) and of the SSD scans at a mamba2-130m mixer (B=1 L=2048, 24 heads of 64, N=128: "
                "the scalar chunked kernels, then the tensor-core ones, whose carry is the second ssd_carry_kernel "
                "row), "
                "clocks as found (`--clock-control none`). Stall reasons are cycles per issued instruction that a "
                "warp spent waiting for that reason (selected / not selected left out); occupancy and pipe use in % "
                "of peak; bytes read from L2 into L1 and from DRAM in MB (NOTES_onepass.md section 8 predicts "
                "the one-pass kernel's L2→L1 MB). "
                f"Command: `{detail if verdict == 'ok' else ''}`\n\n")
        body += markdown_table(rows, profile_kernels.table_columns()) if rows else ""
        if verdict != "ok":
            body += f"\n\n```\n{detail}\n```\n"
            return FAIL, detail.splitlines()[0][:200], body
        key = next((r for r in rows if "onepass_scan_kernel" in r["kernel"]), rows[0])
        return PASS, (f"{len(rows)} launches; {key['kernel']} {key['duration µs']:.1f} µs, achieved occupancy "
                      f"{key['achieved occupancy %']:.0f} %, top stalls {key['top stalls (cycles per instruction)']}"), body

    def stage_sanitizer(self):
        exe = self.libs.get("sanitize")
        tool = shutil.which("compute-sanitizer") or next(
            (str(p) for p in pathlib.Path("/usr/local/cuda/bin").glob("compute-sanitizer") if p.exists()), None)
        if exe is None or not exe.exists():
            return SKIP, "mq_gpu_sanitize not built (no TensorRT headers)", ""
        if tool is None:
            return SKIP, "compute-sanitizer not found", ""
        rows, ok = [], True
        for check in ("memcheck", "racecheck", "initcheck", "synccheck"):
            log = self.build / f"sanitizer_{check}.log"
            start = time.time()
            code, out = sh([tool, "--tool", check, "--error-exitcode", "99", str(exe)], self.args.sanitizer_timeout, log)
            summary = next((line.split("ERROR SUMMARY:")[-1].strip() for line in out.splitlines()
                            if "ERROR SUMMARY" in line), "")
            hazards = next((line.split("RACECHECK SUMMARY:")[-1].strip() for line in out.splitlines()
                            if "RACECHECK SUMMARY" in line), "")
            verdict = "clean" if code == 0 else ("timed out" if code == 124 else f"exit {code}")
            ok &= code == 0
            rows.append({"tool": check, "verdict": verdict, "summary": hazards or summary or out.strip()[-120:],
                         "seconds": time.time() - start})
            copy_file(log, self.out)
        body = f"`{tool} --tool T --error-exitcode 99 {exe.relative_to(self.build.parent.parent) if self.build.parent.parent in exe.parents else exe}` " \
               "(every kernel entry point, the three plugins through the harness, plugins on garbage inputs):\n\n"
        body += markdown_table(rows, [("tool", "tool", ""), ("verdict", "verdict", ""), ("summary", "summary", ""),
                                      ("s", "seconds", ".0f")])
        return (PASS if ok else FAIL), ", ".join(f"{r['tool']} {r['verdict']}" for r in rows), body

    def stage_pytest_gpu(self):
        tests = sorted(str(p) for p in (REPO / "tests").glob("test_gpu_*.py"))
        if not tests:
            return SKIP, "no tests/test_gpu_*.py", ""
        env = dict(os.environ, MQ_KERNELS_LIB=str(self.libs["kernels"]), MQ_PLUGIN_HARNESS_LIB=str(self.libs["harness"]),
                   MQ_TRT_INCLUDE_ROOT=str(self.args.trt_root or ""),
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        code, out = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *tests], 300,
                       self.build / "pytest_gpu.log", env=env)
        tail = "\n".join(out.strip().splitlines()[-15:])
        last = out.strip().splitlines()[-1] if out.strip() else "no output"
        return pytest_status(code, last), last, f"```\n{tail}\n```"

    def stage_calibration(self):
        """quantize --device cuda: the artifact agrees with a CPU calibration; time and memory at scale."""
        env = dict(os.environ, MQ_KERNELS_LIB=str(self.libs["kernels"]),
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        code, out = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "-k", "cuda",
                        str(REPO / "tests" / "test_quant_calibration_device.py")], 300,
                       self.build / "pytest_calibration.log", env=env)
        tests = out.strip().splitlines()[-1] if out.strip() else "no output"
        scale_json = self.build / "scale_cuda.json"
        code2, out2 = sh([sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--sizes", self.args.scale_sizes,
                          "--device", "cuda", "--no-export", "--json", str(scale_json)], 900,
                         self.build / "bench_scale.log", env=env)
        table = "\n".join(line for line in out2.splitlines() if line.startswith("|"))
        body = (f"`pytest -k cuda tests/test_quant_calibration_device.py` (cuda vs cpu artifacts: activation scales "
                f"and transformed weights within 1e-4, fake-quant logits within 1e-3): {tests}\n\n"
                f"`benchmarks/bench_scale.py --sizes {self.args.scale_sizes} --device cuda --no-export` "
                f"(mambaquant W8A8, 32 x 512 calibration tokens):\n\n{table or out2[-2000:]}\n")
        ok = code == 0 and code2 == 0
        return (PASS if ok else FAIL), f"cuda vs cpu: {tests}; scale benchmark exit {code2}", body

    def stage_tensorrt(self):
        code, out = sh([sys.executable, "-c", "import tensorrt; print(tensorrt.__version__)"], 60)
        if code != 0:
            return SKIP, "TensorRT is not importable here (no wheel or package in this workplace)", \
                "Engine build and validation (tests/test_trt_gpu_engine.py) need TensorRT; not run."
        version = out.strip().splitlines()[-1]
        # the other stages build against headers only; engines need a loadable library, linked to the
        # libnvinfer this Python imports and compiled against headers of the same major version
        library, body = self.build_plugin_library(version)
        if library is None:
            return FAIL, f"TensorRT {version}: libmq_plugins.so did not build ({body.splitlines()[0]})", body
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   MQ_PLUGIN_PATH=str(library))
        code, out2 = sh([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                         str(REPO / "tests" / "test_trt_gpu_engine.py")], 600, self.build / "pytest_trt.log", env=env)
        last = out2.strip().splitlines()[-1] if out2.strip() else "no output"
        body += "\n```\n" + out2[-3000:] + "\n```"
        return pytest_status(code, last), f"TensorRT {version}, {library.name}: {last}", body

    def build_plugin_library(self, version: str) -> tuple[pathlib.Path | None, str]:
        """libmq_plugins.so linked to the installed TensorRT, in a build directory of its own."""
        headers = pathlib.Path(self.args.trt_root).resolve() if self.args.trt_root else None
        if headers is not None and not (headers / "include" / "NvInfer.h").is_file():
            headers = None
        if headers is not None and self.trt_version(headers).split(".")[0] != version.split(".")[0]:
            headers = None      # CMake then looks for the installed TensorRT's own headers (a tarball, a package)
        build = self.build.with_name(self.build.name + "_trt")
        # Python3_EXECUTABLE: CMake finds pip's tensorrt_libs through the interpreter running this script
        cmd = ["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
               f"-DCMAKE_CUDA_ARCHITECTURES={self.args.arch}", "-DMQ_BUILD_TESTS=OFF", "-DMQ_BUILD_HARNESS=OFF",
               "-DMQ_BUILD_DYNAMIC_PLUGIN=OFF", "-DMQ_WERROR=ON", f"-DPython3_EXECUTABLE={sys.executable}"]
        cmd += [f"-DTensorRT_ROOT={headers}"] if headers else []
        build.mkdir(parents=True, exist_ok=True)
        code, out = sh(cmd, 300, build / "configure.log")
        found = re.search(r"mq_plugins: TensorRT (\d+)\.\S* headers at (\S+)", out)
        if code == 0 and found is None and "libnvinfer not found" in out:
            return None, (f"TensorRT headers found but not libnvinfer: is TensorRT {version} installed for "
                          f"{sys.executable}?\n\n```\n{out[-2000:]}\n```\n")
        if code == 0 and found is None:
            return None, (f"no TensorRT {version.split('.')[0]}.x headers: pip wheels ship none; pass --trt-root with "
                          f"the include/ folder of TensorRT {version} (plugins/README.md)\n\n```\n{out[-2000:]}\n```\n")
        if found is not None and found.group(1) != version.split(".")[0]:
            return None, (f"CMake found TensorRT {found.group(1)}.x headers at {found.group(2)}, but Python imports "
                          f"TensorRT {version}; pass --trt-root with the headers of {version}\n")
        if code == 0:
            code, out2 = sh(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 4), "--target", "mq_plugins"],
                            600, build / "build.log")
            out += out2
        library = build / "plugins" / "libmq_plugins.so"
        body = f"`{' '.join(cmd)}` then `--target mq_plugins`\n"
        if code != 0 or not library.is_file():
            return None, body + "\n```\n" + out[-4000:] + "\n```\n"
        return library, body + f"\nBuilt {library}.\n"

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Verify mq-deploy's kernels and plugins on this GPU.")
    parser.add_argument("--build-dir", default=str(REPO / "build" / "gpu_verify"))
    parser.add_argument("--trt-root", default=os.environ.get("MQ_TRT_INCLUDE_ROOT", str(REPO / ".trt_headers" / "11.1")),
                        help="a TensorRT folder with include/NvInfer.h (headers only are enough)")
    parser.add_argument("--arch", default=os.environ.get("MQ_CUDA_ARCH", "native"))
    parser.add_argument("--report", default=str(REPO / "docs" / "gpu_report.md"))
    parser.add_argument("--copy-to", default=os.environ.get("OUT"), help="also copy the report and logs here")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--algorithms", default=",".join(gpu_check.ALGORITHMS),
                        help="scan implementations the kernels and timing stages check and time")
    parser.add_argument("--sanitizer-timeout", type=float, default=120)
    parser.add_argument("--profile-timeout", type=float, default=240)
    parser.add_argument("--commit", default=os.environ.get("MQ_GIT_COMMIT", ""))
    parser.add_argument("--scale-sizes", default="130m", help="sizes the calibration stage times (e.g. 130m,2.8b)")
    parser.add_argument("--stages",
                        default="build,kernels,c-api,ssd,plugins,model,timing,profile,sanitizer,pytest-gpu,calibration,"
                                "tensorrt")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_verify: no CUDA device visible to torch", file=sys.stderr)
        return 2
    props = torch.cuda.get_device_properties(0)
    header = [
        f"- GPU: {props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB, "
        f"compute capability {props.major}.{props.minor}",
        f"- driver: {first_line(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'])}; "
        f"nvcc: {first_line(['bash', '-c', 'nvcc --version | tail -1'])}",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}); python {platform.python_version()}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; commit: "
        f"{args.commit or 'unknown'}",
        "- written by `scripts/gpu_verify.sh` (scripts/gpu_verify/run.py); rerun it to regenerate this file.",
    ]
    report_path = pathlib.Path(args.report)
    copies = [pathlib.Path(args.copy_to) / report_path.name] if args.copy_to else []
    report = Report(report_path, "GPU verification report", header, copies)
    verify = Verify(args)
    stages = {"build": verify.stage_build, "kernels": verify.stage_kernels, "c-api": verify.stage_c_api,
              "ssd": verify.stage_ssd,
              "plugins": verify.stage_plugins, "model": verify.stage_model, "timing": verify.stage_timing,
              "profile": verify.stage_profile,
              "sanitizer": verify.stage_sanitizer, "pytest-gpu": verify.stage_pytest_gpu,
              "calibration": verify.stage_calibration, "tensorrt": verify.stage_tensorrt}
    for name in args.stages.split(","):
        start = time.time()
        try:
            if name != "build" and not verify.libs.get("kernels", pathlib.Path("/nonexistent")).exists():
                status, summary, body = SKIP, "libmq_kernels was not built", ""
            else:
                status, summary, body = stages[name]()
        except Exception as exc:  # a broken stage is reported, and the next one runs
            status, summary = ERROR, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            body = "```\n" + traceback.format_exc()[-4000:] + "\n```"
        report.add(StageResult(name, status, summary, time.time() - start), body)
    report.finish()
    print(report.text(finished=True).split("\n## ")[0])
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
