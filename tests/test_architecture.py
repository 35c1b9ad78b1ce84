"""The layering the design promises, checked on the code itself (issue 11):

- modules import downward only: cli -> validate/bench/trt -> export -> deploy -> quant -> models/ops;
  trt/ and bench/ import nothing from export/ or validate/ (a machine with only TensorRT builds);
- one manifest reader (deploy/manifest.py opens manifest.json; export/ writes it), one naming rule,
  one session class per backend;
- an export set copied elsewhere validates and benches from another working directory.
"""

from __future__ import annotations

import ast
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mq_deploy"

# layer of each subpackage (higher may import lower, never the reverse); top-level modules are
# utilities every layer may use, except the ones listed as entry points
LAYERS = {"cli": 6, "demo": 6, "api": 6, "doctor": 6,
          "validate": 5, "bench": 5, "trt": 5, "reports": 5, "lm_eval": 5,
          "export": 4, "deploy": 3, "quant": 2, "eval": 2, "data": 1, "models": 0, "ops": 0}


def _imports(path: pathlib.Path) -> list[str]:
    """mq_deploy modules a file imports (absolute names), including imports inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("mq_deploy"):
                found += [name] + [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("mq_deploy")]
    return found


def _layer(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    key = parts[1]
    return (key, LAYERS[key]) if key in LAYERS else None


def test_modules_import_downward_only():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        me = _layer(".".join(path.relative_to(REPO).with_suffix("").parts))
        if me is None:
            continue
        for name in _imports(path):
            other = _layer(name)
            if other is not None and other[0] != me[0] and other[1] > me[1]:
                upward.append(f"{path.relative_to(REPO)} imports {name}")
            if other is not None and other[0] != me[0] and other[1] == me[1] and me[0] in ("trt", "bench") \
                    and other[0] in ("validate", "export"):
                upward.append(f"{path.relative_to(REPO)} imports {name}")
    assert not upward, "\n".join(sorted(set(upward)))


def test_trt_and_bench_import_nothing_from_export_or_validate():
    offenders = [f"{p.relative_to(REPO)}: {n}" for sub in ("trt", "bench") for p in (PACKAGE / sub).rglob("*.py")
                 for n in _imports(p) if n.startswith(("mq_deploy.export", "mq_deploy.validate"))]
    assert not offenders, offenders
    # and at run time: importing them pulls in neither export nor validate (nor onnx for trt's build request)
    code = ("import sys, mq_deploy.trt.build_request, mq_deploy.trt.session, mq_deploy.bench.benchmark; "
            "bad = sorted(m for m in sys.modules if m.startswith(('mq_deploy.export', 'mq_deploy.validate'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_manifest_reader_and_one_naming_rule():
    """Only deploy/manifest.py reads manifest.json and only deploy/naming.py spells the derived file
    names; export/manifest.py writes it (the sample reads it by the documented contract)."""
    readers, namers = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(PACKAGE).as_posix()
        reads = any("json.load" in line and "manifest" in line.lower() for line in text.splitlines())
        if reads and rel != "deploy/manifest.py":
            readers.append(rel)
        derived = (".decode{" in text or '.data"' in text
                   or any("plan" in line and '.json"' in line for line in text.splitlines()))
        if derived and rel != "deploy/naming.py":
            namers.append(rel)
    assert readers == [] and namers == [], (readers, namers)


def test_one_session_class_per_backend():
    import mq_deploy.deploy.onnxruntime_session  # noqa: F401
    import mq_deploy.deploy.torch_session  # noqa: F401
    import mq_deploy.trt.session  # noqa: F401
    from mq_deploy.deploy.session import Session

    def leaves(cls):
        subs = cls.__subclasses__()
        return [c for s in subs for c in ([s] if not s.__subclasses__() else leaves(s))]
    assert sorted(c.__name__ for c in leaves(Session)) == ["OnnxruntimeSession", "TensorRTSession", "TorchSession"]


@pytest.fixture(scope="module")
def copied_export(tmp_path_factory):
    """A quantized export set, then the set and its artifact copied together to another place."""
    pytest.importorskip("onnxruntime")
    import torch

    from mq_deploy.export import export_onnx
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    from mq_deploy.quant.artifact import save_quantized
    from mq_deploy.quant.config import QuantConfig
    from mq_deploy.quant.quantize import quantize
    root = tmp_path_factory.mktemp("made_here")
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=48, num_hidden_layers=2, state_size=8,
                                                   time_step_rank=12, tokenizer="bytes")), seed=9).eval()
    save_model(model, root / "fp")
    calib = torch.randint(0, 256, (4, 48), generator=torch.Generator().manual_seed(0))
    save_quantized(quantize(model, "mambaquant", calib, QuantConfig(), progress=False), root / "work" / "q",
                   source_dir=root / "fp")
    export_onnx(root / "work" / "q", root / "work" / "onnx" / "model.onnx", precision="fp32")
    elsewhere = tmp_path_factory.mktemp("copied") / "work"
    shutil.copytree(root / "work", elsewhere)
    shutil.rmtree(root / "work")                         # the originals are gone: only the copy remains
    return elsewhere


def test_copied_export_validates_and_benches_from_another_directory(copied_export, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("Mamba runs a selective scan over the tokens of a sequence. " * 40)
    env = {**os.environ, "MQ_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    onnx_path = copied_export / "onnx" / "model.onnx"
    validate = subprocess.run([sys.executable, "-m", "mq_deploy", "validate", "--onnx", str(onnx_path), "--text",
                               str(text), "--samples", "2", "--seq-len", "64"], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "validation passed" in validate.stdout
    bench = subprocess.run([sys.executable, "-m", "mq_deploy", "bench", "--onnx", str(onnx_path), "--lengths", "8",
                            "--iterations", "2", "--warmup", "0", "--decode-steps", "2", "--out",
                            str(tmp_path / "bench")], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    assert (tmp_path / "bench.json").is_file()
