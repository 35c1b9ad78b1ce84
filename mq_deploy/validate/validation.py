"""`mq-deploy validate`: run an engine (or ONNX Runtime on the graph) and references on the same
token ids through Polygraphy's Comparator, then judge each pair with stated tolerances.

Subject: the TensorRT plan (`engine`), else ONNX Runtime on the ONNX file.
References (`references`, any of):
  torch         the torch model the graph was exported from (the fake-quant model of an artifact),
                in the graph's precision; same function -> "same-graph" tolerances, every output
  torch-fp      the same model unquantized (an artifact's transformed FP model); "other-model"
  onnxruntime   ONNX Runtime on the same ONNX (only with an engine); "same-graph"
  onnx:PATH     ONNX Runtime on another graph, e.g. the unquantized export; "other-model", logits
  engine:PATH   another plan, e.g. the FP16 engine of the unquantized export; "other-model", logits
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..errors import MQDeployError
from ..deploy.manifest import Manifest
from ..deploy.contract import IMAGES
from ..metrics import channel_scale_error, label_nll, logits_error, next_token_nll
from .explain import explain_qdq_failure, is_qdq_graph

CONV_STATE_PREFIX = "conv_state_out."      # the conv window: a copy of in_proj's x rows, per channel


@dataclass(frozen=True)
class Tolerance:
    """Pass/fail for one subject-reference pair. The Polygraphy check is the median absolute
    difference of each compared output (robust to the few positions where an INT8 code flip at a
    rounding tie moves a logit); the language-model checks are over all logits together."""

    median_abs: float            # Polygraphy SimpleCompareFunc(check_error_stat="median", atol=...)
    min_argmax_agreement: float
    max_nll_increase: float      # relative: subject NLL / reference NLL - 1
    outputs: str                 # "all" outputs both produce, or "logits"
    # same function only: each conv-window state channel's least-squares scale against the reference
    # must be within this of 1 (a per-channel fault upstream of a conv; None: not checked)
    max_channel_scale_error: float | None = None


# Measured on the demo model (docs/validation.md): the same graph in another executor or precision
# differs by a median |Δlogit| of 1e-3 to 3e-2 with >= 98.6 % argmax agreement; quantized (mambaquant
# W8A8) vs unquantized by ~4e-2 and 98.3 %. Conv-state channel scales: within 1.2 % of 1 in FP16 (0.4 %
# in FP32); one in_proj channel scale off by 10 % shows as 9.6 %. The limits leave room for larger
# models and TensorRT's kernels.
# The per-channel scale check of the conv states needs this many values a channel (4 windows of a
# Mamba-1 with its 3-token conv state) before a fitted scale means anything (metrics.channel_scale_error).
MIN_CHANNEL_VALUES = 12
TOLERANCES = {
    "same-graph": Tolerance(median_abs=5e-2, min_argmax_agreement=0.97, max_nll_increase=0.01, outputs="all",
                            max_channel_scale_error=0.05),
    "other-model": Tolerance(median_abs=0.25, min_argmax_agreement=0.90, max_nll_increase=0.05, outputs="logits"),
}
# A classifier's export: top-1 agreement over images (the bar for the same graph: 99 %), the
# NLL of the true classes when the images are labelled.
VISION_TOLERANCES = {
    "same-graph": Tolerance(median_abs=5e-2, min_argmax_agreement=0.99, max_nll_increase=0.01, outputs="logits"),
    "other-model": Tolerance(median_abs=0.25, min_argmax_agreement=0.95, max_nll_increase=0.05, outputs="logits"),
}


@dataclass
class Reference:
    name: str
    kind: str                    # a TOLERANCES key
    open_session: Callable       # open_session(decode: bool) -> Session (decode: also the decode graph)
    fake_quant_model: object = None   # the torch model a QDQ graph was exported from (explains a failure)


def _runner(name: str, open_session, images: bool, decode_from: int | None = None):
    """A Polygraphy runner over a session: prefill, or (decode_from) prefill then decode steps."""
    from ..deploy.polygraphy_runner import SessionRunner
    return SessionRunner(lambda: open_session(decode_from is not None), name=name, images=images,
                         decode_from=decode_from)


def _parse_reference(spec: str, onnx_path: Path, engine, manifest: Manifest, model_dir, device: str,
                     plugins) -> Reference:
    from ..deploy.onnxruntime_session import OnnxruntimeSession
    from ..deploy.source import fp_model_and_note, source_dir, torch_model
    from ..deploy.torch_session import TorchSession
    from ..devices import torch_device
    precision = manifest.precision
    if spec in ("torch", "torch-fp"):
        quantized = spec == "torch" and manifest.quantization is not None
        source = source_dir(manifest, model_dir)
        # torch-fp is the FP model itself: an artifact's source checkpoint where it still is (a GPTQ
        # artifact's own weights are already rounded)
        model, note = (torch_model(source, quantized=True), None) if quantized else fp_model_and_note(source)
        if note:
            print(f"note: {note}", file=sys.stderr)
        kind = "same-graph" if spec == "torch" or manifest.quantization is None else "other-model"
        device = torch_device(device)
        name = f"{spec}-{precision}"
        return Reference(f"{spec} {precision}", kind, lambda decode: TorchSession(model, precision, device, name=name),
                         fake_quant_model=model if quantized else None)
    if spec == "onnxruntime":
        if engine is None:
            raise MQDeployError("--reference onnxruntime compares an engine with ONNX Runtime; without "
                                "--engine the subject already is ONNX Runtime on that graph")
        return Reference("onnxruntime", "same-graph",
                         lambda decode: OnnxruntimeSession(onnx_path, decode=decode, manifest=manifest))
    kind, _, path = spec.partition(":")
    if kind in ("onnx", "engine") and path:
        if not Path(path).is_file():
            raise MQDeployError(f"--reference {spec}: {path} does not exist")
        if kind == "onnx":
            other = Manifest.load(path)
            other.graph_of(path)                        # an export set of ours: checked now, not mid-comparison
            if other.is_vision != manifest.is_vision:
                raise MQDeployError(f"--reference {spec}: one export is a Vision Mamba's and the other a language "
                                    "model's; compare exports of the same kind of model")
            return Reference(spec, "other-model", lambda decode: OnnxruntimeSession(path, decode=decode))
        from ..trt.session import TensorRTSession
        return Reference(spec, "other-model", lambda decode: TensorRTSession(path, plugins, decode=decode))
    raise MQDeployError(f"unknown --reference {spec!r}; use torch, torch-fp, onnxruntime, onnx:PATH or engine:PATH")


def default_references(manifest: Manifest, engine) -> list[str]:
    refs = ["onnxruntime"] if engine is not None else []
    refs.append("torch")
    if manifest.quantization is not None:
        refs.append("torch-fp")
    return refs


def _subject(onnx_path: Path, engine, plugins, manifest: Manifest):
    """(name, open_session(decode))."""
    from ..deploy.onnxruntime_session import OnnxruntimeSession
    if engine is None:
        return "onnxruntime", lambda decode: OnnxruntimeSession(onnx_path, decode=decode, manifest=manifest)
    if not Path(engine).is_file():
        raise MQDeployError(f"engine {engine} does not exist; build it with `mq-deploy build --onnx "
                            f"{onnx_path} --engine {engine}`")
    from ..trt.runtime import load_engine
    from ..trt.session import TensorRTSession
    load_engine(engine, plugins)                # a bad plan fails now with its own error, not mid-comparison
    return "tensorrt", lambda decode: TensorRTSession(engine, plugins, decode=decode)


DECODE_STEPS = 32     # validated decode steps (at the end of the first window; the rest is its prefill)


def decided_agreement(ours: np.ndarray, ref: np.ndarray, tie: float) -> float:
    """Top-1 agreement over the rows where the reference prefers its top-1 class to the subject's by
    more than `tie` (rows where the two pick the same class always count as agreeing)."""
    ref = np.asarray(ref, np.float64).reshape(-1, ref.shape[-1])      # a row per image or token position
    mine, theirs = np.asarray(ours).reshape(-1, ref.shape[-1]).argmax(-1), ref.argmax(-1)
    rows = np.arange(len(ref))
    margin = ref[rows, theirs] - ref[rows, mine]          # 0 where both agree
    decided = (mine == theirs) | (margin > tie)
    return float((mine == theirs)[decided].mean()) if decided.any() else 1.0


def _judge(subject: list[dict], reference: list[dict], feeds: list[dict], accuracy, tol: Tolerance,
           labels=None) -> dict:
    """accuracy: Polygraphy's AccuracyResults of this one pair. labels: the true classes of a vision
    model's images (None: unlabelled, or token ids, whose next tokens are the labels)."""
    from polygraphy.comparator.compare import OutputCompareResult
    ours = np.concatenate([r["logits"] for r in subject])
    ref = np.concatenate([r["logits"] for r in reference])
    if ours.shape != ref.shape:
        raise MQDeployError(f"the subject's logits are {list(ours.shape)}, the reference's {list(ref.shape)}: "
                            "they are not the same model (vocabulary) or not a prefill graph")
    vision = IMAGES in feeds[0]
    ids = None if vision else np.concatenate([f["input_ids"] for f in feeds])
    failures, notes = [], []
    # NaN first: every measure below is meaningless (or silently NaN) once a logit is not finite
    for who, logits in (("subject", ours), ("reference", ref)):
        bad = int((~np.isfinite(logits)).sum())
        if bad:
            failures.append(f"NaN in logits: the {who}'s logits hold {bad} NaN/inf values of {logits.size}")
    if vision:
        nll_subject, nll_ref = ((label_nll(ours, labels), label_nll(ref, labels)) if labels is not None
                                else (None, None))
    else:
        nll_subject, nll_ref = next_token_nll(ours, ids), next_token_nll(ref, ids)
    metrics = logits_error(ours, ref)
    medians = {}
    for iteration in list(accuracy[0].values())[0]:
        for output, result in iteration.items():
            if not isinstance(result, OutputCompareResult):     # Polygraphy could not compare (shapes)
                failures.append(f"Polygraphy could not compare {output}")
                continue
            medians[output] = max(medians.get(output, 0.0), float(result.median_absdiff))
    if not medians:
        failures.append("no output was compared")
    elif not bool(accuracy) or any(not v <= tol.median_abs for v in medians.values()):
        worst = max(medians, key=lambda k: np.nan_to_num(medians[k], nan=np.inf))
        failures.append(f"median |difference| of {worst} is {medians[worst]:.3g} > {tol.median_abs:g}")
    scales = {}
    if tol.max_channel_scale_error is not None:
        for name in sorted(k for k in subject[0] if k.startswith(CONV_STATE_PREFIX) and k in reference[0]):
            state = np.concatenate([r[name] for r in subject])
            state_ref = np.concatenate([r[name] for r in reference])
            values = state_ref.size // state_ref.shape[1]
            if values < MIN_CHANNEL_VALUES:     # a scale fitted to a handful of values is noise, not evidence
                scales[name] = {"not_judged": f"{values} values a channel, fewer than {MIN_CHANNEL_VALUES}"}
                if not any("not judged" in n for n in notes):
                    notes.append(f"conv-state channel scales not judged: {values} values a channel (the last tokens "
                                 f"of {state_ref.shape[0]} sequences), fewer than {MIN_CHANNEL_VALUES}")
                continue
            scale, channel = channel_scale_error(state, state_ref)
            scales[name] = {"worst_channel": channel, "scale": scale}
            if not abs(scale - 1) <= tol.max_channel_scale_error:
                failures.append(f"{name} channel {channel} is scaled by {scale:.3f} against the reference, beyond "
                                f"±{100 * tol.max_channel_scale_error:g} %: a per-channel fault (e.g. a wrong weight "
                                "scale) before that layer's conv")
    # A flip between two classes (tokens) that the reference all but ties, its top-1 ahead of the
    # subject's by less than the tolerated |Δlogit|, is rounding noise, not a disagreement: one image is
    # a large share of a small set, and a random-init LM's flat logits tie often (the median check
    # still sees a graph that moves every logit).
    agreement = metrics["decided_top1_agreement"] = decided_agreement(ours, ref, tol.median_abs)
    if agreement < tol.min_argmax_agreement:
        failures.append(f"{'top-1' if vision else 'argmax'} agreement (near-ties aside) "
                        f"{100 * agreement:.2f}% < {100 * tol.min_argmax_agreement:.1f}%")
    verdict = {"logits": metrics, "median_abs_per_output": medians, "channel_scale_error": scales, "notes": notes}
    if nll_subject is not None:
        increase = nll_subject / nll_ref - 1
        if not increase <= tol.max_nll_increase:       # NaN fails too
            failures.append(f"NLL {100 * increase:+.2f}% vs the reference > {100 * tol.max_nll_increase:+.1f}%")
        verdict["nll"] = {"subject": nll_subject, "reference": nll_ref, "relative_increase": increase}
        if not vision:
            verdict["perplexity"] = {"subject": float(np.exp(nll_subject)), "reference": float(np.exp(nll_ref))}
    if vision and labels is not None:
        verdict["top1"] = {"subject": float((ours.argmax(-1) == labels).mean()),
                           "reference": float((ref.argmax(-1) == labels).mean())}
    return {**verdict, "passed": not failures, "failures": failures}


