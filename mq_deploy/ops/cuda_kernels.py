"""ctypes bindings of libmq_kernels (plugins/selective_scan/mq_kernels.h) for torch CUDA tensors,
and the project's CUDA scans as `selective_scan` / `ssd_scan` implementations for the torch models
(calibration on a GPU, scripts/gpu_verify).

Only this module knows the C layout; callers pass torch tensors. Loading the library needs no GPU
(nothing is launched until a call is made).
"""

from __future__ import annotations

import ctypes
import pathlib

MQ_SUCCESS = 0
_DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}


class ScanArgs(ctypes.Structure):
    """Mirror of struct mq_selective_scan_args (field order and types must match the header)."""

    _fields_ = [
        ("dtype", ctypes.c_int),
        ("batch", ctypes.c_int32),
        ("seqlen", ctypes.c_int32),
        ("dim", ctypes.c_int32),
        ("dstate", ctypes.c_int32),
        ("delta_softplus", ctypes.c_int32),
        ("reverse", ctypes.c_int32),
        ("x", ctypes.c_void_p),
        ("delta", ctypes.c_void_p),
        ("A", ctypes.c_void_p),
        ("B", ctypes.c_void_p),
        ("C", ctypes.c_void_p),
        ("D", ctypes.c_void_p),
        ("delta_bias", ctypes.c_void_p),
        ("z", ctypes.c_void_p),
        ("gate_scale", ctypes.c_void_p),
        ("initial_state", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("final_state", ctypes.c_void_p),
        ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
    ]


class SsdArgs(ctypes.Structure):
    """Mirror of struct mq_ssd_scan_args (field order and types must match the header)."""

    _fields_ = [
        ("dtype", ctypes.c_int),
        ("batch", ctypes.c_int32),
        ("seqlen", ctypes.c_int32),
        ("heads", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("n_groups", ctypes.c_int32),
        ("dstate", ctypes.c_int32),
        ("dt_softplus", ctypes.c_int32),
        ("dt_min", ctypes.c_float),
        ("dt_max", ctypes.c_float),
        ("x", ctypes.c_void_p),
        ("dt", ctypes.c_void_p),
        ("A", ctypes.c_void_p),
        ("B", ctypes.c_void_p),
        ("C", ctypes.c_void_p),
        ("D", ctypes.c_void_p),
        ("dt_bias", ctypes.c_void_p),
        ("initial_state", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("final_state", ctypes.c_void_p),
        ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
    ]


class MqKernelsError(RuntimeError):
    pass


def _ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _stream_handle():
    import torch

    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


class MqKernels:
    """Loaded libmq_kernels. Every call enqueues on torch's current CUDA stream."""

    def __init__(self, path: str | pathlib.Path):
        self.path = str(path)
        lib = ctypes.CDLL(self.path)
        for name in ("mq_selective_scan", "mq_selective_scan_sequential", "mq_selective_scan_onepass",
                     "mq_selective_state_update"):
            fn = getattr(lib, name)
            fn.argtypes = [ctypes.POINTER(ScanArgs), ctypes.c_void_p]
            fn.restype = ctypes.c_int
        lib.mq_selective_scan_workspace_size.argtypes = [ctypes.c_int32] * 4
        lib.mq_selective_scan_workspace_size.restype = ctypes.c_size_t
        lib.mq_selective_scan_workspace_bound.argtypes = [ctypes.c_int32] * 4
        lib.mq_selective_scan_workspace_bound.restype = ctypes.c_size_t
        for name in ("mq_ssd_scan", "mq_ssd_scan_sequential", "mq_ssd_scan_mma"):
            fn = getattr(lib, name)
            fn.argtypes = [ctypes.POINTER(SsdArgs), ctypes.c_void_p]
            fn.restype = ctypes.c_int
        for name in ("mq_ssd_scan_workspace_size", "mq_ssd_scan_workspace_bound", "mq_ssd_scan_mma_workspace_size"):
            getattr(lib, name).argtypes = [ctypes.c_int32] * 5
            getattr(lib, name).restype = ctypes.c_size_t
        lib.mq_hadamard_transform.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                              ctypes.c_int32, ctypes.c_int, ctypes.c_void_p]
        lib.mq_hadamard_transform.restype = ctypes.c_int
        lib.mq_hadamard_quantize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                             ctypes.c_int64, ctypes.c_int32, ctypes.c_int, ctypes.c_void_p]
        lib.mq_hadamard_quantize.restype = ctypes.c_int
        lib.mq_hadamard_base_order.argtypes = [ctypes.c_int32]
        lib.mq_hadamard_base_order.restype = ctypes.c_int32
        lib.mq_status_string.argtypes = [ctypes.c_int]
        lib.mq_status_string.restype = ctypes.c_char_p
        lib.mq_kernels_version.restype = ctypes.c_char_p
        self._lib = lib

    @property
    def version(self) -> str:
        return self._lib.mq_kernels_version().decode()

    def _check(self, status: int, what: str) -> None:
        if status != MQ_SUCCESS:
            raise MqKernelsError(f"{what}: {self._lib.mq_status_string(status).decode()} (status {status})")

    def workspace_size(self, batch: int, seqlen: int, dim: int, dstate: int) -> int:
        return self._lib.mq_selective_scan_workspace_size(batch, seqlen, dim, dstate)

    def hadamard_base_order(self, n: int) -> int:
        return self._lib.mq_hadamard_base_order(n)

    def selective_scan(self, x, delta, A, B, C, D=None, delta_bias=None, z=None, gate_scale=None,
                       delta_softplus=True, initial_state=None, reverse=False, *, y=None, final_state=None,
                       workspace=None, algorithm="chunked"):
        """Runs the scan; returns (y, final_state). algorithm: chunked | onepass | sequential | decode.

        y / final_state / workspace are allocated here when not given (allocation is the caller's
        business; the library itself never allocates). For algorithm="decode", x etc. are
        [batch, 1, dim] (or [batch, dim]) and final_state may be initial_state (in place).
        """
        import torch

        batch, dim = x.shape[0], x.shape[-1]
        seqlen = 1 if x.dim() == 2 else x.shape[1]
        dstate = A.shape[1]
        dtype_name = str(x.dtype).replace("torch.", "")
        if dtype_name not in _DTYPE_CODES:
            raise MqKernelsError(f"unsupported activation dtype {x.dtype}")
        for t in (x, delta, A, B, C, D, delta_bias, z, gate_scale, initial_state, y, final_state):
            if t is not None and (not t.is_cuda or not t.is_contiguous()):
                raise MqKernelsError("every tensor must be a contiguous CUDA tensor")
        if y is None:
            y = torch.empty_like(x)
        if final_state is None:
            final_state = torch.empty(batch, dim, dstate, device=x.device, dtype=torch.float32)
        if workspace is None and algorithm == "chunked":
            ws = self.workspace_size(batch, seqlen, dim, dstate)
            workspace = torch.empty(max(ws, 16), device=x.device, dtype=torch.uint8) if ws else None
        args = ScanArgs(
            dtype=_DTYPE_CODES[dtype_name], batch=batch, seqlen=seqlen, dim=dim, dstate=dstate,
            delta_softplus=int(bool(delta_softplus)), reverse=int(bool(reverse)),
            x=_ptr(x), delta=_ptr(delta), A=_ptr(A), B=_ptr(B), C=_ptr(C), D=_ptr(D),
            delta_bias=_ptr(delta_bias), z=_ptr(z), gate_scale=_ptr(gate_scale),
            initial_state=_ptr(initial_state), y=_ptr(y), final_state=_ptr(final_state),
            workspace=_ptr(workspace), workspace_bytes=0 if workspace is None else workspace.numel())
        fn = {"chunked": self._lib.mq_selective_scan, "sequential": self._lib.mq_selective_scan_sequential,
              "onepass": self._lib.mq_selective_scan_onepass,
              "decode": self._lib.mq_selective_state_update}[algorithm]
        self._check(fn(ctypes.byref(args), _stream_handle()), f"selective scan ({algorithm})")
        return y, final_state

    def ssd_scan(self, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=True, dt_limit=None, initial_state=None,
                 *, y=None, final_state=None, workspace=None, algorithm="chunked"):
        """The SSD (Mamba-2) scan on ops/ssd_scan.py's shapes: x [b, L, H, P], dt [b, L, H], A, D,
        dt_bias [H], B and C [b, L, G, N], states [b, H, P, N]. Returns (y like x, final_state).
        dt_limit None: no clamp (ssd_scan_ref's meaning). algorithm: chunked | sequential
        (final_state may be initial_state there: in place) | mma (tensor cores: float16/bfloat16,
        head_dim <= 64, dstate <= 128, sm_80 or later)."""
        import torch

        batch, seqlen, heads, head_dim = x.shape
        groups, dstate = B.shape[2], B.shape[3]
        dtype_name = str(x.dtype).replace("torch.", "")
        if dtype_name not in _DTYPE_CODES:
            raise MqKernelsError(f"unsupported activation dtype {x.dtype}")
        for t in (x, dt, A, B, C, D, dt_bias, initial_state, y, final_state):
            if t is not None and (not t.is_cuda or not t.is_contiguous()):
                raise MqKernelsError("every tensor must be a contiguous CUDA tensor")
        wrong = [n for n, t, want in (("dt", dt, x.dtype), ("B", B, x.dtype), ("C", C, x.dtype), ("y", y, x.dtype),
                                      ("A", A, torch.float32), ("D", D, torch.float32), ("dt_bias", dt_bias, torch.float32),
                                      ("initial_state", initial_state, torch.float32),
                                      ("final_state", final_state, torch.float32))
                 if t is not None and t.dtype != want]
        if wrong:
            raise MqKernelsError(f"{', '.join(wrong)}: dt, B, C and y must have x's dtype; A, D, dt_bias and the "
                                 "states float32")
        y = torch.empty_like(x) if y is None else y
        if final_state is None:
            final_state = torch.empty(batch, heads, head_dim, dstate, device=x.device, dtype=torch.float32)
        if workspace is None and algorithm in ("chunked", "mma"):
            size = {"chunked": self._lib.mq_ssd_scan_workspace_size,
                    "mma": self._lib.mq_ssd_scan_mma_workspace_size}[algorithm]
            ws = size(batch, seqlen, heads, head_dim, dstate)
            workspace = torch.empty(max(ws, 16), device=x.device, dtype=torch.uint8) if ws else None
        # None: no clamp, as ssd_scan_ref (the kernel always clamps; (0, inf) is a no-op only after softplus)
        low, high = (float("-inf"), float("inf")) if dt_limit is None else dt_limit
        args = SsdArgs(
            dtype=_DTYPE_CODES[dtype_name], batch=batch, seqlen=seqlen, heads=heads, head_dim=head_dim,
            n_groups=groups, dstate=dstate, dt_softplus=int(bool(dt_softplus)), dt_min=low, dt_max=high,
            x=_ptr(x), dt=_ptr(dt), A=_ptr(A), B=_ptr(B), C=_ptr(C), D=_ptr(D), dt_bias=_ptr(dt_bias),
            initial_state=_ptr(initial_state), y=_ptr(y), final_state=_ptr(final_state), workspace=_ptr(workspace),
            workspace_bytes=0 if workspace is None else workspace.numel())
        fn = {"chunked": self._lib.mq_ssd_scan, "sequential": self._lib.mq_ssd_scan_sequential,
              "mma": self._lib.mq_ssd_scan_mma}[algorithm]
        self._check(fn(ctypes.byref(args), _stream_handle()), f"SSD scan ({algorithm})")
        return y, final_state

    def hadamard_transform(self, x, signs=None, out=None):
        """x [..., n] -> x diag(signs) H_n (same shape and dtype); out may be x (in place)."""
        import torch

        n = x.shape[-1]
        out = torch.empty_like(x) if out is None else out
        dtype_name = str(x.dtype).replace("torch.", "")
        status = self._lib.mq_hadamard_transform(_ptr(x), _ptr(signs), _ptr(out), x.numel() // n, n,
                                                 _DTYPE_CODES[dtype_name], _stream_handle())
        self._check(status, "hadamard transform")
        return out

    def hadamard_quantize(self, x, signs, scale, out=None):
        """x [..., n] -> INT8 codes of x diag(signs) H_n at `scale` (a one-element tensor of x's dtype
        on the GPU): QuantizeLinear of the float32 transform (HadamardQuantize)."""
        import torch

        n = x.shape[-1]
        out = torch.empty(x.shape, dtype=torch.int8, device=x.device) if out is None else out
        dtype_name = str(x.dtype).replace("torch.", "")
        status = self._lib.mq_hadamard_quantize(_ptr(x), _ptr(signs), _ptr(scale), _ptr(out), x.numel() // n, n,
                                                _DTYPE_CODES[dtype_name], _stream_handle())
        self._check(status, "hadamard quantize")
        return out


class ExpRateBench:
    """libmq_kernels_bench: times the exponential rate that bounds the scan."""

    def __init__(self, path: str | pathlib.Path):
        lib = ctypes.CDLL(str(path))
        lib.mq_bench_exp2.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]
        lib.mq_bench_exp2.restype = ctypes.c_int
        lib.mq_bench_exp2_count.argtypes = [ctypes.c_int32, ctypes.c_int32]
        lib.mq_bench_exp2_count.restype = ctypes.c_int64
        self._lib = lib

    def count(self, blocks: int, iters: int) -> int:
        """Exponentials one launch with these arguments evaluates."""
        return self._lib.mq_bench_exp2_count(blocks, iters)

    def launch(self, sink, blocks: int, iters: int) -> None:
        """Enqueues one run on torch's current stream; sink: float32 CUDA tensor of >= blocks elements."""
        status = self._lib.mq_bench_exp2(_ptr(sink), blocks, iters, _stream_handle())
        if status != MQ_SUCCESS:
            raise MqKernelsError(f"mq_bench_exp2 failed with status {status}")


