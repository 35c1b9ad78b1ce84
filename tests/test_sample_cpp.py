"""samples/cpp (the C++ TensorRT generation and classification samples) without a GPU:

- always: their TensorRT-free helpers (samples/cpp/sample_utils.h: byte tokenizer, FP16/BF16 logits,
  argmax, I/O name and path rules, the .npy reader, top-k with softmax, class names) through a small
  driver compiled with the C++ compiler, compared with mq_deploy's Python ByteTokenizer and numpy;
- with MQ_TRT_INCLUDE_ROOT (a directory holding include/NvInfer.h, e.g. a checkout of
  github.com/NVIDIA/TensorRT): the sample's CMake project in headers-only mode with -Werror
  (compiles main.cpp, links nothing), plus the configure error without libnvinfer.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import subprocess

import numpy as np
import pytest

from mq_deploy.models.tokenizer import ByteTokenizer

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "cpp"
TRT_ENV = "MQ_TRT_INCLUDE_ROOT"

TEXTS = ["", "hello", "The history of Mamba", "héllo wörld", "naïve café — 10 €", "日本語のテキスト",
         "emoji 🦀🚀 and ZWJ 👩‍💻", "Ωμέγα, кириллица, עברית", "tab\tand\nnewline", "\x7f\x01 control"]


def _cxx() -> str:
    for name in ("g++", "c++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no C++ compiler (g++, c++ or clang++) on PATH")


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, timeout=300, **kwargs)
    assert result.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n"
                                    f"{result.stdout.decode(errors='replace')[-4000:]}\n"
                                    f"{result.stderr.decode(errors='replace')[-4000:]}")
    return result


@pytest.fixture(scope="module")
def utils_test(tmp_path_factory) -> pathlib.Path:
    """samples/cpp/tests/sample_utils_test.cpp, compiled once with warnings as errors."""
    exe = tmp_path_factory.mktemp("sample_cpp") / "sample_utils_test"
    _run([_cxx(), "-std=c++17", "-O1", "-Wall", "-Wextra", "-Wpedantic", "-Werror", f"-I{SAMPLE}",
          SAMPLE / "tests" / "sample_utils_test.cpp", "-o", exe])
    return exe


def _lines(exe, *args) -> list[str]:
    return _run([exe, *args]).stdout.decode("utf-8").split("\n")[:-1]


def test_selftest(utils_test):
    assert _lines(utils_test, "selftest") == ["ok"]


def test_byte_encode_matches_python_tokenizer(utils_test):
    tok = ByteTokenizer()
    out = _lines(utils_test, "encode", *[t.replace("\n", " ") for t in TEXTS])
    expected = [" ".join(map(str, tok.encode(t.replace("\n", " ")))) for t in TEXTS]
    assert out == expected
    assert any(int(i) >= 0x80 for i in out[3].split())  # non-ASCII bytes stay positive (signed char)


def _decode_cases() -> list[list[int]]:
    tok = ByteTokenizer()
    cases = [tok.encode(t) for t in TEXTS]
    cases += [[0xFF], [0xE2, 0x82], [0xE2, 0x82, 0x41], [0xF0, 0x80, 0x80, 0x80], [0xED, 0xA0, 0x80],
              [0xC0, 0xAF], [0xF4, 0x90, 0x80, 0x80], [0xF0, 0x9F, 0xA6], [0x80, 0xBF, 0xC2], [0xE0, 0x9F, 0x80],
              tok.encode("🦀")[:3] + tok.encode("ok"), [0xEF, 0xBB, 0xBF, 0x68]]
    rng = random.Random(0)
    pool = list(range(0x80, 0x100)) + [0x41, 0x7A, 0x20] * 8
    for _ in range(300):
        cases.append([rng.choice(pool) for _ in range(rng.randint(1, 10))])
    for _ in range(100):  # valid text cut at a random byte
        data = tok.encode(rng.choice(TEXTS[3:]))
        cases.append(data[:rng.randint(0, len(data))] + data[rng.randint(0, len(data)):])
    return cases


def test_byte_decode_matches_python_tokenizer(utils_test):
    """Valid UTF-8 round-trips; invalid sequences get the same U+FFFD replacements as CPython."""
    tok = ByteTokenizer()
    cases = _decode_cases()
    out = _lines(utils_test, "decode", *[",".join(map(str, c)) for c in cases])
    expected = [tok.decode(c).encode("utf-8").hex() for c in cases]
    mismatches = [(c, o, e) for c, o, e in zip(cases, out, expected) if o != e]
    assert len(out) == len(cases) and not mismatches, mismatches[:5]


def test_half_to_float_is_exact_for_every_value(utils_test, tmp_path):
    table = tmp_path / "half.bin"
    _run([utils_test, "half_table", table])
    got = np.fromfile(table, dtype="<u4")
    want = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
    np.testing.assert_array_equal(got, want)  # bit patterns: signed zeros, subnormals, inf, NaN payloads


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_argmax_matches_numpy(utils_test, tmp_path, dtype):
    rng = np.random.default_rng(1)
    rows = []
    for vocab in (256, 50_280):
        x = (rng.standard_normal((6, vocab)) * 8).astype(np.float32)
        x[1, [7, 200]] = 1e4            # tie: the first index wins
        x[2, :] = -np.inf
        x[2, 33] = -1e30 if dtype != "f16" else -6e4
        x[3, :] = 0.0
        x[4, -1] = 1e4                  # the last entry
        rows.append((vocab, x))
    for vocab, x in rows:
        if dtype == "f32":
            raw, values = x, x
        elif dtype == "f16":
            raw = x.astype(np.float16)
            values = raw.astype(np.float32)
        else:  # bf16: the upper half of the float32 bits (truncation; exact values are what count)
            raw = (x.view(np.uint32) >> 16).astype(np.uint16)
            values = (raw.astype(np.uint32) << 16).view(np.float32)
        path = tmp_path / f"{dtype}_{vocab}.bin"
        np.ascontiguousarray(raw).tofile(path)
        got = [int(v) for v in _lines(utils_test, "argmax", dtype, vocab, path)]
        assert got == np.argmax(values, axis=1).tolist()


def _decode_engine_path(path: str) -> str:
    """The Python side's rule (mq-deploy build writes the decode plan there), or the same rule inline."""
    try:
        from mq_deploy.trt.engine_files import decode_engine_path
    except ImportError:
        p = pathlib.PurePosixPath(path)
        return str(p.with_name(f"{p.stem}.decode{p.suffix or '.plan'}"))
    return str(decode_engine_path(path))