def validate(onnx_path, feeds: list[dict], engine=None, references: list[str] | None = None, model_dir=None,
             device: str = "auto", plugins=None, tolerances: dict[str, Tolerance] | None = None,
             manifest: Manifest | None = None, labels=None) -> dict:
    """Compare the subject with each reference on `feeds` ([{"input_ids": int64 [b, L]}], or a vision
    model's [{"images": float32 [b, C, H, W]}] with their `labels` when known); report dict."""
    try:
        from polygraphy.comparator import Comparator, SimpleCompareFunc
        from polygraphy.logger import G_LOGGER
    except ImportError:
        raise MQDeployError("validate needs Polygraphy 0.53 or newer: pip install 'mq-deploy[onnx]'") from None
    onnx_path = Path(onnx_path)
    manifest = manifest or Manifest.load(onnx_path)
    vision = manifest.is_vision
    tolerances = {**(VISION_TOLERANCES if vision else TOLERANCES), **(tolerances or {})}
    subject_name, subject = _subject(onnx_path, engine, plugins, manifest)
    refs = [_parse_reference(s, onnx_path, engine, manifest, model_dir, device, plugins)
            for s in (references or default_references(manifest, engine))]
    start = time.perf_counter()
    results = _run_all(Comparator, G_LOGGER, [_runner(subject_name, subject, vision)]
                       + [_runner(r.name, r.open_session, vision) for r in refs], feeds)
    report = {"producer": f"mq-deploy {__version__}",
              "onnx": str(onnx_path), "engine": str(engine) if engine else None, "subject": subject_name,
              "precision": manifest.precision,
              "recipe": (manifest.quantization or {}).get("recipe"),
              "inputs": ({"batches": len(feeds), "shape": list(feeds[0][IMAGES].shape),
                          "images": int(sum(len(f[IMAGES]) for f in feeds))} if vision else
                         {"batches": len(feeds), "shape": list(feeds[0]["input_ids"].shape),
                          "tokens": int(sum(f["input_ids"].size for f in feeds))}),
              "references": []}
    for j, ref in enumerate(refs, start=1):
        tol = tolerances[ref.kind]
        verdict = _judge(results[0][1], results[j][1], feeds, _accuracy(Comparator, SimpleCompareFunc, G_LOGGER,
                                                                          results, j, tol), tol,
                         labels=None if labels is None else np.asarray(labels))
        if not verdict["passed"] and ref.fake_quant_model is not None and not vision and is_qdq_graph(onnx_path):
            # which failure is it: tie flips the model amplifies, or a graph that computes something else
            verdict["explanation"] = explain_qdq_failure(onnx_path, ref.fake_quant_model, feeds, manifest.precision,
                                                         verdict["failures"])
        report["references"].append({"reference": ref.name, "kind": ref.kind, "tolerance": asdict(tol), **verdict})
    skip = _decode_skip_reason(manifest, engine, references or default_references(manifest, engine))
    if skip:
        report["decode"] = {"skipped": skip, "references": []}
    else:
        # the decode graph (or plan) generation runs: the first feed again, its last tokens one
        # decode step at a time, against each reference doing the same
        ids = feeds[0]["input_ids"]
        split = max(1, ids.shape[1] - DECODE_STEPS)
        decoded = _run_all(Comparator, G_LOGGER, [_runner(subject_name, subject, False, split)]
                           + [_runner(r.name, r.open_session, False, split) for r in refs], feeds[:1])
        steps = [{"input_ids": ids[:, split:]}]       # what the decode steps' logits predict from
        report["decode"] = {"prefill_tokens": split, "steps": int(ids.shape[1] - split), "references": []}
        for j, ref in enumerate(refs, start=1):
            tol = tolerances[ref.kind]
            verdict = _judge(decoded[0][1], decoded[j][1], steps,
                             _accuracy(Comparator, SimpleCompareFunc, G_LOGGER, decoded, j, tol), tol)
            report["decode"]["references"].append({"reference": ref.name, "kind": ref.kind, "tolerance": asdict(tol),
                                                   **verdict})
    report["seconds"] = round(time.perf_counter() - start, 2)
    report["passed"] = all(r["passed"] for r in report["references"] + report.get("decode", {}).get("references", []))
    return report


