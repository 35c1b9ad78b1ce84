"""GPU check of libmq_kernels: correctness against mq_deploy's torch reference, then timing.

Run it through gpu_check.sh, which builds the libraries for the local GPU. It prints one markdown
report (device, measured copy bandwidth and exp rate, correctness table, timing table, Hadamard
table) and writes it to --out. Exit status 1 if any check fails, 2 if there is no CUDA device.

Correctness metric: err = max|out - ref| / max|ref| over the whole output (normwise relative),
with the reference computed in float64 from the very same (rounded) inputs. Tolerances:
  y:            1e-5 for float32; eps(dtype) = 2^-10 (float16), 2^-7 (bfloat16) otherwise: storing y
                rounds it by at most eps/2 relative, the float32 arithmetic adds ~1e-6, eps leaves 2x room;
  final_state:  1e-5 for every dtype (the state is float32 whatever the activation dtype).
Outputs and workspace are filled with NaN before every run, so unwritten elements fail the check.

Timing: one row per (implementation, B, L, D, N, dtype) over the grid of issue 15 (onepass, chunked,
sequential; B in {1, 8}, L in {128, 2048, 8192}, D in {1536, 5120}, N in {16, 64}, float16 and
bfloat16). Each time is the median of up to --reps runs (fewer for slow rows, at least 3; a row gets
about ROW_BUDGET_S of GPU time), each bracketed by CUDA events and queued behind a GPU sleep so host
launch overhead is not timed. Floor = max(bytes moved / measured device-to-device copy bandwidth,
B*L*D*N exponentials / measured exp rate); `vs floor` = median time / floor.

Importing this module needs no GPU (the CPU test suite plans its cases).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import platform
import statistics
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

from mq_deploy.markdown import markdown_table  # noqa: E402
from mq_deploy.ops import cuda_kernels as mq_kernels_ctypes  # noqa: E402  (the ctypes binding)

Y_TOLERANCE = {"float32": 1e-5, "float16": 2.0**-10, "bfloat16": 2.0**-7}
STATE_TOLERANCE = 1e-5
DTYPES = ("float32", "float16", "bfloat16")
ALGORITHMS = ("onepass", "chunked", "sequential")  # the scan implementations compared (decode apart)
ROW_BUDGET_S = 0.15  # GPU time one timing row may take (its repetitions), beyond the warm-up
FLAG_COMBOS = [(r, g, h) for r in (False, True) for g in (False, True) for h in (False, True)]
REFERENCE_SLICE_ELEMENTS = 2**27  # above this B*L*D*N the reference runs one batch element at a time


@dataclasses.dataclass(frozen=True)
class ScanCase:
    batch: int
    seqlen: int
    dim: int
    dtype: str
    reverse: bool = False
    gate: bool = True
    initial_state: bool = False
    dstate: int = 16
    delta_softplus: bool = True

    def label(self) -> str:
        flags = "".join(c for c, on in (("r", self.reverse), ("z", self.gate), ("h", self.initial_state)) if on)
        return f"{self.dtype} B={self.batch} L={self.seqlen} D={self.dim} N={self.dstate} {flags or '-'}"


def correctness_cases(quick: bool = False) -> list[ScanCase]:
    """Every shape of the issue, each dtype; flag combinations rotate so all eight appear often."""
    cases = []
    for dtype in DTYPES:  # every flag combination on a small odd shape
        for reverse, gate, h0 in FLAG_COMBOS:
            cases.append(ScanCase(1, 7, 1000, dtype, reverse, gate, h0))
    shapes = [(1, 1, 1536), (8, 7, 2560), (1, 2048, 1536), (8, 2048, 1000), (1, 8192, 2560), (8, 2048, 2560)]
    if quick:
        shapes = shapes[:3]
    i = 0
    for batch, seqlen, dim in shapes:
        for dtype in DTYPES:
            reverse, gate, h0 = FLAG_COMBOS[(3 * i + 1) % len(FLAG_COMBOS)]
            cases.append(ScanCase(batch, seqlen, dim, dtype, reverse, gate, h0))
            i += 1
    # Other state layouts (N <= 4, N = 5 padded, 2 and 4 threads per channel) and no softplus.
    cases += [ScanCase(2, 300, 1000, "float32", True, True, True, dstate=n) for n in (4, 5, 32, 64)]
    cases.append(ScanCase(2, 300, 1000, "float16", False, True, True, dstate=16, delta_softplus=False))
    # The one-pass kernel's chunking (512 positions) and staging: several chunks with a ragged tail,
    # every N, the 16-bit dtypes; D not a multiple of 4 and odd N (element loads instead of rows).
    cases += [ScanCase(2, 1300, 1000, dtype, n % 2 == 1, n != 16, True, dstate=n)
              for dtype in ("float16", "bfloat16") for n in (4, 5, 16, 32, 64)]
    cases += [ScanCase(2, 777, 1001, "float16", False, True, True, dstate=16),
              ScanCase(1, 513, 998, "bfloat16", True, True, False, dstate=5),
              ScanCase(3, 1030, 514, "float32", True, False, True, dstate=33)]
    # Its B/C slabs (16 bytes of each token's row: 8 states at 16 bits, 4 at 32): N = 1 and 2 (one
    # group, the odd-N break), a slab cut short by N (6, 10), each across three chunks.
    cases += [ScanCase(2, 1100, 516, dtype, reverse, True, n % 2 == 0, dstate=n)
              for dtype, flips in (("float16", (1, 6)), ("float32", (2, 10))) for n in (1, 2, 6, 10)
              for reverse in (n in flips,)]
    return cases


@dataclasses.dataclass(frozen=True)
class TimingCase:
    batch: int
    seqlen: int
    dim: int
    dstate: int
    dtype: str

    def scan_case(self) -> ScanCase:
        return ScanCase(self.batch, self.seqlen, self.dim, self.dtype, gate=True, dstate=self.dstate)

    def label(self) -> str:
        return f"{self.dtype} B={self.batch} L={self.seqlen} D={self.dim} N={self.dstate}"


def timing_cases(quick: bool = False) -> list[TimingCase]:
    """Issue 15's grid (gate on, as deployed): 48 shapes; quick: the two acceptance shapes."""
    if quick:
        return [TimingCase(1, 2048, d, 16, dtype) for d in (1536, 5120) for dtype in ("float16", "bfloat16")]
    return [TimingCase(b, l, d, n, dtype) for b in (1, 8) for l in (128, 2048, 8192) for d in (1536, 5120)
            for n in (16, 64) for dtype in ("float16", "bfloat16")]