def test_decode_engine_path_and_state_names(utils_test):
    paths = ["out/model.plan", "model.plan", "/abs/dir.v2/model.engine", "noext", "out/my.model.plan"]
    want = [_decode_engine_path(p) for p in paths]
    assert want[0] == "out/model.decode.plan"
    assert _lines(utils_test, "decode_path", *paths) == want
    # docs/export.md: decode input <name>.<i> is fed by <name>_out.<i>
    assert _lines(utils_test, "state_name", "conv_state.0", "ssm_state.11") == ["conv_state_out.0", "ssm_state_out.11"]


# ---- the classifier's input, ranking and labels --------------------------------------------------------

def test_npy_reader_matches_numpy(utils_test, tmp_path):
    """What numpy.save writes (format 1.0, and 2.0 when asked), any rank, read back bit-exactly."""
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((3, 3, 8, 8)).astype(np.float32), np.arange(5, dtype=np.float32),
              np.zeros((0, 3, 4, 4), np.float32), np.array([np.inf, -0.0, np.nan, 1e-40], np.float32)]
    for i, array in enumerate(arrays):
        for version in ((1, 0), (2, 0)):
            path, raw = tmp_path / f"a{i}_{version[0]}.npy", tmp_path / f"a{i}_{version[0]}.bin"
            with open(path, "wb") as f:
                np.lib.format.write_array(f, array, version=version)
            assert _lines(utils_test, "npy", path, raw) == [" ".join(map(str, array.shape))]
            np.testing.assert_array_equal(np.fromfile(raw, "<u4"), array.view("<u4").ravel())


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 3), np.float64), "not little-endian float32"),
    (np.asfortranarray(np.zeros((2, 3), np.float32)), "Fortran order"),
    (np.zeros((2, 3), ">f4"), "not little-endian float32"),
    (None, "not a .npy file"),
    ("truncated", "truncated?"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", "not a tuple of non-negative integers"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999, 999999999999999), }", "too large"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3", "malformed"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape':", "no value for 'shape'"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': 5, }", "is not a tuple"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': , }", "is not a tuple"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,,3), }", "not a tuple of non-negative integers"),
])
def test_npy_reader_refuses_what_it_cannot_read(utils_test, tmp_path, array, message):
    path = tmp_path / "bad.npy"
    if array is None:
        path.write_bytes(b"P6 3 2 255\n" + bytes(18))
    elif isinstance(array, str) and array == "truncated":
        np.save(path, np.ones((4, 3, 8, 8), np.float32))
        path.write_bytes(path.read_bytes()[:-100])
    elif isinstance(array, str):                # a hand-made header (format 1.0), no data
        header = array.encode("latin1")
        path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
    else:
        np.save(path, array)
    r = subprocess.run([str(utils_test), "npy", str(path), str(tmp_path / "out.bin")], capture_output=True, timeout=60)
    assert r.returncode == 1 and message in r.stderr.decode(), r.stderr