def _decode_skip_reason(manifest: Manifest, engine, references: list[str]) -> str | None:
    """Why the decode pass cannot run (a vision model; the set, an onnx: reference's set or an engine
    without its decode graph), or None."""
    if manifest.is_vision:
        return "a classifier has no decode graph"
    sets = [manifest] + [Manifest.load(s.partition(":")[2]) for s in references if s.startswith("onnx:")]
    for other in sets:
        if "decode" not in other.graphs or not Path(other.graph("decode").path).is_file():
            return f"the export set at {other.folder} has no decode graph (exported with --no-decode?)"
    plans = ([engine] if engine else []) + [s.partition(":")[2] for s in references if s.startswith("engine:")]
    if plans:
        from ..trt.session import decode_plan_of
        for plan in plans:
            try:
                decode = decode_plan_of(Path(plan))
            except MQDeployError as e:
                return str(e).split(";")[0]
            if not decode.is_file():
                return f"{plan}'s decode plan {decode.name} is missing"
    return None


def _run_all(Comparator, G_LOGGER, runners: list, feeds: list[dict]):
    """Comparator.run over the runners, its failures as one error line."""
    try:
        with G_LOGGER.verbosity(G_LOGGER.WARNING):      # Polygraphy prints every feed and output otherwise
            return Comparator.run(runners, data_loader=feeds)
    except MQDeployError:
        raise
    except Exception as e:  # noqa: BLE001 - Polygraphy's and ONNX Runtime's errors (plain Exception subclasses)
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        raise MQDeployError(f"running the comparison failed: {lines[-1] if lines else type(e).__name__}; check that "
                            "every graph/engine is a graph of this model and that the inputs fit the "
                            "engine's profile (--seq-len, --batch)") from None