# ---- inputs and reference ------------------------------------------------------------------------

def make_inputs(case: ScanCase, seed: int, device: str = "cuda"):
    """Mamba-like random inputs: dt in about [1e-3, 0.1], A = -(1..N), D near 1."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    dev, act = device, getattr(torch, case.dtype)
    b, l, d, n = case.batch, case.seqlen, case.dim, case.dstate

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, device=dev, dtype=torch.float32) * scale

    dt_init = torch.exp(torch.rand(d, generator=g, device=dev) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    delta_bias = dt_init + torch.log(-torch.expm1(-dt_init)) if case.delta_softplus else dt_init
    a_log = torch.log(torch.arange(1, n + 1, device=dev, dtype=torch.float32)).repeat(d, 1) + randn(d, n, scale=0.1)
    return {
        "x": randn(b, l, d).to(act),
        # Without softplus dt = delta + bias must stay positive (a decaying state), so delta >= 0.
        "delta": (randn(b, l, d, scale=0.5) if case.delta_softplus
                  else 0.01 * torch.rand(b, l, d, generator=g, device=dev)).to(act),
        "A": -torch.exp(a_log).contiguous(),
        "B": randn(b, l, n).to(act),
        "C": randn(b, l, n).to(act),
        "D": 1.0 + randn(d, scale=0.1),
        "delta_bias": delta_bias.contiguous(),
        "z": randn(b, l, d).to(act) if case.gate else None,
        "gate_scale": (0.5 + torch.rand(d, generator=g, device=dev)) if case.gate else None,
        "initial_state": randn(b, d, n, scale=0.5) if case.initial_state else None,
    }


def load_reference():
    """mq_deploy's standalone reference scan (ops/reference_scan.py), the oracle of every form."""
    from mq_deploy.ops.reference_scan import selective_scan_ref
    return selective_scan_ref


