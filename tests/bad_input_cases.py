"""The bad-input table: one row per bad input a user can give a verb, the one error line it must
produce (an excerpt), and how the inputs are made. tests/test_bad_inputs.py runs every row;
scripts/errors_doc.py renders docs/errors.md from the same rows.

Placeholders in `argv`: {tmp} is the case's own empty working directory (also the current
directory while it runs); the others name shared inputs made once (tests/test_bad_inputs.py,
`make_inputs`): {fp} a byte-level FP model, {q} its MambaQuant W8A8 artifact, {onnx} the artifact's
export set, {text} a text file, {short} a 9-byte text, {ids} token ids in range, {badids} token ids
out of range, {notok} a Hugging Face model saved by transformers without tokenizer files, {other}
another FP model, {nan} a model with a NaN weight, {trunc} / {truncbin} models whose
model.safetensors / pytorch_model.bin is cut in half, {huge} a model whose finite weights make inf
logits, {fp16big} a model that is finite in FP32 but overflows FP16, {paper} a paper-mode artifact,
{w4a8} a W4A8 artifact, {mamba2} a Mamba-2 config, {vim} a 16x16 Vision Mamba, {images} unlabelled
images for it (.npy).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Case:
    id: str
    verb: str
    what: str                               # the bad input, in words (docs/errors.md)
    argv: tuple[str, ...]
    expect: str                             # a fragment of the single `error:` line
    setup: Callable[[Path, dict], None] | None = None    # makes the case's files in {tmp}
    after_work: bool = False                # the problem only shows once the work runs (NaN outputs)
    needs_no_tensorrt: bool = False         # the row where TensorRT is missing


# ---- per-case files, all inside the case's own {tmp} ----------------------------------------------------

def unrelated_file_in(name: str):
    def setup(tmp: Path, inputs: dict) -> None:
        (tmp / name).mkdir(parents=True, exist_ok=True)
        (tmp / name / "notes.txt").write_text("my own notes\n")
    return setup


def a_file(name: str, content: bytes = b"not mq-deploy's\n"):
    def setup(tmp: Path, inputs: dict) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(content)
    return setup


def an_npy(name: str, shape: tuple[int, ...]):
    def setup(tmp: Path, inputs: dict) -> None:
        import numpy as np
        np.save(tmp / name, np.zeros(shape, np.float32))
    return setup


def a_directory(name: str):
    def setup(tmp: Path, inputs: dict) -> None:
        (tmp / name).mkdir(parents=True)
    return setup


def copy_of(key: str, name: str, drop: tuple[str, ...] = ()):
    def setup(tmp: Path, inputs: dict) -> None:
        shutil.copytree(inputs[key], tmp / name)
        for item in drop:
            (tmp / name / item).unlink()
    return setup


def artifact_with_cut(name: str):
    def setup(tmp: Path, inputs: dict) -> None:
        shutil.copytree(inputs["q"], tmp / "q")
        data = (tmp / "q" / name).read_bytes()
        (tmp / "q" / name).write_bytes(data[: len(data) // 2])
    return setup


def lone_graph(tmp: Path, inputs: dict) -> None:
    (tmp / "lone").mkdir()
    shutil.copy(inputs["onnx"] / "model.onnx", tmp / "lone" / "model.onnx")


def garbage_graph(tmp: Path, inputs: dict) -> None:
    shutil.copytree(inputs["onnx"], tmp / "onnx")
    (tmp / "onnx" / "model.onnx").write_bytes(b"\x00\x01 this is no protobuf")


def damaged_decode_graph(tmp: Path, inputs: dict) -> None:
    shutil.copytree(inputs["onnx"], tmp / "onnx")
    with open(tmp / "onnx" / "model.decode.onnx", "ab") as f:
        f.write(b"junk\n")


def export_whose_model_was_replaced(tmp: Path, inputs: dict) -> None:
    """The export set is intact, but the directory its manifest names now holds another model."""
    shutil.copytree(inputs["onnx"], tmp / "onnx")
    shutil.copytree(inputs["other"], tmp / "model")
    manifest = json.loads((tmp / "onnx" / "manifest.json").read_text())
    manifest["source"]["path"] = str(tmp / "model")
    (tmp / "onnx" / "manifest.json").write_text(json.dumps(manifest))


def float_ids(tmp: Path, inputs: dict) -> None:
    import numpy as np
    np.save(tmp / "ids.npy", np.linspace(0, 1, 64, dtype=np.float32))


def broken_json_ids(tmp: Path, inputs: dict) -> None:
    (tmp / "ids.json").write_text("[[1, 2,")


Q = ("quantize", "--model", "{fp}", "--calib", "{text}", "--calib-samples", "2", "--calib-seq-len", "64")
V = ("validate", "--onnx", "{onnx}/model.onnx", "--samples", "1", "--seq-len", "32")

CASES = (
    # ---- quantize ---------------------------------------------------------------------------------------
    Case("quantize-out-holds-a-users-file", "quantize", "--out names a directory that holds a file of the user's",
         (*Q, "--out", "{tmp}/out"), "is not an mq-deploy quantized artifact", unrelated_file_in("out")),
    Case("quantize-force-on-a-users-directory", "quantize", "--force on a directory mq-deploy did not write",
         (*Q, "--out", "{tmp}/out", "--force"), "never replaces what it did not write", unrelated_file_in("out")),
    Case("quantize-out-is-the-model", "quantize", "--out equal to --model", ("quantize", "--model", "{fp}",
         "--out", "{fp}"), "is the input"),
    Case("quantize-out-inside-the-model", "quantize", "--out inside the --model directory",
         ("quantize", "--model", "{fp}", "--out", "{fp}/q"), "is inside the input"),
    Case("quantize-out-dot", "quantize", "--out . (the current directory, which holds files)",
         (*Q, "--out", "."), "is the current directory", a_file("keep.txt")),
    Case("quantize-out-under-a-file", "quantize", "--out below an existing file (checked before calibrating)",
         (*Q, "--out", "{tmp}/afile/q"), "afile is a file, not a directory", a_file("afile")),
    Case("quantize-previous-artifact-without-force", "quantize", "--out holds a previous artifact, no --force",
         (*Q, "--out", "{tmp}/prev"), "pass --force to replace it", copy_of("q", "prev")),
    Case("quantize-truncated-safetensors", "quantize", "model.safetensors cut short",
         ("quantize", "--model", "{trunc}", "--out", "{tmp}/q"), "truncated or not a safetensors file"),
    Case("quantize-truncated-bin", "quantize", "pytorch_model.bin cut short",
         ("quantize", "--model", "{truncbin}", "--out", "{tmp}/q"), "truncated, corrupt or not a plain state_dict"),
    Case("quantize-nan-weights", "quantize", "a NaN in a weight", ("quantize", "--model", "{nan}", "--out", "{tmp}/q"),
         "holds 1 NaN/inf value(s)"),
    Case("quantize-no-tokenizer", "quantize", "text calibration for a model without tokenizer files",
         ("quantize", "--model", "{notok}", "--calib", "{text}", "--out", "{tmp}/q"), "pass token ids to --calib"),
    Case("quantize-calib-ids-out-of-range", "quantize", "--calib token ids outside the vocabulary",
         ("quantize", "--model", "{fp}", "--calib", "{badids}", "--out", "{tmp}/q"), "must lie in [0, 256)"),
    Case("quantize-calib-ids-not-integers", "quantize", "--calib .npy of floats",
         ("quantize", "--model", "{fp}", "--calib", "{tmp}/ids.npy", "--out", "{tmp}/q"), "integer token ids",
         float_ids),
    Case("quantize-calib-seq-len-1", "quantize", "--calib-seq-len 1",
         ("quantize", "--model", "{fp}", "--calib-seq-len", "1", "--out", "{tmp}/q"), "need at least 2 tokens"),
    Case("quantize-calib-samples-0", "quantize", "--calib-samples 0",
         ("quantize", "--model", "{fp}", "--calib-samples", "0", "--out", "{tmp}/q"), "needs at least one window"),
    Case("quantize-calib-too-short", "quantize", "a calibration text shorter than one window",
         ("quantize", "--model", "{fp}", "--calib", "{short}", "--out", "{tmp}/q"), "calibration text too short"),
    Case("quantize-calib-missing", "quantize", "--calib file that does not exist",
         ("quantize", "--model", "{fp}", "--calib", "{tmp}/nope.txt", "--out", "{tmp}/q"), "does not exist"),
    Case("quantize-eval-too-short", "quantize", "--eval text shorter than one window (checked before calibrating)",
         (*Q, "--eval", "{short}", "--out", "{tmp}/q"), "fewer than one 512-token window"),
    Case("quantize-w4a8-deploy", "quantize", "--w-bits 4 --a-bits 8 in deploy mode (export cannot deploy it)",
         (*Q, "--w-bits", "4", "--a-bits", "8", "--out", "{tmp}/q"), "no INT4 x INT8 GEMM"),
    Case("quantize-gptq-paper-mode", "quantize", "--weight-rounding gptq with --mode paper (asymmetric weights)",
         (*Q, "--mode", "paper", "--weight-rounding", "gptq", "--out", "{tmp}/q"), "takes symmetric weights"),
    Case("quantize-effective-bits-at-w8", "quantize", "--effective-bits with 8-bit weights",
         (*Q, "--effective-bits", "6", "--out", "{tmp}/q"), "for 4-bit weights"),
    Case("quantize-keep-linears-unknown", "quantize", "--keep-linears naming a linear that is not quantized at 4 bits",
         (*Q, "--w-bits", "4", "--keep-linears", "backbone.layers.0.mixer.dt_proj", "--out", "{tmp}/q"),
         "not a linear this model quantizes at 4 bits"),
    Case("quantize-effective-bits-nothing-4bit", "quantize", "--effective-bits on a model none of whose linears "
         "take INT4 blocks", (*Q, "--w-bits", "4", "--effective-bits", "4.5", "--out", "{tmp}/q"),
         "no linear quantized at 4 bits to choose from"),
    Case("quantize-awq-at-w8a8", "quantize", "--weight-scales awq with 8-bit activations",
         (*Q, "--weight-scales", "awq", "--out", "{tmp}/q"), "is for 4-bit weight-only quantization"),
    Case("quantize-effective-bits-with-awq", "quantize", "--effective-bits together with --weight-scales awq",
         (*Q, "--w-bits", "4", "--weight-scales", "awq", "--effective-bits", "4.5", "--out", "{tmp}/q"),
         "is not supported yet"),
    Case("quantize-r1-other-recipe", "quantize", "--r1 hadamard with a recipe that has no KLT to drop",
         (*Q, "--recipe", "quarot", "--r1", "hadamard", "--out", "{tmp}/q"), "is MambaQuant's choice"),
    Case("quantize-an-artifact", "quantize", "--model a quantized artifact instead of the FP checkpoint",
         ("quantize", "--model", "{q}", "--out", "{tmp}/q2"), "is a quantized artifact; quantize the FP checkpoint"),
    Case("quantize-mamba2-incomplete-config", "quantize", "a Mamba-2 config.json without its sizes",
         ("quantize", "--model", "{mamba2}", "--out", "{tmp}/q"), "is not a valid Mamba-2 config"),
    Case("export-mamba2-incomplete-config", "export", "a Mamba-2 config.json without its sizes",
         ("export", "--model", "{mamba2}", "--onnx", "{tmp}/e/model.onnx"), "is not a valid Mamba-2 config"),
    Case("inspect-mamba2-incomplete-config", "inspect", "a Mamba-2 config.json without its sizes",
         ("inspect", "--model", "{mamba2}", "--plot", "{tmp}/p"), "is not a valid Mamba-2 config"),
    Case("inspect-vim-text", "inspect", "--text for a Vision Mamba (it takes images)",
         ("inspect", "--model", "{vim}", "--plot", "{tmp}/p", "--text", "{text}"), "it takes images, not text"),
    Case("inspect-vim-no-images", "inspect", "a 16x16 Vision Mamba without --images (no bundled set fits it)",
         ("inspect", "--model", "{vim}", "--plot", "{tmp}/p"), "takes 16x16 images: give them with --images"),
    Case("inspect-lm-images", "inspect", "--images for a language model",
         ("inspect", "--model", "{fp}", "--plot", "{tmp}/p", "--images", "{images}"), "--images is for a Vision Mamba"),
    Case("inspect-images-name-is-also-a-folder", "inspect", "--images mnist where ./mnist is a folder too",
         ("inspect", "--model", "{vim}", "--plot", "{tmp}/p", "--images", "mnist"),
         "is both a bundled image set and a path", setup=lambda tmp, inputs: (tmp / "mnist").mkdir()),
    Case("inspect-vim-bundled-wrong-size", "inspect", "--images mnist:heldout for a model that is not 32x32",
         ("inspect", "--model", "{vim}", "--plot", "{tmp}/p", "--images", "mnist:heldout"),
         "bundled mnist images are for 32x32"),
    Case("quantize-unknown-recipe", "quantize", "--recipe that does not exist",
         ("quantize", "--model", "{fp}", "--recipe", "gptq", "--out", "{tmp}/q"), "invalid choice: 'gptq'"),
    # ---- eval -------------------------------------------------------------------------------------------
    Case("eval-seq-len-0", "eval", "--seq-len 0", ("eval", "--model", "{fp}", "--text", "{text}", "--seq-len", "0"),
         "a window needs at least 2 tokens"),
    Case("eval-text-shorter-than-a-window", "eval", "a text shorter than one window",
         ("eval", "--model", "{fp}", "--text", "{short}", "--seq-len", "64"), "fewer than one window of --seq-len 64"),
    Case("eval-batch-size-0", "eval", "--batch-size 0",
         ("eval", "--model", "{fp}", "--text", "{text}", "--batch-size", "0"), "--batch-size 0"),
    Case("eval-truncated-safetensors", "eval", "model.safetensors cut short",
         ("eval", "--model", "{trunc}", "--text", "{text}"), "truncated or not a safetensors file"),
    Case("eval-nan-weights", "eval", "a NaN in a weight", ("eval", "--model", "{nan}", "--text", "{text}"),
         "holds 1 NaN/inf value(s)"),
    Case("eval-nan-logits", "eval", "finite weights whose logits overflow to inf",
         ("eval", "--model", "{huge}", "--text", "{text}", "--seq-len", "64", "--max-tokens", "256"),
         "the model produced NaN/inf logits", after_work=True),
    Case("eval-no-tokenizer", "eval", "a text for a model without tokenizer files",
         ("eval", "--model", "{notok}", "--text", "{text}"), "pass token ids to --text"),
    Case("eval-unreadable-token-file", "eval", "a .json token file that is not JSON",
         ("eval", "--model", "{fp}", "--text", "{tmp}/ids.json"), "cannot read token ids", broken_json_ids),
    Case("eval-artifact-transforms-cut", "eval", "a quantized artifact whose transforms.safetensors is cut short",
         ("eval", "--model", "{tmp}/q", "--text", "{text}"), "truncated or not a safetensors file",
         artifact_with_cut("transforms.safetensors")),
    Case("eval-json-over-a-users-file", "eval", "--json names a file mq-deploy did not write (checked before scoring)",
         ("eval", "--model", "{fp}", "--text", "{text}", "--json", "{tmp}/result.json"),
         "not from an mq-deploy eval result", a_file("result.json", b"{}")),
    Case("eval-json-is-the-text", "eval", "--json names the --text file",
         ("eval", "--model", "{fp}", "--text", "{tmp}/ids.json", "--json", "{tmp}/ids.json"), "is the input",
         a_file("ids.json", b"[[1, 2, 3]]")),
    # ---- export -----------------------------------------------------------------------------------------
    Case("export-over-a-users-graph", "export", "--onnx names a model.onnx mq-deploy did not write",
         ("export", "--model", "{q}", "--onnx", "{tmp}/out/model.onnx"), "not from an mq-deploy export set",
         a_file("out/model.onnx")),
    Case("export-inside-the-model", "export", "--onnx inside the --model directory",
         ("export", "--model", "{q}", "--onnx", "{q}/model.onnx"), "is inside the input"),
    Case("export-previous-set-without-force", "export", "--onnx names a previous export, no --force",
         ("export", "--model", "{q}", "--onnx", "{tmp}/onnx/model.onnx"), "pass --force to replace it",
         copy_of("onnx", "onnx")),
    Case("export-beside-another-export", "export", "--onnx in a directory holding another graph's export set",
         ("export", "--model", "{q}", "--onnx", "{tmp}/onnx/other.onnx", "--force"),
         "belongs to the export of model.onnx", copy_of("onnx", "onnx")),
    Case("export-fuse-quantize-onnx-scan", "export", "--fuse-quantize with --scan onnx (the fused step is a plugin)",
         ("export", "--model", "{q}", "--onnx", "{tmp}/o/model.onnx", "--scan", "onnx", "--fuse-quantize"),
         "--fuse-quantize needs --scan plugin"),
    Case("export-fuse-quantize-nothing-to-fuse", "export", "--fuse-quantize on an FP checkpoint (no online Hadamard)",
         ("export", "--model", "{fp}", "--onnx", "{tmp}/o/model.onnx", "--fuse-quantize"), "nothing to fuse"),
    Case("export-not-onnx-suffix", "export", "--onnx not ending in .onnx",
         ("export", "--model", "{q}", "--onnx", "{tmp}/model.bin"), "must end in .onnx"),
    Case("export-truncated-safetensors", "export", "model.safetensors cut short",
         ("export", "--model", "{trunc}", "--onnx", "{tmp}/o/model.onnx"), "truncated or not a safetensors file"),
    Case("export-nan-weights", "export", "a NaN in a weight",
         ("export", "--model", "{nan}", "--onnx", "{tmp}/o/model.onnx"), "holds 1 NaN/inf value(s)"),
    Case("export-paper-artifact", "export", "a paper-mode artifact",
         ("export", "--model", "{paper}", "--onnx", "{tmp}/o/model.onnx"), "paper-mode artifact"),
    Case("export-w4a8-artifact", "export", "a W4A8 artifact (made with --no-export-check)",
         ("export", "--model", "{w4a8}", "--onnx", "{tmp}/o/model.onnx"), "no INT4 x INT8 GEMM"),
    Case("export-fp16-overflow", "export", "a model whose activations overflow FP16 (NaN logits on the probe)",
         ("export", "--model", "{fp16big}", "--onnx", "{tmp}/o/model.onnx"), "NaN/inf logits on a probe input",
         after_work=True),
    Case("export-artifact-quant-json-cut", "export", "a quantized artifact whose quant.json is cut short",
         ("export", "--model", "{tmp}/q", "--onnx", "{tmp}/o/model.onnx"), "is not valid JSON",
         artifact_with_cut("quant.json")),
    Case("export-batch-max-0", "export", "--batch-max 0",
         ("export", "--model", "{q}", "--onnx", "{tmp}/o/model.onnx", "--batch-max", "0"), "batch_max must be a positive"),
    # ---- check ------------------------------------------------------------------------------------------
    Case("check-graph-without-manifest", "check", "a prefill graph without its manifest",
         ("check", "--onnx", "{tmp}/lone/model.onnx"), "no manifest.json beside", lone_graph),
    Case("check-decode-graph-missing", "check", "an export set whose decode graph is missing",
         ("check", "--onnx", "{tmp}/onnx/model.onnx"), "incomplete export set: model.decode.onnx",
         copy_of("onnx", "onnx", drop=("model.decode.onnx",))),
    Case("check-not-onnx", "check", "a model.onnx that is not ONNX", ("check", "--onnx", "{tmp}/onnx/model.onnx"),
         "not a readable ONNX model", garbage_graph),
    # ---- build ------------------------------------------------------------------------------------------
    Case("build-onnx-missing", "build", "--onnx that does not exist",
         ("build", "--onnx", "{tmp}/none.onnx", "--engine", "{tmp}/model.plan"), "does not exist"),
    Case("build-over-a-users-plan", "build", "--engine names a plan mq-deploy did not build",
         ("build", "--onnx", "{onnx}/model.onnx", "--engine", "{tmp}/model.plan"), "not from an mq-deploy engine",
         a_file("model.plan")),
    Case("build-engine-is-a-directory", "build", "--engine names a directory",
         ("build", "--onnx", "{onnx}/model.onnx", "--engine", "{tmp}/eng"), "is a directory", a_directory("eng")),
    Case("build-opt-level-9", "build", "--opt-level out of TensorRT's range",
         ("build", "--onnx", "{onnx}/model.onnx", "--engine", "{tmp}/model.plan", "--opt-level", "9"), "--opt-level 9"),
    Case("build-decode-graph-missing", "build", "an export set whose decode graph is missing",
         ("build", "--onnx", "{tmp}/onnx/model.onnx", "--engine", "{tmp}/model.plan"), "lists the decode graph",
         copy_of("onnx", "onnx", drop=("model.decode.onnx",))),
    Case("build-without-tensorrt", "build", "no TensorRT installed",
         ("build", "--onnx", "{onnx}/model.onnx", "--engine", "{tmp}/model.plan"), "pip install tensorrt",
         needs_no_tensorrt=True),
    # ---- validate ---------------------------------------------------------------------------------------
    Case("validate-wrong-model", "validate", "--model that the graph was not exported from",
         (*V, "--model", "{other}"), "this graph was not exported from"),
    Case("validate-ids-out-of-range", "validate", "--tokens outside the vocabulary", (*V, "--tokens", "{badids}"),
         "must lie in [0, 256)"),
    Case("validate-seq-len-1", "validate", "--seq-len 1", ("validate", "--onnx", "{onnx}/model.onnx", "--seq-len", "1"),
         "--seq-len must be at least 2"),
    Case("validate-text-and-tokens", "validate", "--text and --tokens together",
         (*V, "--text", "{text}", "--tokens", "{ids}"), "not both"),
    Case("validate-json-over-a-users-file", "validate", "--json names a file mq-deploy did not write",
         (*V, "--json", "{tmp}/report.json"), "not from an mq-deploy validation report", a_file("report.json", b"{}")),
    Case("validate-engine-missing", "validate", "--engine that does not exist",
         (*V, "--engine", "{tmp}/none.plan"), "does not exist"),
    # ---- bench ------------------------------------------------------------------------------------------
    Case("bench-iterations-0", "bench", "--iterations 0",
         ("bench", "--onnx", "{onnx}/model.onnx", "--iterations", "0", "--out", "{tmp}/b"), "--iterations >= 1"),
    Case("bench-lengths-not-integers", "bench", "--lengths 8,x",
         ("bench", "--onnx", "{onnx}/model.onnx", "--lengths", "8,x", "--out", "{tmp}/b"), "comma-separated integers"),
    Case("bench-out-over-a-users-file", "bench", "--out prefix whose .md is the user's file",
         ("bench", "--onnx", "{onnx}/model.onnx", "--out", "{tmp}/b"), "not from an mq-deploy bench report",
         a_file("b.md")),
    Case("bench-out-a-directory", "bench", "--out naming a directory instead of a file prefix",
         ("bench", "--onnx", "{onnx}/model.onnx", "--out", "{tmp}/"), "takes a file prefix"),
    Case("bench-decode-graph-damaged", "bench", "an export set whose decode graph was damaged after export",
         ("bench", "--onnx", "{tmp}/onnx/model.onnx", "--out", "{tmp}/b", "--no-torch"),
         "ONNX Runtime cannot load", damaged_decode_graph, after_work=True),
    Case("validate-json-over-the-manifest", "validate", "--json --force naming the manifest.json of --onnx",
         ("validate", "--onnx", "{tmp}/onnx/model.onnx", "--samples", "1", "--seq-len", "32", "--json",
          "{tmp}/onnx/manifest.json", "--force"), "writing there would change the input", copy_of("onnx", "onnx")),
    Case("bench-fp-onnx-missing", "bench", "--fp-onnx that does not exist",
         ("bench", "--onnx", "{onnx}/model.onnx", "--fp-onnx", "{tmp}/none.onnx", "--out", "{tmp}/b"),
         "does not exist"),
    Case("bench-model-replaced", "bench", "the model the graph came from was replaced by another",
         ("bench", "--onnx", "{tmp}/onnx/model.onnx", "--out", "{tmp}/b"), "this graph was not exported from",
         export_whose_model_was_replaced),
    # ---- inspect / compare-recipes / demo / doctor ------------------------------------------------------
    Case("inspect-plot-over-a-users-png", "inspect", "--plot directory holding a PNG of the user's with our name",
         ("inspect", "--model", "{fp}", "--quantized", "{q}", "--plot", "{tmp}/plots", "--text", "{text}"),
         "not from an mq-deploy inspect plot", a_file("plots/layer_error.png", b"\x89PNG\r\n\x1a\nmine")),
    Case("inspect-artifact-of-another-model", "inspect", "--quantized artifact made from another --model",
         ("inspect", "--model", "{other}", "--quantized", "{q}", "--plot", "{tmp}/plots", "--text", "{text}"),
         "was not quantized from"),
    Case("inspect-samples-0", "inspect", "--samples 0",
         ("inspect", "--model", "{fp}", "--plot", "{tmp}/plots", "--samples", "0"), "--samples 0"),
    Case("compare-unknown-recipe", "compare-recipes", "--recipes with a name that does not exist",
         ("compare-recipes", "--model", "{fp}", "--calib", "{text}", "--eval", "{text}", "--recipes", "gptq",
          "--out", "{tmp}/t"), "unknown recipe 'gptq'"),
    Case("compare-unknown-bits", "compare-recipes", "--bits with a setting compare-recipes does not run",
         ("compare-recipes", "--model", "{fp}", "--calib", "{text}", "--eval", "{text}", "--bits", "W3A8"),
         "--bits W3A8: choose from W8A8, W4A8, W4A16"),
    Case("compare-unknown-peer", "compare-recipes", "--peers with a name that is not a ModelOpt peer",
         ("compare-recipes", "--model", "{fp}", "--calib", "{text}", "--eval", "{text}", "--peers", "awq",
          "--out", "{tmp}/t"), "unknown peer 'awq'"),
    Case("compare-out-over-a-users-file", "compare-recipes", "--out prefix whose .json is the user's file",
         ("compare-recipes", "--model", "{fp}", "--calib", "{text}", "--eval", "{text}", "--out", "{tmp}/t"),
         "not from an mq-deploy recipe comparison", a_file("t.json", b"[]")),
    Case("quantize-vision-with-text", "quantize", "a Vision Mamba calibrated on text (the default --calib)",
         ("quantize", "--model", "{vim}", "--out", "{tmp}/q"), "a Vision Mamba calibrates on images"),
    Case("quantize-vision-wrong-image-size", "quantize", "--calib images of another size than the model's",
         ("quantize", "--model", "{vim}", "--calib", "{tmp}/big.npy", "--out", "{tmp}/q"),
         "the model takes preprocessed float images [n, 3, 16, 16]",
         an_npy("big.npy", (1, 3, 32, 32))),
    Case("quantize-vision-eval-unlabelled", "quantize", "--eval images without labels for a Vision Mamba",
         ("quantize", "--model", "{vim}", "--calib", "{images}", "--eval", "{images}", "--out", "{tmp}/q"),
         "has no labels"),
    Case("quantize-vision-digits-wrong-size", "quantize", "--calib digits for a model that is not 32x32",
         ("quantize", "--model", "{vim}", "--calib", "digits", "--out", "{tmp}/q"), "bundled digits images are for 32x32"),
    Case("demo-negative-max-tokens", "demo", "--max-tokens -5", ("demo", "--max-tokens", "-5"), "--max-tokens -5"),
    Case("lm-eval-missing-path", "lm-eval", "--model_args path= that does not exist (checked before lm-eval loads)",
         ("lm-eval", "--model", "mq-deploy", "--model_args", "path={tmp}/nope", "--tasks", "arc_easy"),
         "nope does not exist; give a checkpoint directory"),
    Case("lm-eval-no-path", "lm-eval", "--model mq-deploy without path= in --model_args",
         ("lm-eval", "--model", "mq-deploy", "--model_args", "backend=torch", "--tasks", "arc_easy"),
         "needs --model_args path=DIR"),
    Case("lm-eval-unknown-backend", "lm-eval", "--model_args backend= that does not exist",
         ("lm-eval", "--model", "mq-deploy", "--model_args=path={fp},backend=tflite", "--tasks", "arc_easy"),
         "backend=tflite: choose one of torch, onnxruntime, tensorrt"),
    Case("lm-eval-unknown-model-arg", "lm-eval", "a --model_args key mq-deploy does not take",
         ("lm-eval", "--model", "mq-deploy", "--model_args", "path={fp},pretrained=x", "--tasks", "arc_easy"),
         "unknown --model_args for mq-deploy: pretrained"),
    Case("doctor-unknown-option", "doctor", "an option doctor does not have", ("doctor", "--fix"),
         "unrecognized arguments: --fix"),
    Case("doctor-json-over-a-users-file", "doctor", "--json names a file mq-deploy did not write",
         ("doctor", "--json", "{tmp}/env.json"), "not from an mq-deploy doctor report", a_file("env.json", b"{}")),
    Case("doctor-json-over-a-manifest", "doctor", "--json --force naming an export set's manifest.json",
         ("doctor", "--json", "{tmp}/onnx/manifest.json", "--force"),
         "is an mq-deploy export manifest, not a doctor report", copy_of("onnx", "onnx")),
    Case("doctor-json-previous-report-without-force", "doctor", "--json names a previous report, no --force",
         ("doctor", "--json", "{tmp}/env.json"), "pass --force to replace it",
         a_file("env.json", b'{"producer": "mq-deploy 0.1.0"}')),
)