def _accuracy(Comparator, SimpleCompareFunc, G_LOGGER, results, j: int, tol: Tolerance):
    """Polygraphy's median |Δ| comparison of runner 0 with runner j, on the outputs `tol` names."""
    wanted = None if tol.outputs == "all" else {tol.outputs}

    def find_output(name, index, iter_result):
        return [name] if name in iter_result and (wanted is None or name in wanted) else None

    with G_LOGGER.verbosity(G_LOGGER.ERROR):
        return Comparator.compare_accuracy(results, comparisons=[(0, j)], compare_func=SimpleCompareFunc(
            check_error_stat="median", atol=tol.median_abs, rtol=0.0, find_output_func=find_output))


def validate_export(onnx_path, engine=None, references=None, model_dir=None, text=None, token_file=None,
                    samples: int = 4, seq_len: int = 256, batch: int = 1, device: str = "auto", plugins=None,
                    images=None) -> dict:
    """`validate` on held-out text windows (default: the bundled held-out text) or given token ids; a
    vision export on `images` (a folder, a .npy of preprocessed images, or digits:heldout, the
    default for the vision demo's 32x32 model), `batch` images at a time."""
    from ..data.token_files import is_token_file
    from ..deploy.source import source_dir, tokenizer_of
    from ..samples import HELDOUT_TEXT, sample_text
    from .inputs import check_feed_settings, token_feeds
    onnx_path = Path(onnx_path)
    manifest = Manifest.load(onnx_path)
    manifest.graph_of(onnx_path)
    if token_file is not None and text is not None:
        raise MQDeployError("give --text or --tokens, not both")
    check_feed_settings(samples, seq_len, batch)
    if engine is not None and not Path(engine).is_file():
        raise MQDeployError(f"engine {engine} does not exist; build it with `mq-deploy build --onnx "
                            f"{onnx_path} --engine {engine}`")
    changed = manifest.modified_files()
    if changed:
        verb = "differs" if len(changed) == 1 else "differ"
        print(f"note: {', '.join(changed)} {verb} from the files export wrote (sha256 in manifest.json); "
              "validating the files as they are", file=sys.stderr)
    refs = references or default_references(manifest, engine)
    if manifest.is_vision:
        if text is not None or token_file is not None:
            raise MQDeployError(f"{onnx_path} is a Vision Mamba's export: it takes images, not text or token ids; "
                                "give --images (a folder, a .npy of preprocessed images, digits:heldout or "
                                "mnist:heldout)")
        return _validate_vision(onnx_path, manifest, images, engine, references, model_dir, batch, device, plugins)
    if images is not None:
        raise MQDeployError(f"--images is for a vision export; {onnx_path} takes token ids (--text / --tokens)")
    needs_tokenizer = token_file is None and not (text is not None and is_token_file(text))
    needs_model = model_dir is not None or needs_tokenizer or any(r in ("torch", "torch-fp") for r in refs)
    model = source_dir(manifest, model_dir) if needs_model else None     # provenance first, then the ids
    feeds = token_feeds(lambda: tokenizer_of(model, manifest), manifest.vocab_size,
                        text=text or str(sample_text(HELDOUT_TEXT)), token_file=token_file, samples=samples,
                        seq_len=seq_len, batch=batch)
    return validate(onnx_path, feeds, engine=engine, references=references, model_dir=model_dir, device=device,
                    plugins=plugins, manifest=manifest)


