"""The TensorRT plugins on a GPU without TensorRT: libmq_plugin_harness (plugins/harness) walks each
plugin through creation from parser-typed fields, the build-phase queries, serialization, clone,
attachToContext and enqueue; here the outputs are compared with the float64 torch reference.

Buffers are poisoned with NaN and wrapped in guard bytes: an element left unwritten fails the
comparison, a write outside an output or the workspace fails the guard check. Importing this
module needs neither torch nor a GPU.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import pathlib

GUARD_BYTES = 4096
GUARD_VALUE = 0xA5


class ScanProblem(ctypes.Structure):
    """Mirror of mqh_scan_problem (plugins/harness/plugin_harness.h): nine int64 fields."""

    _fields_ = [(name, ctypes.c_int64) for name in (
        "dtype", "delta_softplus", "reverse", "batch", "seqlen", "dim", "dstate", "max_batch", "max_seqlen")]


class SsdProblem(ctypes.Structure):
    """Mirror of mqh_ssd_problem (plugins/harness/plugin_harness.h): ten int64 fields, two doubles."""

    _fields_ = [(name, ctypes.c_int64) for name in (
        "dtype", "head_dim", "n_groups", "dt_softplus", "batch", "seqlen", "heads", "dstate", "max_batch",
        "max_seqlen")] + [("dt_min", ctypes.c_double), ("dt_max", ctypes.c_double)]


DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}


class Harness:
    def __init__(self, path: str | pathlib.Path):
        lib = ctypes.CDLL(str(path))
        lib.mqh_scan_build.argtypes = [ctypes.POINTER(ScanProblem)]
        lib.mqh_scan_build.restype = ctypes.c_int64
        lib.mqh_scan_run.argtypes = [ctypes.POINTER(ScanProblem), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_void_p]
        lib.mqh_scan_run.restype = ctypes.c_int32
        lib.mqh_hadamard_run.argtypes = [ctypes.c_int64, ctypes.c_int32, ctypes.POINTER(ctypes.c_int64),
                                         ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.mqh_hadamard_run.restype = ctypes.c_int32
        lib.mqh_hadamard_quantize_run.argtypes = [ctypes.c_int64, ctypes.c_int32, ctypes.POINTER(ctypes.c_int64),
                                                  ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                                  ctypes.c_void_p]
        lib.mqh_hadamard_quantize_run.restype = ctypes.c_int32
        lib.mqh_ssd_build.argtypes = [ctypes.POINTER(SsdProblem)]
        lib.mqh_ssd_build.restype = ctypes.c_int64
        lib.mqh_ssd_run.argtypes = [ctypes.POINTER(SsdProblem), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p]
        lib.mqh_ssd_run.restype = ctypes.c_int32
        lib.mqh_ssd_self_test.restype = ctypes.c_int32
        lib.mqh_self_test.restype = ctypes.c_int32
        lib.mqh_log.restype = ctypes.c_char_p
        lib.mqh_error.restype = ctypes.c_char_p
        self._lib = lib

    def log(self) -> str:
        return self._lib.mqh_log().decode()

    def error(self) -> str:
        return self._lib.mqh_error().decode()

    def self_test(self) -> tuple[int, str]:
        return self._lib.mqh_self_test(), self.log()

    def ssd_self_test(self) -> tuple[int, str]:
        return self._lib.mqh_ssd_self_test(), self.log()

    def ssd_build(self, problem: SsdProblem) -> int:
        return self._lib.mqh_ssd_build(ctypes.byref(problem))

    def ssd_run(self, problem: SsdProblem, inputs: list[int], outputs: list[int], workspace: int, stream: int) -> int:
        ins = (ctypes.c_void_p * 7)(*inputs)
        outs = (ctypes.c_void_p * 2)(*outputs)
        return self._lib.mqh_ssd_run(ctypes.byref(problem), ins, outs, ctypes.c_void_p(workspace or None),
                                     ctypes.c_void_p(stream))

    def scan_build(self, problem: ScanProblem) -> int:
        return self._lib.mqh_scan_build(ctypes.byref(problem))

    def scan_run(self, problem: ScanProblem, inputs: list[int], outputs: list[int], workspace: int, stream: int) -> int:
        ins = (ctypes.c_void_p * 9)(*inputs)
        outs = (ctypes.c_void_p * 2)(*outputs)
        return self._lib.mqh_scan_run(ctypes.byref(problem), ins, outs, ctypes.c_void_p(workspace or None),
                                      ctypes.c_void_p(stream))

    def hadamard_run(self, dtype: str, shape: tuple[int, ...], x: int, signs: int, y: int, stream: int) -> int:
        dims = (ctypes.c_int64 * len(shape))(*shape)
        return self._lib.mqh_hadamard_run(DTYPE_CODES[dtype], len(shape), dims, ctypes.c_void_p(x),
                                          ctypes.c_void_p(signs), ctypes.c_void_p(y), ctypes.c_void_p(stream))

    def hadamard_quantize_run(self, dtype: str, shape: tuple[int, ...], x: int, signs: int, scale: int, y: int,
                              stream: int) -> int:
        dims = (ctypes.c_int64 * len(shape))(*shape)
        return self._lib.mqh_hadamard_quantize_run(DTYPE_CODES[dtype], len(shape), dims, ctypes.c_void_p(x),
                                                   ctypes.c_void_p(signs), ctypes.c_void_p(scale), ctypes.c_void_p(y),
                                                   ctypes.c_void_p(stream))


@dataclasses.dataclass(frozen=True)
class PluginScanCase:
    batch: int
    seqlen: int
    dim: int
    dtype: str
    reverse: bool = False
    dstate: int = 16
    delta_softplus: bool = True
    profile_seqlen: int = 0  # profile max; 0: 2 x seqlen (a plan reserved for longer inputs)

    def label(self) -> str:
        flags = ("r" if self.reverse else "") + ("" if self.delta_softplus else "s")
        return f"{self.dtype} B={self.batch} L={self.seqlen} D={self.dim} N={self.dstate} {flags or '-'}"


def plugin_scan_cases(quick: bool = False) -> list[PluginScanCase]:
    """What the issue asks: every dtype, multi-chunk lengths (>= 4096), reverse, the gate with a
    gate scale (always: the op has all nine inputs), batch > 1, D not a multiple of 128, N 16 and 64."""
    cases = [PluginScanCase(1, 4096, 1536, "float16"), PluginScanCase(1, 4096, 1536, "bfloat16", reverse=True),
             PluginScanCase(1, 4100, 1000, "float32"), PluginScanCase(2, 5000, 200, "float16", reverse=True, dstate=64),
             PluginScanCase(4, 333, 130, "bfloat16", dstate=64), PluginScanCase(3, 1, 777, "float32", reverse=True),
             PluginScanCase(2, 300, 1000, "float16", delta_softplus=False)]
    if not quick:
        cases += [PluginScanCase(8, 2048, 2560, "float16"), PluginScanCase(1, 8192, 2560, "bfloat16", reverse=True),
                  PluginScanCase(5, 999, 333, "float32", dstate=64)]
    return cases


def hadamard_sizes() -> list[int]:
    """Every base order (1, 12, 20, 28, 40) times powers of two, up to the 16384 limit."""
    return [1, 2, 64, 1024, 16384, 12, 24, 768, 1536, 12288, 20, 40, 80, 2560, 5120, 10240, 28, 56, 1792, 3584,
            14336]


# ---- guarded device buffers ----------------------------------------------------------------------

class Guarded:
    """A device buffer of `nbytes` inside guard bytes; `.view(dtype, shape)` is the usable tensor."""

    def __init__(self, nbytes: int, fill_byte: int):
        import torch

        self.nbytes = nbytes
        self.raw = torch.full((nbytes + 2 * GUARD_BYTES,), GUARD_VALUE, dtype=torch.uint8, device="cuda")
        self.raw[GUARD_BYTES:GUARD_BYTES + nbytes] = fill_byte

    def ptr(self) -> int:
        return self.raw.data_ptr() + GUARD_BYTES

    def view(self, dtype, shape):
        return self.raw[GUARD_BYTES:GUARD_BYTES + self.nbytes].view(dtype).view(*shape)

    def guards_intact(self) -> bool:
        return bool((self.raw[:GUARD_BYTES] == GUARD_VALUE).all() and (self.raw[GUARD_BYTES + self.nbytes:] == GUARD_VALUE).all())


def _scan_problem(case: PluginScanCase) -> ScanProblem:
    return ScanProblem(DTYPE_CODES[case.dtype], int(case.delta_softplus), int(case.reverse), case.batch, case.seqlen,
                       case.dim, case.dstate, case.batch, case.profile_seqlen or 2 * case.seqlen)


def check_scan_case(harness: Harness, gpu_check, ref_fn, case: PluginScanCase, seed: int, garbage: bool = False) -> dict:
    """Run one case through the harness; compare with the float64 reference (or, with garbage
    inputs, only require a clean return and intact guards)."""
    import torch

    scan_case = gpu_check.ScanCase(case.batch, case.seqlen, case.dim, case.dtype, case.reverse, gate=True,
                                   initial_state=False, dstate=case.dstate, delta_softplus=case.delta_softplus)
    inputs = gpu_check.make_inputs(scan_case, seed)
    order = ["x", "delta", "A", "B", "C", "D", "delta_bias", "z", "gate_scale"]
    if garbage:  # random bytes in every input: NaN, Inf, huge and tiny values
        g = torch.Generator(device="cuda").manual_seed(seed)
        for name in order:
            t = inputs[name]
            raw = torch.randint(0, 256, (t.numel() * t.element_size(),), generator=g, dtype=torch.uint8, device="cuda")
            inputs[name] = raw.view(t.dtype).view(t.shape)
    problem = _scan_problem(case)
    ws_bytes = harness.scan_build(problem)
    if ws_bytes < 0:
        return {"case": case.label(), "ok": False, "err_y": math.nan, "err_state": math.nan, "tol_y": math.nan,
                "note": "build phase: " + harness.error()}
    act = inputs["x"].element_size()
    y = Guarded(case.batch * case.seqlen * case.dim * act, 0xFF)  # 0xFFFF: NaN in every float format
    state = Guarded(case.batch * case.dim * case.dstate * 4, 0xFF)
    workspace = Guarded(ws_bytes, 0xFF)
    stream = torch.cuda.Stream()  # a non-default stream, as TensorRT uses
    stream.wait_stream(torch.cuda.current_stream())
    status = harness.scan_run(problem, [inputs[n].data_ptr() for n in order], [y.ptr(), state.ptr()],
                              workspace.ptr() if ws_bytes else 0, stream.cuda_stream)
    stream.synchronize()
    guards = y.guards_intact() and state.guards_intact() and workspace.guards_intact()
    row = {"case": case.label() + (" garbage" if garbage else ""), "workspace": ws_bytes, "guards": guards}
    if status != 0:
        return {**row, "ok": False, "err_y": math.nan, "err_state": math.nan, "tol_y": math.nan,
                "note": harness.error()}
    if garbage:
        return {**row, "ok": guards, "err_y": math.nan, "err_state": math.nan, "tol_y": math.nan,
                "note": "clean return" if guards else "WROTE OUTSIDE ITS BUFFERS"}
    y_ref, state_ref = gpu_check.reference(ref_fn, inputs, scan_case)
    err_y = gpu_check.normwise_error(y.view(inputs["x"].dtype, inputs["x"].shape), y_ref)
    err_s = gpu_check.normwise_error(state.view(torch.float32, (case.batch, case.dim, case.dstate)), state_ref)
    tol = gpu_check.Y_TOLERANCE[case.dtype]
    ok = guards and err_y <= tol and err_s <= gpu_check.STATE_TOLERANCE
    return {**row, "ok": ok, "err_y": err_y, "err_state": err_s, "tol_y": tol, "note": "" if guards else "GUARDS"}


def check_hadamard_size(harness: Harness, gpu_check, h_dense, dtype: str, seed: int) -> dict:
    """h_dense: float64 H_n on the GPU, from mq_deploy's own definition (the Python transform)."""
    import torch

    n = h_dense.shape[0]
    g = torch.Generator(device="cuda").manual_seed(seed)
    shape = (3, 5, n)
    x = torch.randn(*shape, generator=g, device="cuda").to(getattr(torch, dtype))
    signs = torch.where(torch.rand(n, generator=g, device="cuda") < 0.5, -1.0, 1.0)
    out = Guarded(x.numel() * x.element_size(), 0xFF)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    status = harness.hadamard_run(dtype, shape, x.data_ptr(), signs.data_ptr(), out.ptr(), stream.cuda_stream)
    stream.synchronize()
    row = {"n": n, "dtype": dtype, "guards": out.guards_intact(), "q_flips": "-"}
    if status != 0:
        return {**row, "err": math.nan, "ok": False, "note": harness.error()}
    ref = (x.double() * signs.double()) @ h_dense
    err = gpu_check.normwise_error(out.view(x.dtype, shape), ref)
    tol = gpu_check.Y_TOLERANCE[dtype]
    # HadamardQuantize on the same input: INT8 codes at a scale that clips the top 1 %
    scale = gpu_check.clipping_scale(ref, x.dtype)
    codes = Guarded(x.numel(), 99)                         # 99: poison, not a saturated code
    status = harness.hadamard_quantize_run(dtype, shape, x.data_ptr(), signs.data_ptr(), scale.data_ptr(),
                                           codes.ptr(), stream.cuda_stream)
    stream.synchronize()
    if status != 0:
        return {**row, "err": err, "ok": False, "note": "HadamardQuantize: " + harness.error()}
    flips, off_tie = gpu_check.compare_codes(codes.view(torch.int8, shape), ref, scale)
    row["guards"] = row["guards"] and codes.guards_intact()
    return {**row, "err": err, "q_flips": flips, "ok": row["guards"] and err <= tol and not off_tie, "note": ""}