def reference(ref_fn, inputs, case: ScanCase):
    """float64 reference, a batch slice at a time when the problem is large (bounded memory)."""
    import torch

    f64 = {k: (v.double() if v is not None else None) for k, v in inputs.items()}
    step = case.batch if case.batch * case.seqlen * case.dim * case.dstate <= REFERENCE_SLICE_ELEMENTS else 1
    ys, states = [], []
    for b0 in range(0, case.batch, step):
        sl = slice(b0, b0 + step)
        per_batch = {k: (v[sl] if k in ("x", "delta", "B", "C", "z", "initial_state") and v is not None else v)
                     for k, v in f64.items()}
        y, state = ref_fn(**per_batch, delta_softplus=case.delta_softplus, reverse=case.reverse,
                          return_final_state=True)
        ys.append(y)
        states.append(state)
    return torch.cat(ys), torch.cat(states)


def normwise_error(out, ref) -> float:
    import torch

    out64 = out.double()
    if not torch.isfinite(out64).all():
        return math.inf
    scale = ref.abs().max().item()
    err = (out64 - ref).abs().max().item()
    return err / scale if scale > 0 else err


# ---- correctness -----------------------------------------------------------------------------------

def run_kernel(lib, case: ScanCase, inputs, algorithm: str):
    """Runs one algorithm with NaN-poisoned outputs and workspace; returns (y, final_state)."""
    import torch

    x = inputs["x"]
    y = torch.full_like(x, math.nan)
    state = torch.full((case.batch, case.dim, case.dstate), math.nan, device="cuda")
    ws_bytes = lib.workspace_size(case.batch, case.seqlen, case.dim, case.dstate) if algorithm == "chunked" else 0
    workspace = torch.full((max(ws_bytes, 16),), 0xFF, dtype=torch.uint8, device="cuda")  # NaN as float32
    kernel = algorithm
    if algorithm in ("decode", "onepass-inplace"):
        state.copy_(inputs["initial_state"])  # in-place update: state in == state out
        args = dict(inputs, initial_state=state)
        kernel = "decode" if algorithm == "decode" else "onepass"
    else:
        args = inputs
    lib.selective_scan(**args, delta_softplus=case.delta_softplus, reverse=case.reverse, y=y, final_state=state,
                       workspace=workspace, algorithm=kernel)
    torch.cuda.synchronize()
    return y, state


def check_case(lib, ref_fn, case: ScanCase, algorithm: str, seed: int) -> dict:
    inputs = make_inputs(case, seed)
    y, state = run_kernel(lib, case, inputs, algorithm)
    y_ref, state_ref = reference(ref_fn, inputs, case)
    err_y, err_s = normwise_error(y, y_ref), normwise_error(state, state_ref)
    ok = err_y <= Y_TOLERANCE[case.dtype] and err_s <= STATE_TOLERANCE
    return {"case": case.label(), "algorithm": algorithm, "err_y": err_y, "err_state": err_s,
            "tol_y": Y_TOLERANCE[case.dtype], "ok": ok}


def correctness(lib, ref_fn, quick: bool, algorithms=ALGORITHMS) -> list[dict]:
    rows = []
    for i, case in enumerate(correctness_cases(quick)):
        if "chunked" in algorithms:
            rows.append(check_case(lib, ref_fn, case, "chunked", seed=1000 + i))
        if "onepass" in algorithms:
            rows.append(check_case(lib, ref_fn, case, "onepass", seed=1000 + i))
            if case.initial_state and case.seqlen > 1:  # final_state aliasing initial_state
                rows.append(check_case(lib, ref_fn, case, "onepass-inplace", seed=1000 + i))
        if "sequential" in algorithms and case.seqlen <= 2048 and case.batch == 1:  # a fair baseline is a right one
            rows.append(check_case(lib, ref_fn, case, "sequential", seed=1000 + i))
    for i, dtype in enumerate(DTYPES):  # decode: one token, state updated in place
        for dim in (1000, 2560):
            case = ScanCase(8, 1, dim, dtype, gate=True, initial_state=True)
            rows.append(check_case(lib, ref_fn, case, "decode", seed=2000 + 10 * i + dim))
    return rows


def dense_hadamard():
    """n -> float64 H_n from mq_deploy's own definition: the kernel and the Python transform must
    agree (plugins/selective_scan/README.md). Returns (function, source name)."""
    import torch

    sys.path.insert(0, str(REPO))
    from mq_deploy.quant.transforms.hadamard import hadamard_matrix
    return (lambda n: hadamard_matrix(n, torch.float64)), "mq_deploy.quant.transforms.hadamard"


