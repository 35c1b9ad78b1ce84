"""The SSD (Mamba-2) scan kernels on a GPU: correctness against the float64 reference
(mq_deploy.ops.ssd_scan) and timing at the real Mamba-2 sizes, for scripts/gpu_verify's `ssd` stage
and tests/test_gpu_kernels.py. The CPU can check everything here but the launches
(tests/test_plugins_build.py).

Errors are normwise, max|out - ref| / max|ref|, with the selective scan's tolerances
(plugins/selective_scan/gpu_check.py: one FP16/BF16 ulp of the output, 1e-5 for FP32 and the state).
The tensor-core kernel ("mma": float16/bfloat16, head_dim <= 64, dstate <= 128) rounds its matmul
operands (the scaled B, the carried state, the masked C B^T) to the activation type, as mamba_ssm's
chunked kernels do, so it is held to MMA_ULPS of those ulps for y and for the state. The CPU model of
its blocks (plugins/tests/test_ssd_mma_model.cpp), rounding operands to each type's precision, stays
at about a third of one ulp for y and a fifth for the state; the GPU report's errors say the rest.
Timing: the kernels' median time beside the memory floor (x, dt, B, C read once, y written, the
final state written, at the copy rate measured on the same GPU); the recurrence's 2 FMAs per state
element per token are reported as achieved TFLOP/s, since a scalar kernel's compute bound and not
the memory floor limits it at N = 128 (the tensor-core chunked SSD form is the way past that).
"""

from __future__ import annotations

import dataclasses
import math

DTYPES = ("float32", "float16", "bfloat16")
ALGORITHMS = ("chunked", "sequential")
MMA = "mma"
MMA_ULPS = 2


@dataclasses.dataclass(frozen=True)
class SsdCase:
    batch: int
    seqlen: int
    heads: int
    head_dim: int
    groups: int
    dstate: int
    dtype: str
    initial_state: bool = False
    dt_limit: tuple | None = None
    dt_softplus: bool = True
    skip: bool = True          # D and dt_bias given (False: both NULL)

    def label(self) -> str:
        flags = (("h" if self.initial_state else "") + ("l" if self.dt_limit else "")
                 + ("" if self.dt_softplus else "r") + ("" if self.skip else "0"))
        return (f"{self.dtype} B={self.batch} L={self.seqlen} H={self.heads} P={self.head_dim} G={self.groups} "
                f"N={self.dstate}{' ' + flags if flags else ''}")


def mma_supports(case: SsdCase) -> bool:
    """The shapes and dtypes mq_ssd_scan_mma takes (it answers MQ_ERROR_UNSUPPORTED to the rest)."""
    return case.dtype != "float32" and 1 <= case.head_dim <= 64 and 1 <= case.dstate <= 128


def algorithms_for(case: SsdCase) -> list[str]:
    return list(ALGORITHMS) + ([MMA] if mma_supports(case) else [])


def correctness_cases(quick: bool = False) -> list[SsdCase]:
    """Every states-per-lane width (N 5, 16, 24, 64, 128, 256: 1 .. 32 per lane), rows past head_dim
    (P 50), several groups, chunked lengths and one token, an initial state, a biting dt limit, no
    softplus with no limit, no D and dt_bias; in every dtype, dtypes interleaved so any prefix of
    the list has all three."""
    shapes = [SsdCase(2, 7, 6, 8, 3, 5, "", initial_state=True),
              SsdCase(1, 2048, 24, 64, 1, 128, ""),
              SsdCase(2, 333, 8, 50, 2, 64, "", initial_state=True, dt_limit=(0.01, 0.2)),
              SsdCase(1, 1, 24, 64, 1, 128, "", initial_state=True),
              SsdCase(1, 4096, 4, 64, 4, 16, "", initial_state=True),
              SsdCase(3, 200, 6, 16, 2, 24, "", dt_softplus=False, dt_limit=(-math.inf, math.inf), skip=False)]
    if not quick:
        shapes += [SsdCase(1, 8192, 12, 32, 1, 256, ""), SsdCase(4, 1000, 16, 64, 8, 128, "", initial_state=True)]
    return [dataclasses.replace(c, dtype=dtype) for c in shapes for dtype in DTYPES]


