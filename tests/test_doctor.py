"""doctor tells the truth: a stage is ready exactly when what it imports imports. Checked in
subprocesses where a package is made unimportable (sys.modules[name] = None), and `build` with only
what the [trt] extra installs: onnx and ml_dtypes gone, it reaches the one-line TensorRT message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

STAGES = ["load / eval / quantize / demo", "models with their own tokenizer.json", "ONNX export and check",
          "validate / bench on ONNX Runtime", "plots (inspect, bench)", "lm-eval (zero-shot tasks)",
          "compare-recipes' ModelOpt peers",
          "TensorRT build", "TensorRT validate / bench"]


def run_without(blocked: list[str], argv: list[str]) -> subprocess.CompletedProcess:
    """`mq-deploy argv` in a fresh interpreter in which the `blocked` packages cannot be imported."""
    code = textwrap.dedent(f"""
        import sys
        for name in {blocked!r}:
            sys.modules[name] = None        # `import name` now raises ImportError
        from mq_deploy.cli import main
        sys.exit(main({argv!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MQ_PROGRESS": "0"})


def doctor_stages(blocked: list[str]) -> dict:
    out = run_without(blocked, ["doctor", "--json"])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["stages"]


def test_doctor_lists_the_stages_and_nothing_that_does_not_exist():
    out = run_without([], ["doctor", "--json"])
    stages = json.loads(out.stdout)["stages"]
    assert list(stages) == STAGES
    assert stages["load / eval / quantize / demo"]["ok"]
    for gone in ("graphsurgeon", "cuda-python"):
        assert gone not in out.stdout


def test_a_missing_transitive_dependency_makes_export_not_ready():
    """ml_dtypes: onnx itself and our INT4 weights import it; doctor used to say export was ready."""
    stages = doctor_stages(["ml_dtypes"])
    export = stages["ONNX export and check"]
    assert not export["ok"] and "ml_dtypes" in export["message"] and "pip install -e '.[onnx]'" in export["message"]
    assert stages["load / eval / quantize / demo"]["ok"]


def test_each_stage_needs_exactly_its_own_imports():
    stages = doctor_stages(["polygraphy", "matplotlib"])
    assert stages["ONNX export and check"]["ok"]                      # export does not import polygraphy
    assert not stages["validate / bench on ONNX Runtime"]["ok"] and "polygraphy" in \
        stages["validate / bench on ONNX Runtime"]["message"]
    assert not stages["plots (inspect, bench)"]["ok"]
    stages = doctor_stages(["onnxruntime"])
    assert not stages["ONNX export and check"]["ok"]                  # the export's probe run needs it


def test_the_stage_verdict_matches_the_verb(tmp_path):
    """Where doctor says export is not ready, export fails at once with one line (not a traceback)."""
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.loading import save_model
    save_model(MambaLM(MambaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1)), tmp_path / "m")
    out = run_without(["ml_dtypes"], ["export", "--model", str(tmp_path / "m"), "--onnx", str(tmp_path / "o/m.onnx")])
    assert out.returncode != 0 and "ml_dtypes" in out.stderr
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def export_set(tmp_path_factory):
    from mq_deploy.export import export_onnx
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    root = tmp_path_factory.mktemp("doctor")
    save_model(init_mamba_weights(MambaLM(MambaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=2,
                                                      state_size=4))), root / "m")
    return export_onnx(root / "m", root / "onnx" / "model.onnx").onnx_path


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here: build would go on to build")
def test_build_needs_only_what_the_trt_extra_installs(export_set, tmp_path):
    out = run_without(["onnx", "ml_dtypes", "onnxruntime", "polygraphy"],
                      ["build", "--onnx", str(export_set), "--engine", str(tmp_path / "model.plan")])
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install tensorrt" in lines[0], out.stderr
    assert list(tmp_path.iterdir()) == []
    # what build imports is what the [trt] extra installs: tensorrt and onnx (whose ml_dtypes comes with it),
    # not onnxruntime or polygraphy's ONNX Runtime side
    stages = doctor_stages(["onnxruntime"])
    message = stages["TensorRT build"]["message"]
    assert "tensorrt" in message and "onnxruntime" not in message and "pip install -e '.[trt]'" in message


def test_lm_eval_stage_names_its_extra():
    """The lm-eval adapter refuses to import without lm-eval (an MQDeployError, not an ImportError):
    doctor still names the package and the extra."""
    stage = doctor_stages(["lm_eval"])["lm-eval (zero-shot tasks)"]
    assert not stage["ok"] and "lm_eval" in stage["message"] and "pip install -e '.[eval]'" in stage["message"]