def _validate_vision(onnx_path, manifest: Manifest, images, engine, references, model_dir, batch, device,
                     plugins) -> dict:
    from ..data.image_sources import MAX_EVAL_IMAGES, check_labels, images_or_default, load_image_source
    from ..deploy.source import bundled_training_set
    channels, size, _ = manifest.image_shape
    images = images_or_default(images, size, onnx_path, bundled_training_set(model_dir or manifest.source_path))
    loaded = load_image_source(images, size, MAX_EVAL_IMAGES, option="--images")
    if loaded.images.shape[1] != channels:
        raise MQDeployError(f"--images {images}: the graph takes {channels}-channel images")
    check_labels(loaded, int(manifest.model_config["num_classes"]), "--images")
    per_batch = max(batch, 1)
    feeds = [{IMAGES: chunk.numpy()} for chunk in loaded.images.split(per_batch)]
    report = validate(onnx_path, feeds, engine=engine, references=references, model_dir=model_dir, device=device,
                      plugins=plugins, manifest=manifest, labels=None if loaded.labels is None else loaded.labels.numpy())
    report["inputs"]["source"] = loaded.label
    return report


def format_report(report: dict) -> str:
    """A markdown table, one row per reference, then the verdict."""
    inputs = report["inputs"]
    if "images" in inputs:
        return _format_vision_report(report)
    lines = [f"{report['subject']} on {report['engine'] or report['onnx']} ({report['precision']}"
             f"{', ' + report['recipe'] if report['recipe'] else ''}), {inputs['tokens']:,} tokens in "
             f"{inputs['batches']} batches of {inputs['shape']}", "",
             *LM_TABLE_HEAD] + [_lm_row(r) for r in report["references"]]
    decode = report.get("decode")
    if decode and decode.get("skipped"):
        lines += ["", f"decode: not validated ({decode['skipped']})"]
    elif decode:
        lines += ["", f"decode graph{' (plan)' if report['engine'] else ''}: the first window's last {decode['steps']} "
                  f"tokens one decode step at a time after a prefill of {decode['prefill_tokens']}: the steps' logits "
                  "and the final state", "", *LM_TABLE_HEAD] + [_lm_row(r) for r in decode["references"]]
    for r in report["references"]:
        if "explanation" in r:
            graph = "the ONNX graph: " if report["engine"] else ""
            lines += ["", f"why {r['reference']} failed: {graph}{r['explanation']['explanation']}"]
    for r in report["references"]:      # the decode pass compares one sequence: its notes stay in the JSON
        lines += [f"note ({r['reference']}): {note}" for note in r.get("notes", [])]
    lines += ["", "tolerances: same-graph " + _describe(TOLERANCES["same-graph"]) + "; other-model "
              + _describe(TOLERANCES["other-model"]) + "; " + NEAR_TIE,
              f"validation {'passed' if report['passed'] else 'FAILED'} in {report['seconds']:.1f} s"]
    return "\n".join(lines)


