"""CPU checks of plugins/: the Hadamard base matrices, the CMake build (C++ unit tests always, CUDA
kernels when nvcc is present), the C API's argument checks through ctypes, and the GPU script's
CPU-side parts. Needs numpy; cmake and a C++ compiler for the build tests; nvcc for the kernel ones.

The build compiles for one architecture (sm_80) to keep CI short; the full 80;86;89;90 build is
the CMake default.
"""

from __future__ import annotations

import ctypes
import math
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from conftest import load_module

REPO = pathlib.Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"
CI_CUDA_ARCH = "80"




hadamard_bases = load_module("hadamard_bases", PLUGINS / "hadamard" / "hadamard_bases.py")


# ---- Hadamard base matrices (the one shared definition) ----------------------------------------------
# Parsing, orthogonality and the size rule are tested with the package (tests/test_quant_hadamard.py).

def test_hadamard_bases_file_is_the_documented_construction():
    assert hadamard_bases.BASES_FILE.is_file()
    text = hadamard_bases.BASES_FILE.read_text(encoding="ascii")
    assert text == hadamard_bases.format_bases(hadamard_bases.construct_bases())
    for m, h in hadamard_bases.construct_bases().items():
        np.testing.assert_array_equal(h @ h.T, m * np.eye(m, dtype=np.int64), err_msg=f"order {m}")


# ---- native build -------------------------------------------------------------------------------------

def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    default = pathlib.Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.exists() else None


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def native_build(tmp_path_factory):
    """Configures and builds everything once (unit tests; mq_kernels when nvcc is found)."""
    cmake = shutil.which("cmake")
    if cmake is None or shutil.which("c++") is None:
        pytest.skip("cmake or a C++ compiler is not installed")
    build = tmp_path_factory.mktemp("native_build")
    cmd = [cmake, "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DMQ_WERROR=ON",
           f"-DCMAKE_CUDA_ARCHITECTURES={CI_CUDA_ARCH}"]
    nvcc = _nvcc()
    if nvcc:
        cmd.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    configure = _run(cmd)
    _run([cmake, "--build", str(build), "-j", str(max(2, os.cpu_count() or 2))])
    return {"dir": build, "configure_log": configure.stdout, "has_cuda": nvcc is not None}


def _verdicts(log: str, target: str) -> list[str]:
    """What configure said about one library: the text after '-- <target>: ' on each line."""
    return [line.split(f"-- {target}: ", 1)[1] for line in log.splitlines() if f"-- {target}: " in line]


def test_configure_says_what_it_builds(native_build):
    """Configure's line about each library is one verdict, and the build agrees with it: a library
    said to be built exists after the build, a SKIPPED one does not, and the reason given is true of
    this machine (no nvcc / no TensorRT headers where it says so)."""
    log, build = native_build["configure_log"], native_build["dir"]
    built = {name: any(build.rglob(f"lib{name}.so")) for name in ("mq_kernels", "mq_plugins")}
    skips = {}
    for name in built:
        verdicts = _verdicts(log, name)
        skipped = [v for v in verdicts if v.startswith("SKIPPED")]
        assert verdicts and len(skipped) <= 1, (name, verdicts)
        assert bool(skipped) != built[name], f"configure said {verdicts} about {name}; built: {built[name]}"
        skips[name] = skipped[0] if skipped else None
    assert built["mq_kernels"] == native_build["has_cuda"]
    if not native_build["has_cuda"]:
        assert "no CUDA compiler" in skips["mq_kernels"] and "needs the CUDA kernels" in skips["mq_plugins"]
    elif skips["mq_plugins"] is not None and "TensorRT headers not found" in skips["mq_plugins"]:
        import sysconfig
        site = pathlib.Path(sysconfig.get_paths()["purelib"])
        hints = [pathlib.Path("/usr/local/tensorrt/include"), pathlib.Path("/usr/include/x86_64-linux-gnu"),
                 site / "tensorrt" / "include", site / "tensorrt_libs" / "include"]
        assert not any((h / "NvInfer.h").is_file() for h in hints), "NvInfer.h is there, yet configure skipped"
    else:
        assert built["mq_plugins"] or "libnvinfer not found" in skips["mq_plugins"], skips


