"""NVIDIA ModelOpt as a peer in compare-recipes, on the trained demo model: its configs reach every
linear our deploy mode quantizes (dt_proj included at 8 bits, through the module call), and the rows
sit beside ours, evaluated on the same windows."""

from __future__ import annotations

import warnings

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pytest.importorskip("modelopt.torch.quantization")

from mq_deploy.data.calibration import calibration_batches  # noqa: E402
from mq_deploy.models.loading import load_model  # noqa: E402
from mq_deploy.reports.modelopt_peer import modelopt_quantize  # noqa: E402
from mq_deploy.samples import HELDOUT_TEXT, sample_text  # noqa: E402


def enabled_weight_quantizers(model) -> set[str]:
    return {name.removesuffix(".weight_quantizer") for name, m in model.named_modules()
            if name.endswith("weight_quantizer") and getattr(m, "is_enabled", False)}


@pytest.fixture(scope="module")
def demo(demo_model_dir):
    loaded = load_model(demo_model_dir)
    calib, _ = calibration_batches(loaded.tokenizer, str(sample_text("wiki_calib.txt")), 4, 256)
    return loaded, calib


def test_peers_quantize_the_linears_our_deploy_mode_does(demo, capsys):
    loaded, calib = demo
    layers = len(loaded.model.backbone.layers)
    every = {f"backbone.layers.{i}.mixer.{n}" for i in range(layers) for n in ("in_proj", "x_proj", "dt_proj", "out_proj")}
    int8, _ = modelopt_quantize(loaded.model, "modelopt-int8-smoothquant", calib)
    assert "Inserted" not in capsys.readouterr().out      # ModelOpt's prints stay out of our stdout (the table)
    assert enabled_weight_quantizers(int8) == every
    int4, _ = modelopt_quantize(loaded.model, "modelopt-int4-awq", calib)
    assert enabled_weight_quantizers(int4) == {n for n in every if not n.endswith("dt_proj")}
    ids = torch.tensor(list(sample_text(HELDOUT_TEXT).read_bytes()[:2 * 256])).view(2, 256)
    with torch.no_grad():
        fp, q8, q4 = loaded.model(ids), int8(ids), int4(ids)
    assert torch.isfinite(q8).all() and torch.isfinite(q4).all()
    # quantized, and close: a few percent of the logits' scale, not noise
    for q in (q8, q4):
        rel = ((q - fp).norm() / fp.norm()).item()
        assert 1e-4 < rel < 0.1, rel
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())   # the source model is untouched


def test_compare_recipes_rows_beside_ours(demo_model_dir):
    from mq_deploy.reports.compare_recipes import compare_recipes, to_markdown
    result = compare_recipes(demo_model_dir, str(sample_text("wiki_calib.txt")), str(sample_text(HELDOUT_TEXT)),
                             recipes=["rtn"], bit_settings=((8, 8), (4, 16)), modes=("deploy",), calib_samples=4,
                             calib_seq_len=256, eval_max_tokens=4096, progress=False, log=lambda *_: None)
    rows = {(r["recipe"], r["bits"]) for r in result["rows"]}
    assert rows == {("rtn", "W8A8"), ("rtn", "W4A16"), ("modelopt-int8-smoothquant", "W8A8"),
                    ("modelopt-int4-awq", "W4A16")}
    assert {(d["bits"], frozenset([d["best"], *d["against"]])) for d in result["decisions"]} == {
        ("W8A8", frozenset({"rtn", "modelopt-int8-smoothquant"})), ("W4A16", frozenset({"rtn", "modelopt-int4-awq"}))}
    assert "| modelopt-int4-awq | W4A16 | deploy |" in to_markdown(result)


def test_our_smoothquant_matches_modelopts(demo):
    """The SmoothQuant baseline (every linear's input smoothed, α = 1, static per-tensor INT8) against
    ModelOpt's INT8 SmoothQuant on the same windows: the same method, so within 0.1 point of
    perplexity change (issue 17's bar), here on 16 K held-out bytes."""
    from mq_deploy.eval import evaluate_model
    from mq_deploy.quant.config import QuantConfig
    from mq_deploy.quant.quantize import quantize
    loaded, calib = demo
    ours = quantize(loaded.model, "smoothquant", calib, QuantConfig(), progress=False).model
    theirs, _ = modelopt_quantize(loaded.model, "modelopt-int8-smoothquant", calib)
    text = str(sample_text(HELDOUT_TEXT))
    ppl = {name: evaluate_model(m, loaded.tokenizer, text, max_tokens=16384, progress=False)["perplexity"]
           for name, m in (("fp", loaded.model), ("ours", ours), ("modelopt", theirs))}
    assert abs(ppl["ours"] - ppl["modelopt"]) / ppl["fp"] < 1e-3, ppl
    assert ppl["ours"] != ppl["fp"]


def test_a_modelopt_that_cannot_import_names_what_is_missing(tmp_path, demo_model_dir):
    """nvidia-modelopt 0.47 imports requests without requiring it: when a dependency like that is
    missing, compare-recipes --peers says so in one error naming `pip install requests`, not 'install
    nvidia-modelopt', which is installed."""
    import subprocess
    import sys
    # a finder that fails modelopt's import on a missing dependency, whatever modelopt version imports
    script = ("import sys\n"
              "class Missing:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'modelopt.torch.quantization':\n"
              "            raise ImportError(\"No module named 'requests'\", name='requests')\n"
              "sys.meta_path.insert(0, Missing())\n"
              "from mq_deploy.cli import main\n"
              f"sys.exit(main(['compare-recipes', '--model', {str(demo_model_dir)!r}, '--calib', 'pydoc-topics', "
              f"'--eval', 'pydoc-topics', '--out', {str(tmp_path / 'c')!r}, '--peers', 'modelopt-int8-smoothquant']))")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "cannot import requests: pip install requests" in r.stderr, r.stderr
