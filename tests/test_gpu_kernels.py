"""The CUDA kernels and the TensorRT plugins on a real GPU (skipped on machines without one, which
includes CI): the same checks scripts/gpu_verify.sh runs and reports, on fewer cases.

Needs the libraries built for the local GPU: MQ_KERNELS_LIB (libmq_kernels.so) and, for the plugin
tests, MQ_PLUGIN_HARNESS_LIB (libmq_plugin_harness.so); scripts/gpu_verify.sh sets both.
"""

from __future__ import annotations

import os
import pathlib

import pytest
from conftest import load_module

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

REPO = pathlib.Path(__file__).resolve().parents[1]




gpu_check = load_module("gpu_check", REPO / "plugins" / "selective_scan" / "gpu_check.py")
ssd_check = load_module("ssd_check", REPO / "plugins" / "ssd_scan" / "ssd_check.py")
plugin_checks = load_module("plugin_checks", REPO / "scripts" / "gpu_verify" / "plugin_checks.py")
model_check = load_module("model_check", REPO / "scripts" / "gpu_verify" / "model_check.py")
from mq_deploy.ops import cuda_kernels as mq_kernels_ctypes  # noqa: E402


def _library(env: str) -> pathlib.Path:
    path = os.environ.get(env)
    if not path or not pathlib.Path(path).exists():
        pytest.skip(f"{env} is not set to a built library (scripts/gpu_verify.sh sets it)")
    return pathlib.Path(path)


@pytest.fixture(scope="module")
def kernels():
    return mq_kernels_ctypes.MqKernels(_library("MQ_KERNELS_LIB"))


@pytest.fixture(scope="module")
def harness():
    return plugin_checks.Harness(_library("MQ_PLUGIN_HARNESS_LIB"))


@pytest.mark.parametrize("case", [gpu_check.ScanCase(1, 4096, 1000, "float16", reverse=True, initial_state=True),
                                  gpu_check.ScanCase(3, 333, 130, "bfloat16", dstate=64),
                                  gpu_check.ScanCase(2, 77, 96, "float32", gate=False, dstate=5)],
                         ids=lambda c: c.label())
def test_chunked_kernel_matches_reference(kernels, case):
    row = gpu_check.check_case(kernels, gpu_check.load_reference(), case, "chunked", seed=11)
    assert row["ok"], row


def test_chunked_scan_refuses_aliased_states(kernels):
    case = gpu_check.ScanCase(1, 4096, 256, "float16", initial_state=True)
    inputs = gpu_check.make_inputs(case, seed=3)
    state = inputs["initial_state"]
    with pytest.raises(mq_kernels_ctypes.MqKernelsError, match="invalid argument"):
        kernels.selective_scan(**inputs, final_state=state)


@pytest.mark.parametrize("case", plugin_checks.plugin_scan_cases(quick=True)[:4], ids=lambda c: c.label())
def test_selective_scan_plugin_matches_reference(harness, case):
    row = plugin_checks.check_scan_case(harness, gpu_check, gpu_check.load_reference(), case, seed=21)
    assert row["ok"], row


def test_selective_scan_plugin_survives_garbage(harness):
    case = plugin_checks.plugin_scan_cases(quick=True)[0]
    row = plugin_checks.check_scan_case(harness, gpu_check, None, case, seed=22, garbage=True)
    assert row["ok"], row


@pytest.mark.parametrize("n", [1, 12, 20, 28, 40, 1536, 2560, 14336])
def test_hadamard_plugin_matches_python_transform(harness, n):
    from mq_deploy.quant.transforms.hadamard import hadamard_matrix

    h = hadamard_matrix(n, torch.float64).cuda()
    for dtype in ("float32", "float16", "bfloat16"):
        row = plugin_checks.check_hadamard_size(harness, gpu_check, h, dtype, seed=n)
        assert row["ok"], row


def test_demo_model_perplexity_with_the_cuda_scan(kernels):
    for row in model_check.run(kernels, windows=8):
        assert row["ok"], row


# ---- SSD (Mamba-2) ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ssd_check.correctness_cases(quick=True)[:9], ids=lambda c: c.label())
@pytest.mark.parametrize("algorithm", ["chunked", "sequential", "mma"])
def test_ssd_kernels_match_reference(kernels, case, algorithm):
    if algorithm not in ssd_check.algorithms_for(case):
        pytest.skip("the tensor-core SSD scan takes 16-bit activations, head_dim <= 64 and dstate <= 128")
    row = ssd_check.check_case(kernels, case, algorithm, 17, gpu_check.normwise_error, gpu_check.Y_TOLERANCE,
                               gpu_check.STATE_TOLERANCE)
    assert row["ok"], row


def test_ssd_sequential_scan_updates_the_state_in_place(kernels):
    case = ssd_check.SsdCase(3, 1, 24, 64, 1, 128, "float16", initial_state=True)
    row = ssd_check.check_case(kernels, case, "sequential-inplace", 18, gpu_check.normwise_error,
                               gpu_check.Y_TOLERANCE, gpu_check.STATE_TOLERANCE)
    assert row["ok"], row


def test_ssd_chunked_scan_refuses_aliased_states(kernels):
    case = ssd_check.SsdCase(1, 4096, 4, 64, 1, 128, "float16", initial_state=True)
    inputs = ssd_check.make_inputs(case, seed=3)
    with pytest.raises(mq_kernels_ctypes.MqKernelsError, match="invalid argument"):
        kernels.ssd_scan(**inputs, final_state=inputs["initial_state"])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_ssd_plugin_matches_reference(harness, index):
    case = plugin_checks.plugin_ssd_cases(ssd_check, quick=True)[index]
    row = plugin_checks.check_ssd_case(harness, ssd_check, gpu_check, case, seed=23)
    assert row["ok"], row


def test_mamba2_demo_perplexity_with_the_cuda_ssd_scan(kernels):
    for row in model_check.run(kernels, windows=8, family="mamba2"):
        assert row["ok"], row