def check_hadamard(lib) -> tuple[list[dict], str]:
    import torch

    hadamard_matrix, source = dense_hadamard()
    rows = []
    for n in (12, 768, 1280, 1536, 1792, 2560, 4096, 5120, 16384):
        h = hadamard_matrix(n).cuda()
        for dtype in DTYPES:
            g = torch.Generator(device="cuda").manual_seed(n)
            x = torch.randn(3, 37, n, generator=g, device="cuda").to(getattr(torch, dtype))
            signs = torch.where(torch.rand(n, generator=g, device="cuda") < 0.5, -1.0, 1.0)
            ref = (x.double() * signs.double()) @ h
            out = torch.full_like(x, math.nan)
            lib.hadamard_transform(x, signs, out)
            in_place = x.clone()
            lib.hadamard_transform(in_place, signs, in_place)
            torch.cuda.synchronize()
            err = max(normwise_error(out, ref), normwise_error(in_place, ref))
            flips, off_tie = check_hadamard_quantize(lib, x, signs, ref)
            rows.append({"n": n, "m": lib.hadamard_base_order(n), "dtype": dtype, "err": err,
                         "q_flips": flips, "ok": err <= Y_TOLERANCE[dtype] and not off_tie})
    return rows, source


def clipping_scale(ref, dtype):
    """A per-tensor scale (one element of `dtype`) that clips the largest 1 % of |ref| to ±127."""
    return (ref.abs().flatten().kthvalue(int(0.99 * ref.numel())).values / 127).to(dtype).reshape(1)


def compare_codes(codes, ref, scale) -> tuple[int, bool]:
    """INT8 codes against round-half-even(ref / scale) saturated (ref float64). Returns (codes off,
    whether any is off by more than one or where the float64 value is not within float32 rounding of
    a tie)."""
    exact = ref / scale.double()
    want = exact.round().clamp(-128, 127)               # torch rounds half to even
    diff = (codes.double() - want).abs()
    near_tie = ((exact - exact.floor()) - 0.5).abs() < 1e-4 * exact.abs().clamp(min=1)
    return int((diff > 0).sum()), bool((diff > 1).any() or ((diff > 0) & ~near_tie).any())


def check_hadamard_quantize(lib, x, signs, ref) -> tuple[int, bool]:
    """mq_hadamard_quantize (HadamardQuantize's kernel) against compare_codes' reference."""
    import torch

    scale = clipping_scale(ref, x.dtype)
    codes = torch.full(x.shape, 99, dtype=torch.int8, device=x.device)   # 99: poison, not a saturated code
    lib.hadamard_quantize(x, signs, scale, codes)
    torch.cuda.synchronize()
    return compare_codes(codes, ref, scale)


# ---- timing ------------------------------------------------------------------------------------------

def median_ms(fn, reps: int, warmup: int = 3) -> float:
    """Median of per-run CUDA-event times; runs are queued behind a GPU sleep (no host gaps)."""
    import torch

    for _ in range(warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    torch.cuda.synchronize()
    if hasattr(torch.cuda, "_sleep"):
        torch.cuda._sleep(50_000_000)  # ~25 ms of GPU time while the host queues everything
    for s, e in zip(starts, ends):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends))


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    import torch

    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), reps=20)
    return 2 * src.numel() / (ms * 1e-3)


def exp_rate(bench) -> float:
    import torch

    blocks = torch.cuda.get_device_properties(0).multi_processor_count * 8
    iters = 4096
    sink = torch.zeros(blocks, device="cuda")
    ms = median_ms(lambda: bench.launch(sink, blocks, iters), reps=10)
    return bench.count(blocks, iters) / (ms * 1e-3)


def scan_bytes(case: ScanCase, act_bytes: int) -> int:
    """The scan's unavoidable traffic: activations in and out, B/C, parameters, final state."""
    b, l, d, n = case.batch, case.seqlen, case.dim, case.dstate
    activations = (3 + int(case.gate)) * b * l * d  # x, delta, y (+ z)
    params = 4 * (d * n + 3 * d)
    return act_bytes * (activations + 2 * b * l * n) + params + 4 * b * d * n * (1 + int(case.initial_state))