KERNELS_ENV = "MQ_KERNELS_LIB"
KERNELS_LIBRARY = "libmq_kernels.so"


def find_kernels_library() -> pathlib.Path | None:
    """$MQ_KERNELS_LIB, else a libmq_kernels.so in the source tree's build folders (cmake -B build,
    scripts/gpu_verify.sh's build/gpu_verify), else None."""
    import os

    env = os.environ.get(KERNELS_ENV)
    if env:
        path = pathlib.Path(env)
        return path if path.is_file() else None
    repo = pathlib.Path(__file__).resolve().parents[2]
    for build in ("build", "build/gpu_verify", "build/gpu_check"):
        candidate = repo / build / "plugins" / KERNELS_LIBRARY
        if candidate.is_file():
            return candidate
    return None


def cuda_selective_scan(kernels: MqKernels, algorithm: str = "chunked"):
    """A scan implementation with `mq_deploy.ops.selective_scan`'s signature that runs a CUDA kernel
    of libmq_kernels (forward only, no autograd; float32/float16/bfloat16 activations).
    algorithm: chunked (default, what the TensorRT plugin runs) | onepass | sequential."""
    if algorithm not in ("chunked", "onepass", "sequential"):
        raise ValueError(f"unknown scan algorithm {algorithm!r} (chunked, onepass or sequential)")

    def scan(x, delta, A, B, C, D=None, delta_bias=None, z=None, gate_scale=None, delta_softplus=True,
             initial_state=None, reverse=False, return_final_state=False):
        act = x.dtype
        same = lambda t: None if t is None else t.to(act).contiguous()  # noqa: E731
        f32 = lambda t: None if t is None else t.float().contiguous()  # noqa: E731
        y, state = kernels.selective_scan(x.contiguous(), same(delta), f32(A), same(B), same(C), f32(D),
                                          f32(delta_bias), same(z), f32(gate_scale), delta_softplus,
                                          f32(initial_state), reverse, algorithm=algorithm)
        return (y, state) if return_final_state else y

    return scan


def cuda_ssd_scan(kernels: MqKernels, algorithm: str = "chunked"):
    """An SSD scan implementation with `mq_deploy.ops.ssd_scan`'s callable signature (a Mamba2Mixer's
    `scan_impl`) that runs libmq_kernels' SSD kernel: forward only, float32/float16/bfloat16.
    algorithm: chunked (what the TensorRT plugin runs) | sequential | mma (tensor cores, 16-bit only)."""
    if algorithm not in ("chunked", "sequential", "mma"):
        raise ValueError(f"unknown SSD scan algorithm {algorithm!r} (chunked, sequential or mma)")

    def scan(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None, initial_state=None,
             chunk_size=None):
        act = x.dtype
        same = lambda t: t.to(act).contiguous()  # noqa: E731
        f32 = lambda t: None if t is None else t.float().contiguous()  # noqa: E731
        return kernels.ssd_scan(x.contiguous(), same(dt), f32(A), same(B), same(C), f32(D), f32(dt_bias), dt_softplus,
                                dt_limit, f32(initial_state), algorithm=algorithm)

    return scan
