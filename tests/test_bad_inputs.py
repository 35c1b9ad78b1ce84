"""Every bad input of tests/bad_input_cases.py, through the command line: exit status 2, exactly one
`error:` line naming the problem, no traceback, no file changed anywhere (the case's own directory
and the shared inputs), nothing partial left behind, and (unless the problem can only show while
the work runs) the error comes before any long work starts. docs/errors.md is rendered from the
same rows and must be up to date."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_input_cases import CASES

pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from mq_deploy.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
TEXT = ("The selective scan carries a state from token to token; quantization must not disturb it. " * 60)

# (module, attribute): the long work each verb does once its inputs are checked
LONG_WORK = [("mq_deploy.quant.quantize", "quantize"), ("mq_deploy.eval.text", "evaluate_perplexity"),
             ("mq_deploy.export.exporter", "build_graph"), ("mq_deploy.validate.validation", "validate"),
             ("mq_deploy.bench.benchmark", "collect_sessions"), ("mq_deploy.reports.inspection", "channel_statistics"),
             ("mq_deploy.reports.compare_recipes", "quantize"), ("mq_deploy.demo", "_evaluate")]


def _tiny(seed: int = 3, tie: bool = True):
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    config = MambaConfig(vocab_size=256, hidden_size=48, num_hidden_layers=2, state_size=8, time_step_rank=12,
                         tokenizer="bytes", tie_word_embeddings=tie)
    return init_mamba_weights(MambaLM(config), seed=seed).eval()


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """The shared inputs every case reads (never writes)."""
    from conftest import random_hf_mamba
    from mq_deploy.api import quantize_checkpoint
    from mq_deploy.export import export_onnx
    from mq_deploy.models.loading import save_model
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = {name: root / name for name in ("fp", "other", "nan", "trunc", "truncbin", "huge", "fp16big", "notok",
                                            "mamba2", "q", "paper", "w4a8")}
    save_model(_tiny(), paths["fp"])
    save_model(_tiny(seed=4), paths["other"])
    broken = _tiny()
    with torch.no_grad():
        broken.backbone.layers[1].mixer.x_proj.weight[0, 0] = float("nan")
    save_model(broken, paths["nan"])
    save_model(_tiny(), paths["trunc"])
    _cut_in_half(paths["trunc"] / "model.safetensors")
    paths["truncbin"].mkdir()
    (paths["truncbin"] / "config.json").write_text((paths["fp"] / "config.json").read_text())
    torch.save(_tiny().state_dict(), paths["truncbin"] / "pytorch_model.bin")
    _cut_in_half(paths["truncbin"] / "pytorch_model.bin")
    huge = _tiny(tie=False)
    with torch.no_grad():
        huge.lm_head.weight.fill_(3e38)                 # finite, but h·W overflows float32
    save_model(huge, paths["huge"])
    big = _tiny()
    with torch.no_grad():
        big.backbone.layers[0].mixer.in_proj.weight.mul_(3e5)   # fine in FP32, past 65504 in FP16
    save_model(big, paths["fp16big"])
    random_hf_mamba(vocab=256, hidden=48, layers=2, state=8, rank=12).save_pretrained(paths["notok"])
    paths["mamba2"].mkdir()
    (paths["mamba2"] / "config.json").write_text(json.dumps({"model_type": "mamba2", "hidden_size": 48}))
    text = root / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    (root / "short.txt").write_text("too short", encoding="utf-8")
    ids = np.frombuffer(TEXT.encode()[:256], np.uint8).astype(np.int64).reshape(4, 64)
    np.save(root / "ids.npy", ids)
    (root / "badids.json").write_text(json.dumps([[1, 2, 999]]))
    common = dict(calib=str(text), calib_samples=4, calib_seq_len=64, progress=False)
    quantize_checkpoint(paths["fp"], paths["q"], **common)
    quantize_checkpoint(paths["fp"], paths["paper"], mode="paper", **common)
    quantize_checkpoint(paths["fp"], paths["w4a8"], w_bits=4, a_bits=8, export_check=False, **common)
    export_onnx(paths["q"], root / "onnx" / "model.onnx", precision="fp32")
    from mq_deploy.models.vim import VimConfig, VisionMamba
    from mq_deploy.models.vim_loading import save_vim
    torch.manual_seed(0)
    save_vim(VisionMamba(VimConfig(hidden_size=32, num_hidden_layers=1, img_size=16, patch_size=8, stride=8,
                                   num_classes=4)), root / "vim")
    np.save(root / "images.npy", np.zeros((4, 3, 16, 16), np.float32))
    return {**{k: v for k, v in paths.items()}, "onnx": root / "onnx", "text": text, "short": root / "short.txt",
            "vim": root / "vim", "images": root / "images.npy",
            "ids": root / "ids.npy", "badids": root / "badids.json", "root": root}


def snapshot(*roots: Path) -> dict:
    """Every file and directory under the roots: (kind, size, mtime, sha256)."""
    state = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]):
            if path.is_file():
                state[str(path)] = ("file", path.stat().st_size, path.stat().st_mtime_ns,
                                    hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                state[str(path)] = ("dir",)
    return state


def _fill(arg: str, inputs: dict, tmp: Path) -> str:
    return arg.format(tmp=tmp, **{k: v for k, v in inputs.items()})


def _long_work_guard(name: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"long work ({name}) started before the bad input was reported")
    return refuse


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, inputs, tmp_path, monkeypatch, capsys):
    if case.needs_no_tensorrt and HAS_TENSORRT:
        pytest.skip("TensorRT is installed here")
    work = tmp_path / "work"
    work.mkdir()
    if case.setup is not None:
        case.setup(work, inputs)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MQ_PROGRESS", "0")
    if not case.after_work:
        # import every module first: one imported while another's function is patched would keep the
        # guard in its namespace for good (from-imports bind at import time)
        for module, _ in LONG_WORK:
            importlib.import_module(module)
        for module, attr in LONG_WORK:
            monkeypatch.setattr(f"{module}.{attr}", _long_work_guard(f"{module}.{attr}"))
    before = snapshot(work, inputs["root"])
    try:
        code = main([_fill(a, inputs, work) for a in case.argv])
    except SystemExit as e:          # argparse's usage errors exit through SystemExit
        code = e.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert case.expect in lines[0], lines[0]
    assert snapshot(work, inputs["root"]) == before, "a file changed, appeared or disappeared"


def test_the_table_covers_every_verb_thirty_times_over():
    from mq_deploy.cli import build_parser
    verbs = set(build_parser()._subparsers._group_actions[0].choices)
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    assert verbs - {c.verb for c in CASES} == set()


def test_errors_doc_is_generated_from_the_table():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from errors_doc import render
    finally:
        sys.path.pop(0)
    assert (REPO / "docs" / "errors.md").read_text(encoding="utf-8") == render(CASES), \
        "docs/errors.md is stale: run python scripts/errors_doc.py"