# ---- SSDScan (Mamba-2) ----------------------------------------------------------------------------------

def plugin_ssd_cases(ssd_check, quick: bool = False) -> list:
    """SsdCase rows for the plugin: one chunk and several (the profile's seqlen twice the run's),
    groups > 1, N 64 / 128, a dt limit, every dtype (no initial state: the op has none)."""
    cases = [ssd_check.SsdCase(2, 37, 6, 8, 3, 64, "float32", dt_limit=(0.01, 0.2)),
             ssd_check.SsdCase(1, 2048, 24, 64, 1, 128, "float16"),
             ssd_check.SsdCase(3, 300, 8, 64, 2, 128, "bfloat16")]
    if not quick:
        cases += [ssd_check.SsdCase(1, 4096, 48, 64, 1, 128, "bfloat16"),
                  ssd_check.SsdCase(8, 512, 24, 64, 1, 128, "float16")]
    return cases


def ssd_problem(case) -> SsdProblem:
    low, high = case.dt_limit or (0.0, math.inf)
    return SsdProblem(DTYPE_CODES[case.dtype], case.head_dim, case.groups, 1, case.batch, case.seqlen, case.heads,
                      case.dstate, case.batch, 2 * case.seqlen, low, high)


def check_ssd_case(harness: Harness, ssd_check, gpu_check, case, seed: int) -> dict:
    """One SSDScan run through the harness against the float64 reference, NaN-poisoned and guarded."""
    import torch

    inputs = ssd_check.make_inputs(case, seed)
    problem = ssd_problem(case)
    ws_bytes = harness.ssd_build(problem)
    row = {"case": "SSDScan " + case.label()}
    if ws_bytes < 0:
        return {**row, "ok": False, "err_y": math.nan, "err_state": math.nan, "tol_y": math.nan,
                "note": "build phase: " + harness.error()}
    act = inputs["x"].element_size()
    y = Guarded(inputs["x"].numel() * act, 0xFF)
    state = Guarded(case.batch * case.heads * case.head_dim * case.dstate * 4, 0xFF)
    workspace = Guarded(ws_bytes, 0xFF)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    flat = {k: v.reshape(v.shape[0], v.shape[1], -1) if k in ("x", "B", "C") else v for k, v in inputs.items()}
    order = ["x", "dt", "A", "B", "C", "D", "dt_bias"]
    status = harness.ssd_run(problem, [flat[n].data_ptr() for n in order], [y.ptr(), state.ptr()],
                             workspace.ptr() if ws_bytes else 0, stream.cuda_stream)
    stream.synchronize()
    guards = y.guards_intact() and state.guards_intact() and workspace.guards_intact()
    row.update(workspace=ws_bytes, guards=guards)
    if status != 0:
        return {**row, "ok": False, "err_y": math.nan, "err_state": math.nan, "tol_y": math.nan,
                "note": harness.error()}
    y_ref, state_ref = ssd_check.reference(inputs, case)
    err_y = gpu_check.normwise_error(y.view(inputs["x"].dtype, inputs["x"].shape), y_ref)
    err_s = gpu_check.normwise_error(state.view(torch.float32, tuple(state_ref.shape)), state_ref)
    tol = gpu_check.Y_TOLERANCE[case.dtype]
    ok = guards and err_y <= tol and err_s <= gpu_check.STATE_TOLERANCE
    return {**row, "ok": ok, "err_y": err_y, "err_state": err_s, "tol_y": tol, "note": "" if guards else "GUARDS"}