LM_TABLE_HEAD = ("| reference | tolerance | max abs | relative | min cosine | argmax agreement | median abs (worst "
                 "output) | perplexity (subject / reference) | result |", "|---|---|---:|---:|---:|---:|---:|---:|---|")


def _lm_row(r: dict) -> str:
    m, worst = r["logits"], max(r["median_abs_per_output"].items(), key=lambda kv: kv[1], default=("-", 0.0))
    return (f"| {r['reference']} | {r['kind']} | {m['max_abs']:.3g} | {m['relative']:.3g} | "
            f"{m['min_cosine']:.5f} | {_agreement(m)} | {worst[1]:.3g} ({worst[0]}) | "
            f"{r['perplexity']['subject']:.4f} / {r['perplexity']['reference']:.4f} | "
            f"{'pass' if r['passed'] else 'FAIL: ' + '; '.join(r['failures'])} |")


def _format_vision_report(report: dict) -> str:
    inputs = report["inputs"]
    lines = [f"{report['subject']} on {report['engine'] or report['onnx']} ({report['precision']}"
             f"{', ' + report['recipe'] if report['recipe'] else ''}), {inputs['images']:,} images of "
             f"{inputs.get('source', '?')} in {inputs['batches']} batches", "",
             "| reference | tolerance | max abs | relative | top-1 agreement | median abs | top-1 (subject / reference) "
             "| result |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in report["references"]:
        m = r["logits"]
        median = max(r["median_abs_per_output"].values(), default=0.0)
        top1 = (f"{100 * r['top1']['subject']:.2f}% / {100 * r['top1']['reference']:.2f}%" if "top1" in r
                else "no labels")
        lines.append(f"| {r['reference']} | {r['kind']} | {m['max_abs']:.3g} | {m['relative']:.3g} | "
                     f"{_agreement(m)} | {median:.3g} | {top1} | "
                     f"{'pass' if r['passed'] else 'FAIL: ' + '; '.join(r['failures'])} |")
    lines += ["", "tolerances: same-graph " + _describe(VISION_TOLERANCES["same-graph"], "top-1")
              + "; other-model " + _describe(VISION_TOLERANCES["other-model"], "top-1") + "; " + NEAR_TIE,
              f"validation {'passed' if report['passed'] else 'FAILED'} in {report['seconds']:.1f} s"]
    return "\n".join(lines)


NEAR_TIE = ("a flip between two classes the reference separates by less than the median |Δ| tolerance is a "
            "near-tie, not a disagreement")


def _agreement(m: dict) -> str:
    """The plain agreement, and the judged one (near-ties aside) where they differ."""
    decided = m.get("decided_top1_agreement", m["argmax_agreement"])
    return f"{100 * m['argmax_agreement']:.2f}%" + (f" ({100 * decided:.2f}% near-ties aside)"
                                                    if decided != m["argmax_agreement"] else "")


def _describe(t: Tolerance, agreement: str = "argmax") -> str:
    channels = (f", conv-state channel scales within ±{100 * t.max_channel_scale_error:g}% "
                f"(judged on {MIN_CHANNEL_VALUES}+ values a channel)"
                if t.max_channel_scale_error is not None else "")
    return (f"median |Δ| <= {t.median_abs:g} ({t.outputs} outputs), {agreement} >= {100 * t.min_argmax_agreement:g}%, "
            f"NLL <= {100 * t.max_nll_increase:+g}%{channels}")