def test_cpp_unit_tests_pass(native_build):
    exe = native_build["dir"] / "plugins" / "mq_plugin_unit_tests"
    result = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
    assert "[PASS] scan_attributes_serialization_round_trip" in result.stdout
    assert "[PASS] chunked_scan_matches_sequential_reference" in result.stdout
    for name in ("onepass_model_matches_sequential_reference", "onepass_fast_softplus_and_gate_accuracy",
                 "onepass_combine_is_the_affine_composition"):
        assert f"[PASS] {name}" in result.stdout


@pytest.fixture(scope="module")
def kernels_lib(native_build):
    if not native_build["has_cuda"]:
        pytest.skip("nvcc not found: the CUDA kernels are not built on this machine")
    path = native_build["dir"] / "plugins" / "libmq_kernels.so"
    assert path.exists(), "mq_kernels was not built although nvcc is present"
    return path


def test_kernels_export_the_c_api(kernels_lib):
    lib = ctypes.CDLL(str(kernels_lib))  # loading needs no GPU: nothing is launched
    for name in ("mq_selective_scan", "mq_selective_scan_sequential", "mq_selective_scan_onepass",
                 "mq_selective_state_update",
                 "mq_selective_scan_workspace_size", "mq_selective_scan_workspace_bound",
                 "mq_hadamard_transform", "mq_hadamard_quantize", "mq_hadamard_base_order", "mq_status_string",
                 "mq_kernels_version",
                 "mq_ssd_scan", "mq_ssd_scan_sequential", "mq_ssd_scan_workspace_size", "mq_ssd_scan_workspace_bound",
                 "mq_ssd_scan_mma", "mq_ssd_scan_mma_workspace_size"):
        assert hasattr(lib, name), name
    result = subprocess.run(["nm", "-D", "--defined-only", str(kernels_lib)], capture_output=True, text=True)
    if result.returncode == 0:  # only the C API is exported (hidden visibility elsewhere)
        exported = {line.split()[-1] for line in result.stdout.splitlines() if " T " in line}
        assert exported and all(sym.startswith("mq_") for sym in exported), exported


def test_kernels_c_api_checks_arguments_without_launching(kernels_lib):
    from mq_deploy.ops import cuda_kernels as mq

    lib = mq.MqKernels(kernels_lib)
    raw = lib._lib
    assert lib.version == "0.1.0"
    assert lib.hadamard_base_order(1536) == 12 and lib.hadamard_base_order(1000) == 0
    # batch 1, D 1536, L 2048 is split into chunks and needs workspace; a large batch is not split.
    need = lib.workspace_size(1, 2048, 1536, 16)
    assert 0 < need <= raw.mq_selective_scan_workspace_bound(8, 8192, 1536, 16)
    assert lib.workspace_size(64, 2048, 5120, 16) == 0

    def status(**fields):
        args = mq.ScanArgs(**fields)
        return raw.mq_selective_scan(ctypes.byref(args), None)

    dummy = dict(x=16, delta=16, A=16, B=16, C=16, y=16)  # never dereferenced: checks fail first
    assert status(dtype=1, batch=0, seqlen=5, dim=8, dstate=16) == 0  # empty batch: nothing to do
    assert status(dtype=1, batch=1, seqlen=5, dim=8, dstate=65, **dummy) == 2  # N > 64: unsupported
    assert status(dtype=9, batch=1, seqlen=5, dim=8, dstate=16, **dummy) == 1  # bad dtype
    assert status(dtype=0, batch=1, seqlen=5, dim=8, dstate=16, delta_softplus=2, **dummy) == 1
    assert status(dtype=0, batch=1, seqlen=5, dim=8, dstate=16, x=16, A=16) == 1  # missing inputs
    assert status(dtype=0, batch=1, seqlen=5, dim=8, dstate=16, gate_scale=16, **dummy) == 1  # scale, no gate
    assert status(dtype=0, batch=1, seqlen=4096, dim=8, dstate=16, **dummy) == 3  # workspace missing
    assert status(dtype=0, batch=1, seqlen=4096, dim=8, dstate=16, workspace=8, workspace_bytes=1 << 30,
                  **dummy) == 3  # misaligned
    # the chunked scan refuses overlapping states (its chunks run concurrently; see mq_kernels.h)
    ws = dict(workspace=1 << 12, workspace_bytes=1 << 30)
    assert status(dtype=0, batch=1, seqlen=5, dim=8, dstate=16, initial_state=4096, final_state=4096, **ws,
                  **dummy) == 1
    assert status(dtype=0, batch=1, seqlen=5, dim=8, dstate=16, initial_state=4096, final_state=4096 + 4 * 127,
                  **ws, **dummy) == 1  # overlap by one float
    onepass = raw.mq_selective_scan_onepass
    assert onepass(ctypes.byref(mq.ScanArgs(dtype=1, batch=1, seqlen=5, dim=8, dstate=65, **dummy)), None) == 2
    assert onepass(ctypes.byref(mq.ScanArgs(dtype=9, batch=1, seqlen=5, dim=8, dstate=16, **dummy)), None) == 1
    assert onepass(ctypes.byref(mq.ScanArgs(dtype=0, batch=0, seqlen=5, dim=8, dstate=16)), None) == 0
    assert onepass(ctypes.byref(mq.ScanArgs(dtype=0, batch=1, seqlen=5, dim=8, dstate=16, x=16, A=16)), None) == 1
    # 32-bit offsets inside a batch row: seqlen * dim beyond 2^31 is refused before any launch
    assert onepass(ctypes.byref(mq.ScanArgs(dtype=1, batch=1, seqlen=1 << 20, dim=1 << 12, dstate=16, **dummy)),
                   None) == 2
    decode = mq.ScanArgs(dtype=0, batch=1, seqlen=2, dim=8, dstate=16, **dummy)
    assert raw.mq_selective_state_update(ctypes.byref(decode), None) == 1  # decode is one token
    assert raw.mq_hadamard_transform(None, None, None, 4, 1000, 0, None) == 2
    assert raw.mq_hadamard_transform(None, None, None, 0, 1536, 0, None) == 0
    # the quantizing variant: same size rule; a scale is required and the INT8 output is never x
    assert raw.mq_hadamard_quantize(16, None, 16, 32, 4, 1000, 0, None) == 2
    assert raw.mq_hadamard_quantize(None, None, None, None, 0, 1536, 0, None) == 0
    assert raw.mq_hadamard_quantize(16, None, None, 32, 4, 1536, 0, None) == 1        # no scale
    assert raw.mq_hadamard_quantize(16, None, 16, 16, 4, 1536, 0, None) == 1          # y == x
    assert raw.mq_hadamard_quantize(16, None, 16, 32, 4, 1536, 9, None) == 1          # bad dtype
    assert raw.mq_status_string(3) == b"workspace missing, too small or not 16-byte aligned"