def timing(lib, reps: int, bandwidth: float, exps_per_s: float, quick: bool, algorithms=ALGORITHMS,
           progress=None) -> list[dict]:
    """One row per (implementation, shape): median time, both floors, time / floor, and the
    speed-up over the sequential kernel when it was timed."""
    import torch

    rows = []
    for i, tcase in enumerate(timing_cases(quick)):
        case = tcase.scan_case()
        inputs = make_inputs(case, seed=3000 + i)
        y = torch.empty_like(inputs["x"])
        state = torch.empty(case.batch, case.dim, case.dstate, device="cuda")
        ws = torch.empty(max(lib.workspace_size(case.batch, case.seqlen, case.dim, case.dstate), 16),
                         dtype=torch.uint8, device="cuda")
        act_bytes = inputs["x"].element_size()
        mem_floor = scan_bytes(case, act_bytes) / bandwidth * 1e3
        exp_floor = case.batch * case.seqlen * case.dim * case.dstate / exps_per_s * 1e3
        floor = max(mem_floor, exp_floor)
        times = {}
        for algorithm in algorithms:
            def run(algorithm=algorithm):
                lib.selective_scan(**inputs, y=y, final_state=state, workspace=ws, algorithm=algorithm)
            times[algorithm] = adaptive_median_ms(run, reps)
        for algorithm in algorithms:
            t = times[algorithm]
            rows.append({"impl": algorithm, "dtype": tcase.dtype, "B": tcase.batch, "L": tcase.seqlen,
                         "D": tcase.dim, "N": tcase.dstate, "case": tcase.label(), "time_us": t * 1e3,
                         "mem_floor_us": mem_floor * 1e3, "exp_floor_us": exp_floor * 1e3,
                         "vs_floor": t / floor,
                         "vs_sequential": times["sequential"] / t if "sequential" in times else math.nan})
        if progress is not None:
            progress(f"{tcase.label()}: " + ", ".join(f"{a} {times[a] * 1e3:.1f} us" for a in algorithms))
        del inputs, y, state, ws
    return rows


def adaptive_median_ms(fn, reps: int) -> float:
    """median_ms with as many runs as fit ROW_BUDGET_S (3 .. reps): slow baselines stay affordable."""
    import torch

    fn()  # warm-up (module load) and a first estimate
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    once_ms = max(start.elapsed_time(end), 1e-3)
    n = int(min(reps, max(3, ROW_BUDGET_S * 1e3 / once_ms)))
    return median_ms(fn, n, warmup=1)


TIMING_COLUMNS = [("impl", "impl", ""), ("dtype", "dtype", ""), ("B", "B", ""), ("L", "L", ""), ("D", "D", ""),
                  ("N", "N", ""), ("median µs", "time_us", ".1f"), ("mem floor µs", "mem_floor_us", ".1f"),
                  ("exp floor µs", "exp_floor_us", ".1f"), ("vs floor", "vs_floor", ".2f"),
                  ("vs sequential", "vs_sequential", ".2f")]


def hadamard_timing(lib, reps: int, bandwidth: float) -> list[dict]:
    import torch

    hadamard_matrix, _ = dense_hadamard()
    rows = []
    for n in (1536, 2560, 5120):
        x = torch.randn(8 * 2048, n, device="cuda", dtype=torch.float16)
        signs = torch.ones(n, device="cuda")
        out = torch.empty_like(x)
        h = hadamard_matrix(n).to(device="cuda", dtype=torch.float16)
        codes = torch.empty(x.shape, device="cuda", dtype=torch.int8)
        scale = torch.full((1,), 0.05, device="cuda", dtype=torch.float16)
        fwht = median_ms(lambda: lib.hadamard_transform(x, signs, out), reps)
        fused = median_ms(lambda: lib.hadamard_quantize(x, signs, scale, codes), reps)
        dense = median_ms(lambda: torch.matmul(x, h, out=out), reps)
        floor = 2 * x.numel() * x.element_size() / bandwidth * 1e3
        fused_floor = 2 * x.numel() * (x.element_size() + 1) / bandwidth * 1e3   # FP16 in, INT8 out
        rows.append({"shape": f"float16 [{x.shape[0]}, {n}]", "fwht_us": fwht * 1e3, "dense_us": dense * 1e3,
                     "floor_us": floor * 1e3, "quantize_us": fused * 1e3, "quantize_floor_us": fused_floor * 1e3})
    return rows


