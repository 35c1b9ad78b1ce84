"""A compiled selective scan for CPU training (train.py --fast-scan): cpu_scan.c built with the system
C compiler into a temporary directory and called through ctypes, behind the same signature as
mq_deploy's scans (a callable `scan_impl`). Training only: float32, forward and backward.

The package's PyTorch scan spends a training step's time streaming [batch, N, D] states through
memory a few times per token; the compiled loop keeps each thread's slice of the state in L1.
tests/test_train_script.py holds it to the float64 reference scan and its autograd gradients.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from mq_deploy.ops.selective_scan import scan_with_recurrence

SOURCE = Path(__file__).with_name("cpu_scan.c")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]

_library = None

# State histories ([b, L, N, D], 100 MB a layer at the larger model's shape) are reused from one
# step to the next: a fresh one costs more in page faults than the whole forward loop (measured
# 71 ms against 25 ms). A history returns here when its backward has run; train.py runs exactly one
# backward per forward and never retains the graph, which is what makes the reuse safe.
_free_histories: dict[tuple, list[torch.Tensor]] = {}


def _take_history(*shape) -> torch.Tensor:
    free = _free_histories.get(shape)
    return free.pop() if free else torch.empty(shape)


def _return_history(history: torch.Tensor) -> None:
    _free_histories.setdefault(tuple(history.shape), []).append(history)


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def load_library() -> ctypes.CDLL:
    """Compile cpu_scan.c once per process (about a second) and load it."""
    global _library
    if _library is None:
        cc = compiler()
        if cc is None:
            raise RuntimeError("--fast-scan needs a C compiler (cc, gcc or clang) on PATH; "
                               "install one or train without --fast-scan")
        out = Path(tempfile.mkdtemp(prefix="mq_cpu_scan_")) / "libcpu_scan.so"
        done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(out), "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed:\n{done.stderr.strip()}")
        _library = ctypes.CDLL(str(out))
        _library.mq_train_scan_tiles.restype = ctypes.c_int
    return _library


def _ptr(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else None


class _CompiledScan(torch.autograd.Function):
    """(dt, dtx [b,L,D], A [D,N], B, C [b,L,N], h0 [b,D,N]) -> (y [b,L,D], h_L [b,D,N]), as _FusedScan."""

    @staticmethod
    def forward(ctx, dt, dtx, A, B, C, h0):
        lib = load_library()
        batch, length, dim = dt.shape
        n = A.shape[1]
        dt, dtx, B, C = (t.contiguous() for t in (dt, dtx, B, C))
        A_t = A.t().contiguous()
        A2 = A_t * math.log2(math.e)
        h0_sm = h0.transpose(1, 2).contiguous()
        y = dt.new_empty(batch, length, dim)
        h_last = dt.new_empty(batch, n, dim)
        history = _take_history(batch, length, n, dim) if any(ctx.needs_input_grad) else None
        lib.mq_train_scan_forward(batch, length, dim, n, _ptr(dt), _ptr(dtx), _ptr(A2), _ptr(B), _ptr(C),
                                  _ptr(h0_sm), _ptr(y), _ptr(h_last), _ptr(history))
        if history is not None:
            ctx.save_for_backward(dt, dtx, A_t, A2, B, C, h0_sm, history)
        return y, h_last.transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, dy, dh_last):
        lib = load_library()
        dt, dtx, A_t, A2, B, C, h0_sm, history = ctx.saved_tensors
        batch, length, dim = dt.shape
        n = A_t.shape[0]
        tiles = lib.mq_train_scan_tiles(dim)
        dy = dy.contiguous() if dy is not None else torch.zeros_like(dt)
        dh = (dh_last.transpose(1, 2).contiguous() if dh_last is not None else h0_sm.new_zeros(h0_sm.shape))
        d_dt, d_dtx, d_h0 = torch.empty_like(dt), torch.empty_like(dt), torch.empty_like(h0_sm)
        dB_part = dt.new_empty(batch, tiles, length, n)
        dC_part = torch.empty_like(dB_part)
        dA_part = dt.new_empty(batch, n, dim)
        lib.mq_train_scan_backward(batch, length, dim, n, _ptr(dy), _ptr(dh), _ptr(dt), _ptr(dtx), _ptr(A_t),
                                   _ptr(A2), _ptr(B), _ptr(C), _ptr(h0_sm), _ptr(history), _ptr(d_dt),
                                   _ptr(d_dtx), _ptr(d_h0), _ptr(dB_part), _ptr(dC_part), _ptr(dA_part))
        _return_history(history)
        return (d_dt, d_dtx, dA_part.sum(0).t(), dB_part.sum(1), dC_part.sum(1),
                d_h0.transpose(1, 2).contiguous())


def compiled_selective_scan(x, *args, **kwargs):
    """The SelectiveScan contract (mq_deploy.ops.selective_scan) on the compiled loop; float32 only."""
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"the compiled training scan runs float32 on the CPU, got {x.dtype} on {x.device}")
    return scan_with_recurrence(_CompiledScan.apply, x, *args, **kwargs)