def test_ssd_c_api_checks_arguments_without_launching(kernels_lib):
    from mq_deploy.ops import cuda_kernels as mq

    raw = mq.MqKernels(kernels_lib)._lib
    # mamba2-130m's mixer at batch 1 and 2048 tokens is split into chunks; the bound covers it
    need = raw.mq_ssd_scan_workspace_size(1, 2048, 24, 64, 128)
    assert 0 < need <= raw.mq_ssd_scan_workspace_bound(8, 8192, 24, 64, 128)
    assert raw.mq_ssd_scan_workspace_size(64, 2048, 80, 64, 128) == 0       # enough blocks without chunks
    assert raw.mq_ssd_scan_workspace_size(1, 2048, 24, 64, 257) == 0        # unsupported N

    def status(fn="mq_ssd_scan", **fields):
        args = mq.SsdArgs(**{"dt_max": float("inf"), "dt_softplus": 1, "n_groups": 1, **fields})
        return getattr(raw, fn)(ctypes.byref(args), None)

    dummy = dict(x=16, dt=16, A=16, B=16, C=16, y=16)  # never dereferenced: checks fail first
    shape = dict(batch=1, seqlen=5, heads=6, head_dim=8, dstate=16)
    assert status(dtype=1, **{**shape, "batch": 0}) == 0                      # empty batch: nothing to do
    assert status(dtype=1, **{**shape, "dstate": 257}, **dummy) == 2          # N > 256: unsupported
    assert status(dtype=9, **shape, **dummy) == 1                             # bad dtype
    assert status(dtype=0, **shape, n_groups=4, **dummy) == 1                 # 6 heads in 4 groups
    assert status(dtype=0, **shape, dt_min=0.5, dt_max=0.1, **dummy) == 1     # limits swapped
    assert status(dtype=0, **shape, dt_min=float("nan"), **dummy) == 1
    assert status(dtype=0, **shape, dt_softplus=2, **dummy) == 1
    assert status(dtype=0, **shape, x=16, A=16) == 1                          # missing inputs
    assert status(dtype=0, **{**shape, "seqlen": 2048, "heads": 24, "head_dim": 64, "dstate": 128},
                  **dummy) == 3                                               # workspace missing
    # the chunked scan refuses overlapping states; the sequential one updates in place
    ws = dict(workspace=1 << 12, workspace_bytes=1 << 30)
    long = {**shape, "seqlen": 4096, "heads": 1}
    assert status(dtype=0, **long, initial_state=1 << 20, final_state=1 << 20, **ws, **dummy) == 1
    assert status(dtype=0, **shape, initial_state=1 << 20, final_state=1 << 20, **dummy) == 1     # one chunk too
    assert status("mq_ssd_scan_sequential", dtype=0, **shape, initial_state=1 << 20, final_state=(1 << 20) + 64,
                  **dummy) == 1                                               # a partial overlap, even in place
    assert status("mq_ssd_scan_sequential", dtype=0, **{**shape, "seqlen": 0}, A=16, initial_state=1 << 20,
                  final_state=None) == 0                                      # no tokens, no state out: no launch
    # the tensor-core path: 16-bit activations, head_dim <= 64, dstate <= 128 (refused before any device
    # query, so on a machine without a GPU too); its workspace is one float state per 256 tokens
    assert raw.mq_ssd_scan_mma_workspace_size(1, 2048, 24, 64, 128) == 4 * (8 * 24 * 64 * 128 + 8 * 24)
    assert raw.mq_ssd_scan_mma_workspace_size(2, 257, 3, 50, 5) == 4 * (2 * 2 * 3 * 50 * 5 + 2 * 2 * 3)
    assert raw.mq_ssd_scan_mma_workspace_size(1, 2048, 24, 65, 128) == 0     # P > 64: unsupported
    assert raw.mq_ssd_scan_mma_workspace_size(1, 2048, 24, 64, 129) == 0     # N > 128
    assert status("mq_ssd_scan_mma", dtype=0, **shape, **dummy) == 2           # float32: unsupported
    assert status("mq_ssd_scan_mma", dtype=1, **{**shape, "head_dim": 65}, **dummy) == 2
    assert status("mq_ssd_scan_mma", dtype=2, **{**shape, "dstate": 129}, **dummy) == 2
    assert status("mq_ssd_scan_mma", dtype=0, **shape, n_groups=4, **dummy) == 1   # bad arguments before support
    assert status("mq_ssd_scan_mma", dtype=1, **{**shape, "batch": 0}) == 0
    # later tiles read x rows that earlier tiles write as y: no aliasing; chunks run concurrently: no
    # overlapping states (both refused before the device is asked, so here too)
    assert status("mq_ssd_scan_mma", dtype=1, **shape, **{**dummy, "y": 16 + 64}) == 1
    assert status("mq_ssd_scan_mma", dtype=2, **shape, initial_state=1 << 20, final_state=1 << 20,
                  **{**dummy, "y": 1 << 16}) == 1