HADAMARD_TIMING_COLUMNS = [("input", "shape", ""), ("fwht µs", "fwht_us", ".1f"),
                           ("dense matmul µs", "dense_us", ".1f"), ("copy floor µs", "floor_us", ".1f"),
                           ("fwht + INT8 (HadamardQuantize) µs", "quantize_us", ".1f"),
                           ("its floor µs", "quantize_floor_us", ".1f")]


# ---- report ----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check and time libmq_kernels on this GPU.")
    parser.add_argument("--lib", type=pathlib.Path, required=False, help="path of libmq_kernels.so")
    parser.add_argument("--bench-lib", type=pathlib.Path, help="path of libmq_kernels_bench.so (exp rate)")
    parser.add_argument("--out", type=pathlib.Path, help="also write the report here")
    parser.add_argument("--reps", type=int, default=50, help="timed runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS),
                        help=f"comma-separated scan implementations to check and time (of {', '.join(ALGORITHMS)})")
    parser.add_argument("--only-timing", action="store_true", help="skip the correctness checks")
    parser.add_argument("--list-cases", action="store_true", help="print the planned cases and exit (no GPU)")
    args = parser.parse_args(argv)

    algorithms = tuple(a for a in args.algorithms.split(",") if a)
    if not algorithms or any(a not in ALGORITHMS for a in algorithms):
        parser.error(f"--algorithms: choose from {', '.join(ALGORITHMS)}")
    if args.list_cases:
        for case in correctness_cases(args.quick):
            print("check", case.label())
        for case in timing_cases(args.quick):
            print("time ", case.label(), "x", ",".join(algorithms))
        return 0
    if args.lib is None:
        parser.error("--lib is required")

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; nothing to check")
        return 2
    lib = mq_kernels_ctypes.MqKernels(args.lib)
    ref_fn = load_reference()
    props = torch.cuda.get_device_properties(0)
    lines = ["# libmq_kernels GPU check", "",
             f"- device: {props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB; "
             f"torch {torch.__version__} (CUDA {torch.version.cuda}); python {platform.python_version()}",
             f"- library: {args.lib} (version {lib.version}); reference: mq_deploy.ops.reference_scan"]

    bandwidth = copy_bandwidth()
    exps = exp_rate(mq_kernels_ctypes.ExpRateBench(args.bench_lib)) if args.bench_lib else math.inf
    exp_text = f"exp2 (MUFU) rate {exps / 1e12:.2f} T/s" if math.isfinite(exps) else "exp rate not measured"
    lines.append(f"- measured: device-to-device copy {bandwidth / 1e12:.2f} TB/s (read + write); {exp_text}")

    checks = [] if args.only_timing else correctness(lib, ref_fn, args.quick, algorithms)
    hadamard, hadamard_source = ([], "-") if args.only_timing else check_hadamard(lib)
    lines += ["", "## Correctness (normwise relative error vs float64 reference)", "",
              markdown_table(checks, [("case", "case", ""), ("kernel", "algorithm", ""), ("err y", "err_y", ".2e"),
                                      ("tol y", "tol_y", ".1e"), ("err state", "err_state", ".2e"),
                                      ("ok", "ok", "")]),
              "", f"final_state tolerance {STATE_TOLERANCE:.0e} for every dtype.", "",
              f"## Fast Walsh-Hadamard transform vs dense x diag(s) H_n (float64, H_n from {hadamard_source})", "",
              markdown_table(hadamard, [("n", "n", ""), ("base m", "m", ""), ("dtype", "dtype", ""),
                                        ("err", "err", ".2e"), ("codes off", "q_flips", ""), ("ok", "ok", "")])]

    perf = timing(lib, args.reps, bandwidth, exps, args.quick, algorithms,
                  progress=lambda line: print(line, file=sys.stderr, flush=True))
    lines += ["", "## Selective scan time (median, microseconds)", "",
              markdown_table(perf, TIMING_COLUMNS),
              "", "## Hadamard transform time (median, microseconds)", "",
              markdown_table(hadamard_timing(lib, args.reps, bandwidth), HADAMARD_TIMING_COLUMNS)]
    failed = sum(not r["ok"] for r in checks + hadamard)
    passed = len(checks) + len(hadamard) - failed
    lines += ["", f"{passed} passed, {failed} failed"]
    report = "\n".join(lines) + "\n"
    print(report, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