def timing_cases(quick: bool = False) -> list[SsdCase]:
    """mamba2-130m / -780m / -2.7b mixers (heads x 64, N 128, one group) at B 1 and 8, L 2048 and 8192."""
    sizes = [(24,), (80,)] if quick else [(24,), (48,), (80,)]
    lengths = (2048,) if quick else (2048, 8192)
    return [SsdCase(b, l, h, 64, 1, 128, dtype) for (h,) in sizes for b in (1, 8) for l in lengths
            for dtype in ("float16", "bfloat16")]


def make_inputs(case: SsdCase, seed: int, device: str = "cuda") -> dict:
    """Inputs in ops/ssd_scan.py's shapes: dt around softplus's knee, A in -[1, 16] (mamba_ssm's init)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    act = getattr(torch, case.dtype)
    b, l, h, p, groups, n = case.batch, case.seqlen, case.heads, case.head_dim, case.groups, case.dstate
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    # without softplus dt is used as given: keep it positive and small, as a softplus would
    dt = rand(b, l, h) * 0.5 - 2.0 if case.dt_softplus else torch.rand(b, l, h, generator=g) * 0.2
    out = {"x": rand(b, l, h, p), "dt": dt, "A": -torch.rand(h, generator=g) * 15 - 1,
           "B": rand(b, l, groups, n) / math.sqrt(n), "C": rand(b, l, groups, n),
           "D": rand(h) if case.skip else None, "dt_bias": rand(h) * 0.5 if case.skip else None,
           "initial_state": rand(b, h, p, n) if case.initial_state else None}
    fp32 = ("A", "D", "dt_bias", "initial_state")
    return {k: None if v is None else v.to(device, torch.float32 if k in fp32 else act).contiguous()
            for k, v in out.items()}


def reference(inputs: dict, case: SsdCase):
    """float64 (y, final_state): the sequential recurrence for short sequences, the chunked SSD form
    (equal to it to rounding, tests/test_models_mamba2.py) for long ones."""
    from mq_deploy.ops.ssd_scan import ssd_scan_chunked, ssd_scan_ref

    f64 = {k: None if v is None else v.double() for k, v in inputs.items()}
    fn = ssd_scan_ref if case.seqlen <= 64 else ssd_scan_chunked
    return fn(**f64, dt_softplus=case.dt_softplus, dt_limit=case.dt_limit)


def run_kernel(lib, case: SsdCase, inputs: dict, algorithm: str):
    """One algorithm with NaN-poisoned outputs and workspace; "sequential-inplace" updates the
    initial state in place. Returns (y, final_state)."""
    import torch

    y = torch.full_like(inputs["x"], math.nan)
    state = torch.full((case.batch, case.heads, case.head_dim, case.dstate), math.nan, device=inputs["x"].device)
    size = lib._lib.mq_ssd_scan_mma_workspace_size if algorithm == MMA else lib._lib.mq_ssd_scan_workspace_size
    ws = size(case.batch, case.seqlen, case.heads, case.head_dim, case.dstate)
    workspace = torch.full((max(ws, 16),), 0xFF, dtype=torch.uint8, device=inputs["x"].device)
    args = dict(inputs)
    kernel = algorithm
    if algorithm == "sequential-inplace":
        state.copy_(inputs["initial_state"])
        args["initial_state"], kernel = state, "sequential"
    lib.ssd_scan(**args, dt_softplus=case.dt_softplus, dt_limit=case.dt_limit, y=y, final_state=state,
                 workspace=workspace, algorithm=kernel)
    torch.cuda.synchronize()
    return y, state


def check_case(lib, case: SsdCase, algorithm: str, seed: int, normwise_error, y_tolerance: dict,
               state_tolerance: float) -> dict:
    if algorithm == MMA:     # 16-bit operands: the activation type's ulps, for y and the state alike
        y_tolerance = {k: MMA_ULPS * v for k, v in y_tolerance.items()}
        state_tolerance = y_tolerance[case.dtype]
    inputs = make_inputs(case, seed)
    y, state = run_kernel(lib, case, inputs, algorithm)
    y_ref, state_ref = reference(inputs, case)
    err_y, err_s = normwise_error(y, y_ref), normwise_error(state, state_ref)
    ok = err_y <= y_tolerance[case.dtype] and err_s <= state_tolerance
    return {"case": case.label(), "algorithm": algorithm, "err_y": err_y, "err_state": err_s,
            "tol_y": y_tolerance[case.dtype], "tol_state": state_tolerance, "ok": ok}


def correctness(lib, gpu_check, quick: bool) -> list[dict]:
    rows = []
    for i, case in enumerate(correctness_cases(quick)):
        algorithms = algorithms_for(case) + (["sequential-inplace"] if case.initial_state else [])
        for algorithm in algorithms:
            rows.append(check_case(lib, case, algorithm, 7000 + i, gpu_check.normwise_error, gpu_check.Y_TOLERANCE,
                                   gpu_check.STATE_TOLERANCE))
    return rows


def ssd_bytes(case: SsdCase, act_bytes: int) -> int:
    """Unavoidable traffic: x and y, dt, B and C in the activation type; the final state in float32."""
    b, l, h, p, g, n = case.batch, case.seqlen, case.heads, case.head_dim, case.groups, case.dstate
    return act_bytes * (2 * b * l * h * p + b * l * h + 2 * b * l * g * n) + 4 * b * h * p * n


def timing(lib, gpu_check, reps: int, bandwidth: float, quick: bool, progress=None) -> list[dict]:
    import torch

    rows = []
    for i, case in enumerate(timing_cases(quick)):
        inputs = make_inputs(case, seed=9000 + i)
        y = torch.empty_like(inputs["x"])
        state = torch.empty(case.batch, case.heads, case.head_dim, case.dstate, device="cuda")
        shape = (case.batch, case.seqlen, case.heads, case.head_dim, case.dstate)
        ws = torch.empty(max(lib._lib.mq_ssd_scan_workspace_size(*shape), lib._lib.mq_ssd_scan_mma_workspace_size(*shape),
                             16), dtype=torch.uint8, device="cuda")
        floor_ms = ssd_bytes(case, inputs["x"].element_size()) / bandwidth * 1e3
        flops = 4 * case.batch * case.seqlen * case.heads * case.head_dim * case.dstate
        times = {}
        algorithms = algorithms_for(case)
        for algorithm in algorithms:
            def run(algorithm=algorithm):
                lib.ssd_scan(**inputs, y=y, final_state=state, workspace=ws, algorithm=algorithm)
            times[algorithm] = gpu_check.adaptive_median_ms(run, reps)
        for algorithm in algorithms:
            t = times[algorithm]
            rows.append({"impl": algorithm, "dtype": case.dtype, "B": case.batch, "L": case.seqlen, "H": case.heads,
                         "P": case.head_dim, "N": case.dstate, "time_us": t * 1e3, "mem_floor_us": floor_ms * 1e3,
                         "vs_floor": t / floor_ms, "tflops": flops / (t * 1e-3) / 1e12,
                         "vs_sequential": times["sequential"] / t})
        if progress is not None:
            progress(f"{case.label()}: " + ", ".join(f"{a} {times[a] * 1e3:.1f} us" for a in algorithms))
        del inputs, y, state, ws
    return rows


CORRECTNESS_COLUMNS = [("case", "case", ""), ("kernel", "algorithm", ""), ("err y", "err_y", ".2e"),
                       ("tol y", "tol_y", ".1e"), ("err state", "err_state", ".2e"), ("tol state", "tol_state", ".1e"),
                       ("ok", "ok", "")]
TIMING_COLUMNS = [("impl", "impl", ""), ("dtype", "dtype", ""), ("B", "B", ""), ("L", "L", ""), ("H", "H", ""),
                  ("P", "P", ""), ("N", "N", ""), ("median µs", "time_us", ".1f"),
                  ("mem floor µs", "mem_floor_us", ".1f"), ("vs floor", "vs_floor", ".2f"),
                  ("TFLOP/s", "tflops", ".2f"), ("vs sequential", "vs_sequential", ".2f")]