def test_c_api_header_is_c_and_matches_ctypes(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "layout.c"
    src.write_text('#include "mq_kernels.h"\n#include <stddef.h>\n#include <stdio.h>\n'
                   'int main(void) { printf("%zu %zu %zu %zu %zu %zu %zu", sizeof(mq_selective_scan_args), '
                   'offsetof(mq_selective_scan_args, x), offsetof(mq_selective_scan_args, workspace_bytes), '
                   'sizeof(mq_ssd_scan_args), offsetof(mq_ssd_scan_args, dt_max), offsetof(mq_ssd_scan_args, x), '
                   'offsetof(mq_ssd_scan_args, workspace_bytes)); return 0; }\n')
    exe = tmp_path / "layout"
    _run([cc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", f"-I{PLUGINS / 'selective_scan'}",
          str(src), "-o", str(exe)])
    size, x_offset, ws_offset, *ssd = map(int, _run([str(exe)]).stdout.split())
    from mq_deploy.ops import cuda_kernels as mq

    assert (ctypes.sizeof(mq.ScanArgs), mq.ScanArgs.x.offset, mq.ScanArgs.workspace_bytes.offset) == (
        size, x_offset, ws_offset)
    assert [ctypes.sizeof(mq.SsdArgs), mq.SsdArgs.dt_max.offset, mq.SsdArgs.x.offset,
            mq.SsdArgs.workspace_bytes.offset] == ssd


# ---- the GPU script, as far as a CPU can check it --------------------------------------------------------

def test_gpu_check_shell_script_parses():
    _run(["bash", "-n", str(PLUGINS / "selective_scan" / "gpu_check.sh")])


def test_gpu_check_driver_plans_the_issue_shapes():
    gpu_check = load_module("gpu_check", PLUGINS / "selective_scan" / "gpu_check.py")
    cases = gpu_check.correctness_cases()
    assert {c.batch for c in cases} >= {1, 8}
    assert {c.seqlen for c in cases} >= {1, 7, 2048, 8192}
    assert {c.dim for c in cases} >= {1536, 2560} and any(c.dim % 128 for c in cases)
    assert {c.dtype for c in cases} == {"float32", "float16", "bfloat16"}
    for flag in ("reverse", "gate", "initial_state"):
        assert {getattr(c, flag) for c in cases} == {False, True}
    assert any(c.batch == 1 and c.seqlen == 2048 and c.dim == 1536 for c in gpu_check.timing_cases())
    assert gpu_check.main(["--list-cases", "--quick"]) == 0
    # issue 15: every N the one-pass kernel distinguishes, in the 16-bit dtypes, over several chunks
    onepass_n = {c.dstate for c in cases if c.dtype == "float16" and c.seqlen > 1024}
    assert onepass_n >= {4, 5, 16, 32, 64}
    assert any(c.dim % 4 for c in cases) and any(c.dstate % 2 for c in cases if c.seqlen > 512)


def test_gpu_check_timing_grid_is_issue_15s():
    """One row per (implementation, B, L, D, N, dtype) over the acceptance grid, with `vs floor`."""
    gpu_check = load_module("gpu_check", PLUGINS / "selective_scan" / "gpu_check.py")
    grid = {(c.batch, c.seqlen, c.dim, c.dstate, c.dtype) for c in gpu_check.timing_cases()}
    assert grid == {(b, l, d, n, t) for b in (1, 8) for l in (128, 2048, 8192) for d in (1536, 5120)
                    for n in (16, 64) for t in ("float16", "bfloat16")}
    assert len(gpu_check.timing_cases()) == len(grid) == 48
    assert gpu_check.ALGORITHMS == ("onepass", "chunked", "sequential")
    headers = [h for h, _, _ in gpu_check.TIMING_COLUMNS]
    assert "vs floor" in headers and {"impl", "dtype", "B", "L", "D", "N"} <= set(headers)
    quick = {(c.batch, c.seqlen, c.dim) for c in gpu_check.timing_cases(quick=True)}
    assert quick == {(1, 2048, 1536), (1, 2048, 5120)}
    assert gpu_check.main(["--list-cases", "--algorithms", "onepass"]) == 0
    with pytest.raises(SystemExit):
        gpu_check.main(["--list-cases", "--algorithms", "fastest"])


@pytest.mark.parametrize("case_args", [
    dict(batch=2, seqlen=9, dim=5, dtype="float32", reverse=True, gate=True, initial_state=True),
    dict(batch=3, seqlen=4, dim=6, dtype="bfloat16", reverse=False, gate=False, initial_state=False, dstate=5),
    dict(batch=1, seqlen=6, dim=4, dtype="float16", gate=True, delta_softplus=False),
])
def test_gpu_check_reference_plumbing_on_cpu(case_args, monkeypatch):
    """Inputs and batch slicing of the GPU check give what the reference gives on the whole batch,
    and agree with the fused scan (an independent form) in float64."""
    torch = pytest.importorskip("torch")
    from mq_deploy.ops.selective_scan import selective_scan_fused
    gpu_check = load_module("gpu_check", PLUGINS / "selective_scan" / "gpu_check.py")
    case = gpu_check.ScanCase(**case_args)
    inputs = gpu_check.make_inputs(case, seed=5, device="cpu")
    ref = gpu_check.load_reference()
    y_ref, s_ref = gpu_check.reference(ref, inputs, case)
    f64 = {k: (v.double() if v is not None else None) for k, v in inputs.items()}
    y_fast, s_fast = selective_scan_fused(**f64, delta_softplus=case.delta_softplus, reverse=case.reverse,
                                          return_final_state=True)
    assert y_ref.dtype == torch.float64 and y_ref.shape == (case.batch, case.seqlen, case.dim)
    assert gpu_check.normwise_error(y_fast, y_ref) < 1e-12 and gpu_check.normwise_error(s_fast, s_ref) < 1e-12
    monkeypatch.setattr(gpu_check, "REFERENCE_SLICE_ELEMENTS", 0)  # one batch element at a time
    y_sliced, s_sliced = gpu_check.reference(ref, inputs, case)
    assert gpu_check.normwise_error(y_sliced, y_ref) < 1e-12 and gpu_check.normwise_error(s_sliced, s_ref) < 1e-12
    assert gpu_check.normwise_error(y_ref.clone().fill_(float("nan")), y_ref) == float("inf")


# ---- the SSD (Mamba-2) GPU check, as far as a CPU can check it ------------------------------------------

ssd_check = load_module("ssd_check", PLUGINS / "ssd_scan" / "ssd_check.py")


def test_ssd_check_plans_cases_that_reach_every_kernel_path():
    cases = ssd_check.correctness_cases()
    assert {c.dtype for c in cases} == set(ssd_check.DTYPES)
    assert {c.dtype for c in cases[:3]} == set(ssd_check.DTYPES)       # any prefix the GPU tests take
    lanes = {min(s for s in (1, 2, 4, 8, 16, 32) if 8 * s >= c.dstate) for c in cases}
    assert lanes == {1, 2, 4, 8, 16, 32}                               # every kernel instantiation
    assert any(not c.dt_softplus for c in cases) and any(not c.skip for c in cases)
    assert any(c.head_dim % 16 for c in cases) and any(c.groups > 1 for c in cases)
    assert any(c.initial_state for c in cases) and any(c.dt_limit for c in cases)
    assert {c.seqlen for c in cases} >= {1, 7, 2048, 8192}
    # the tensor-core kernel's share: padded P and N, partial and whole 256-token chunks, groups, limits
    mma = [c for c in cases if "mma" in ssd_check.algorithms_for(c)]
    assert {c.dtype for c in mma} == {"float16", "bfloat16"}
    assert any(c.head_dim % 16 for c in mma) and any(c.dstate % 16 for c in mma)
    assert any(c.seqlen % 256 and c.seqlen > 256 for c in mma) and any(c.seqlen % 256 == 0 for c in mma)
    assert any(c.groups > 1 for c in mma) and any(c.initial_state for c in mma) and any(c.dt_limit for c in mma)
    assert not ssd_check.mma_supports(ssd_check.SsdCase(1, 64, 2, 64, 1, 256, "float16"))
    assert all("mma" in ssd_check.algorithms_for(c) for c in ssd_check.timing_cases())
    grid = {(c.batch, c.seqlen, c.heads, c.dtype) for c in ssd_check.timing_cases()}
    assert grid == {(b, l, h, t) for b in (1, 8) for l in (2048, 8192) for h in (24, 48, 80)
                    for t in ("float16", "bfloat16")}


@pytest.mark.parametrize("case", [ssd_check.SsdCase(2, 7, 6, 8, 3, 5, "float32", initial_state=True),
                                  ssd_check.SsdCase(1, 130, 4, 8, 2, 16, "bfloat16", dt_limit=(0.01, 0.2)),
                                  ssd_check.SsdCase(2, 40, 6, 16, 2, 24, "float16", dt_softplus=False,
                                                    dt_limit=(-math.inf, math.inf), skip=False)],
                         ids=lambda c: c.label())
def test_ssd_check_reference_plumbing_on_cpu(case):
    """The check's inputs and float64 reference are the model's scan on the same numbers (checked
    against the other form of the scan), and the error measure sees a wrong answer."""
    torch = pytest.importorskip("torch")
    from mq_deploy.ops.ssd_scan import ssd_scan_chunked, ssd_scan_ref
    gpu_check = load_module("gpu_check", PLUGINS / "selective_scan" / "gpu_check.py")
    inputs = ssd_check.make_inputs(case, seed=4, device="cpu")
    assert inputs["x"].dtype == getattr(torch, case.dtype) and inputs["A"].dtype == torch.float32
    assert (inputs["D"] is None) == (not case.skip)
    y, state = ssd_check.reference(inputs, case)
    f64 = {k: None if v is None else v.double() for k, v in inputs.items()}
    other = ssd_scan_chunked if case.seqlen <= 64 else ssd_scan_ref      # reference() uses the other one
    y_ref, state_ref = other(**f64, dt_softplus=case.dt_softplus, dt_limit=case.dt_limit)
    assert y.dtype == torch.float64 and y.shape == (case.batch, case.seqlen, case.heads, case.head_dim)
    assert gpu_check.normwise_error(y, y_ref) < 1e-12 and gpu_check.normwise_error(state, state_ref) < 1e-12
    assert 0 < state.abs().max() < 1e3                                   # decaying, not exploding
    assert gpu_check.normwise_error(y + 1e-3 * y.abs().max(), y_ref) > 5e-4