def test_top_k_softmax_matches_numpy(utils_test, tmp_path):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 1000)) * 6).astype(np.float32)
    x[1, [10, 500, 20]] = 40.0            # ties: the lower index first
    x[2, 7] = np.nan                      # NaN ranks last
    x[3, :] = 0.0                         # all equal: 0, 1, 2, ... with 1/1000 each
    x[4, 999] = 200.0                     # a dominant last class
    path = tmp_path / "logits.bin"
    x.tofile(path)
    k = 6
    python_sample = _python_classify_sample()
    py_order, py_probabilities = python_sample.top_classes(x, k)
    for r, (row, line) in enumerate(zip(x, _lines(utils_test, "topk", k, x.shape[1], path))):
        got = [(int(a), float(b)) for a, b in (item.split(":") for item in line.split())]
        finite = np.where(np.isnan(row), -np.inf, row).astype(np.float64)
        order = np.argsort(-finite, kind="stable")[:k]
        e = np.exp(finite - finite.max())
        assert [i for i, _ in got] == order.tolist() == py_order[r].tolist()
        np.testing.assert_allclose([q for _, q in got], (e / e.sum())[order], rtol=1e-12)
        np.testing.assert_allclose(py_probabilities[r], (e / e.sum())[order], rtol=1e-12)
    # a NaN logit: last for both samples, with probability NaN, left out of the others' softmax
    row = np.array([[1.0, np.nan, 3.0, 2.0]], np.float32)
    row.tofile(path)
    got = [item.split(":") for item in _lines(utils_test, "topk", 4, 4, path)[0].split()]
    py_order, py_probabilities = python_sample.top_classes(row, 4)
    assert [int(i) for i, _ in got] == py_order[0].tolist() == [2, 3, 0, 1]
    e = np.exp(np.array([1.0, 3.0, 2.0]) - 3.0)
    want = [e[1] / e.sum(), e[2] / e.sum(), e[0] / e.sum(), np.nan]
    np.testing.assert_allclose([float(q) for _, q in got], want, rtol=1e-7)
    np.testing.assert_allclose(py_probabilities[0], want, rtol=1e-12)


def _python_classify_sample():
    """samples/python/classify.py as a module: the two samples must rank and normalize alike."""
    import importlib.util
    import sys

    folder = REPO / "samples" / "python"
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("classify_sample_for_cpp", folder / "classify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labels_are_one_per_line(utils_test, tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes("tench\r\ngoldfish\n\ngreat white shark, Carcharodon\nnaïve\n".encode())
    assert _lines(utils_test, "labels", path) == ["[tench]", "[goldfish]", "[]", "[great white shark, Carcharodon]",
                                                 "[naïve]"]


# ---- the TensorRT part, against headers only ---------------------------------------------------------

def _cuda_root() -> pathlib.Path | None:
    for candidate in (os.environ.get("CUDAToolkit_ROOT"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if candidate and (pathlib.Path(candidate) / "include" / "cuda_runtime_api.h").is_file():
            return pathlib.Path(candidate)
    return None


def test_sample_compiles_against_tensorrt_headers(tmp_path):
    root = os.environ.get(TRT_ENV)
    if not root:
        pytest.skip(f"set {TRT_ENV} to a directory with include/NvInfer.h (e.g. a checkout of "
                    "github.com/NVIDIA/TensorRT) to compile the sample against the TensorRT headers")
    if not (pathlib.Path(root) / "include" / "NvInfer.h").is_file():
        pytest.fail(f"{TRT_ENV}={root} has no include/NvInfer.h")
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    cuda = _cuda_root()
    if cuda is None:
        pytest.skip("no CUDA toolkit headers (cuda_runtime_api.h) under $CUDAToolkit_ROOT, $CUDA_HOME or /usr/local/cuda")
    common = [f"-DTensorRT_ROOT={root}", f"-DCUDAToolkit_ROOT={cuda}", f"-DCMAKE_CXX_COMPILER={_cxx()}"]

    build = tmp_path / "headers_only"
    configure = _run([cmake, "-S", SAMPLE, "-B", build, "-DMQ_TRT_HEADERS_ONLY=ON", "-DMQ_WERROR=ON", *common])
    assert b"headers-only build" in configure.stdout
    _run([cmake, "--build", build])
    assert list(build.rglob("main.cpp.o")), "main.cpp was not compiled"
    assert list(build.rglob("classify.cpp.o")), "classify.cpp was not compiled"

    # A real build without libnvinfer stops at configure time with the fix in the message.
    result = subprocess.run([cmake, "-S", SAMPLE, "-B", tmp_path / "no_lib", *common], capture_output=True, timeout=300)
    if result.returncode != 0:  # (where libnvinfer is installed, this configure succeeds instead)
        assert b"MQ_TRT_HEADERS_ONLY" in result.stderr
