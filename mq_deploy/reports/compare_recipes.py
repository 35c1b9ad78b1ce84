"""`mq-deploy compare-recipes`: every recipe × bit setting × mode on one model and one held-out text,
in one table (markdown + JSON): perplexity, its change vs FP, KL(FP ‖ quantized) per token (how far the
next-token distributions moved: eval/fidelity.py), and calibration time. A recipe with
random rotations runs at several seeds: its row is their mean, and the intervals and the winners
account for the spread between seeds as well as between windows (eval/paired.py)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
from pathlib import Path

from ..atomic_dir import atomic_files
from ..errors import MQDeployError
from ..data.calibration import calibration_batches
from ..eval import evaluate_model
from ..eval.fidelity import FPReference
from ..eval.paired import decisive_best, paired_difference
from ..models.checkpoints import load_checkpoint
from ..quant.artifact import is_quantized_artifact
from ..quant.config import QuantConfig
from ..quant.quantize import quantize
from ..outputs import PRODUCER, check_output_files, read_own_json, report_prefix
from ..quant.recipes import RECIPES, get_recipe, uses_seed

BIT_SETTINGS = ((8, 8), (4, 8), (4, 16))
MODES = ("deploy", "paper")
RECIPE_COMPARISON = "recipe comparison"
SEEDS = 3          # per recipe with random rotations: at W4A16 on the demo model one seed's luck moved
                   # QuaRot by 0.3 points, more than any window interval


def parse_bit_settings(labels) -> tuple[tuple[int, int], ...]:
    """("W8A8", "W4A16", ...) -> ((8, 8), (4, 16), ...): the settings compare-recipes knows, in its order."""
    known = {QuantConfig(w_bits=w, a_bits=a).label: (w, a) for w, a in BIT_SETTINGS}
    wanted = [label.upper() for label in labels]
    unknown = [label for label in wanted if label not in known]
    if unknown:
        raise MQDeployError(f"--bits {unknown[0]}: choose from {', '.join(known)}")
    return tuple(known[label] for label in known if label in wanted)


def compare_recipes(model_dir, calib: str, eval_text: str, recipes=RECIPES, bit_settings=BIT_SETTINGS,
                    modes=MODES, calib_samples: int = 32, calib_seq_len: int = 512,
                    eval_max_tokens: int | None = 65536, progress: bool = True, log=print, peers=None,
                    seeds: int = SEEDS, quantize_conv: bool = False) -> dict:
    """peers: ModelOpt configs to run beside the recipes (reports/modelopt_peer.py); None: all of
    them when nvidia-modelopt is installed, none otherwise. seeds: how many rotation seeds (0, 1,
    ...) each recipe with random signs runs at (the others are one model whatever the seed).
    quantize_conv: every recipe also quantizes the depthwise conv (QuantConfig.quantize_conv), the
    one deploy-mode point where MambaQuant's S7 smoothing changes what is quantized; the ModelOpt
    peers keep their own configs (the conv in floating point)."""
    if seeds < 1:
        raise MQDeployError(f"--seeds {seeds}: give at least 1")
    from .modelopt_peer import PEERS, modelopt_quantize, modelopt_unavailable
    why_not = modelopt_unavailable()
    if peers is None:
        peers = list(PEERS) if why_not is None else []
        if why_not is not None:
            log(f"note: no ModelOpt peers in this comparison ({why_not})")
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise MQDeployError(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)}")
    if peers and why_not is not None:
        raise MQDeployError(f"--peers {peers[0]}: {why_not}")
    for recipe in recipes:
        get_recipe(recipe)                       # an unknown name fails now, not after the first recipe
    if is_quantized_artifact(model_dir):
        raise MQDeployError(f"--model {model_dir} is a quantized artifact; compare the recipes on the FP checkpoint it "
                            "was made from (quant.json names it under source)")
    loaded = load_checkpoint(model_dir)          # Mamba-1 or Mamba-2
    modes = tuple(modes)
    tokenizer = lambda: loaded.tokenizer  # noqa: E731 - a text needs it; token ids do not
    batches, calib_label = calibration_batches(tokenizer, calib, calib_samples, calib_seq_len,
                                               loaded.config.vocab_size, option="--calib")
    reference = FPReference(loaded.model)
    fp = evaluate_model(loaded.model, tokenizer, eval_text, max_tokens=eval_max_tokens, progress=progress,
                        option="--eval", reference=reference)
    rows = []
    for recipe in recipes:
        for w_bits, a_bits in bit_settings:
            for mode in modes:
                runs = []
                for seed in range(seeds if uses_seed(recipe) else 1):
                    config = QuantConfig(w_bits=w_bits, a_bits=a_bits, mode=mode, seed=seed,
                                         quantize_conv=quantize_conv)
                    start = time.perf_counter()
                    qm = quantize(loaded.model, recipe, batches, config, progress=progress)
                    seconds = time.perf_counter() - start
                    q = evaluate_model(qm.model, tokenizer, eval_text, max_tokens=eval_max_tokens,
                                       progress=progress, option="--eval", reference=reference)
                    runs.append((q, seconds))
                    log(f"{recipe:>11} {config.label} {mode:<6} seed {seed} perplexity {q['perplexity']:.4f} "
                        f"({100 * (q['perplexity'] / fp['perplexity'] - 1):+.2f}%)  KL {q['kl_per_token']:.2e}  "
                        f"calibration {seconds:.1f} s")
                rows.append(_row(recipe, config, mode, runs, fp))
    labels = {QuantConfig(w_bits=w, a_bits=a).label for w, a in bit_settings}
    for peer in peers:
        bits = PEERS[peer][0]
        if bits not in labels or "deploy" not in modes:
            log(f"{peer}: skipped ({bits} deploy is not among the settings compared)")
            continue
        model, seconds = modelopt_quantize(loaded.model, peer, batches)
        q = evaluate_model(model, tokenizer, eval_text, max_tokens=eval_max_tokens, progress=progress, option="--eval",
                           reference=reference)
        rows.append({"recipe": peer, "bits": bits, "mode": "deploy", "perplexity": q["perplexity"],
                     "change_percent": 100 * (q["perplexity"] / fp["perplexity"] - 1),
                     "vs_fp": paired_difference(q["window_nll"], fp["window_nll"]),
                     "kl": q["kl_per_token"], "kl_interval": kl_interval(q["window_kl"]),
                     "bits_per_byte": q["bits_per_byte"], "calibration_seconds": seconds,
                     "weight_rounding": "modelopt", "window_nll": q["window_nll"], "window_kl": q["window_kl"]})
        log(f"{peer} {bits} perplexity {q['perplexity']:.4f} ({rows[-1]['change_percent']:+.2f}%)  "
            f"KL {q['kl_per_token']:.2e}  calibration {seconds:.1f} s")
    return {"producer": PRODUCER, "file_kind": RECIPE_COMPARISON, "model": str(model_dir),
            "calibration": {"text": calib_label, "samples": int(batches.shape[0]), "seq_len": int(batches.shape[1])},
            "eval": {"text": fp["text"], "tokens": fp["scored_tokens"]}, "quantize_conv": quantize_conv,
            "fp_perplexity": fp["perplexity"],
            "fp_bits_per_byte": fp["bits_per_byte"], "fp_window_nll": fp["window_nll"], "rows": rows,
            "decisions": decisions(rows)}


def _row(recipe: str, config: QuantConfig, mode: str, runs: list[tuple[dict, float]], fp: dict) -> dict:
    """One table row from a recipe's runs (one per seed): the seed-mean NLL, its perplexity and change
    against FP, each seed's change, and the interval over windows and seeds."""
    per_seed = [q["window_nll"] for q, _ in runs]
    kl_per_seed = [q["window_kl"] for q, _ in runs]
    mean_nll = sum(q["nll_per_token"] for q, _ in runs) / len(runs)
    bits_per_byte = [q["bits_per_byte"] for q, _ in runs]
    row = {"recipe": recipe, "bits": config.label, "mode": mode, "perplexity": math.exp(mean_nll),
           "change_percent": 100 * (math.exp(mean_nll) / fp["perplexity"] - 1),
           "vs_fp": paired_difference(per_seed if len(runs) > 1 else per_seed[0], fp["window_nll"]),
           "kl": sum(q["kl_per_token"] for q, _ in runs) / len(runs),
           "kl_interval": kl_interval(kl_per_seed if len(runs) > 1 else kl_per_seed[0]),
           "bits_per_byte": None if None in bits_per_byte else sum(bits_per_byte) / len(runs),
           "calibration_seconds": sum(t for _, t in runs) / len(runs),
           "weight_rounding": config.weight_rounding,
           "window_nll": [sum(w) / len(runs) for w in zip(*per_seed)],
           "window_kl": [sum(w) / len(runs) for w in zip(*kl_per_seed)]}
    if len(runs) > 1:
        row["seed_change_percent"] = [100 * (q["perplexity"] / fp["perplexity"] - 1) for q, _ in runs]
        row["seed_window_nll"] = per_seed
        row["seed_window_kl"] = kl_per_seed
    return row


def kl_interval(window_kl) -> dict:
    """The bootstrap interval of a model's mean KL per token (over windows, and seeds when several):
    the paired difference against an FP model, whose KL against itself is zero in every window."""
    kl = np.asarray(window_kl, dtype=np.float64)
    v = paired_difference(kl, np.zeros(kl.shape[-1]))
    return {"low": v["low_nll"], "high": v["high_nll"], "confidence": v["confidence"]}
    return row


def decisions(rows: list[dict]) -> list[dict]:
    """Per bit setting and mode: the best recipe, and whether its lead over each other recipe is
    beyond the paired interval over evaluation windows; by perplexity (NLL), and by fidelity to FP
    (the lowest KL(FP ‖ q), under "fidelity", where the rows measured it)."""
    out = []
    for key in dict.fromkeys((r["bits"], r["mode"]) for r in rows):
        group = [r for r in rows if (r["bits"], r["mode"]) == key]
        if len(group) > 1:
            names = [r["recipe"] for r in group]
            verdict = decisive_best(names, {r["recipe"]: r.get("seed_window_nll", r["window_nll"]) for r in group})
            if all(r.get("window_kl") for r in group):
                verdict["fidelity"] = decisive_best(names, {r["recipe"]: r.get("seed_window_kl", r["window_kl"])
                                                            for r in group})
            out.append({"bits": key[0], "mode": key[1], **verdict})
    return out


def to_markdown(result: dict) -> str:
    lines = [f"Model `{result['model']}`; calibration {result['calibration']['samples']}×"
             f"{result['calibration']['seq_len']} tokens of {result['calibration']['text']}; evaluation "
             f"{result['eval']['tokens']:,} tokens of {result['eval']['text']}. "
             f"FP perplexity {result['fp_perplexity']:.4f}"
             + (f" ({result['fp_bits_per_byte']:.4f} bits/byte)." if result["fp_bits_per_byte"] is not None else
                " (token ids: no bytes to count).") + _conv_note(result), "",
             f"| recipe | bits | mode | weight rounding | perplexity | vs FP | {_interval_header(result)} | "
             "KL(FP ‖ q) per token | seeds: vs FP each | calibration (s) |", "|---|---|---|---|---:|---:|---|---:|---|---:|"]
    for r in result["rows"]:
        v = r["vs_fp"]
        each = r.get("seed_change_percent")
        seeds = f"{len(each)}: " + ", ".join(f"{c:+.2f}%" for c in each) if each else "1"
        lines.append(f"| {r['recipe']} | {r['bits']} | {r['mode']} | {r.get('weight_rounding', 'rtn')} | "
                     f"{r['perplexity']:.4f} | "
                     f"{r['change_percent']:+.2f}% | {v['low_percent']:+.2f}% … {v['high_percent']:+.2f}% | "
                     f"{_kl(r.get('kl'))} | {seeds} | {r['calibration_seconds']:.1f} |")
    if result.get("decisions"):
        lines += ["", "A recipe with random rotations runs at several seeds: its perplexity is that of the "
                  "seed-mean NLL, and its intervals resample seeds as well as windows. Best recipe per setting, "
                  "and whether its lead is beyond the paired interval (the interval of the other recipe's NLL "
                  "minus the best one's, over the same windows, lies above zero; windows are treated as "
                  "independent, and a few seeds give a narrow seed bootstrap, so the intervals lean optimistic)."
                  + (" ModelOpt's W4A8 AWQ quantizes activations to FP8, the recipes' W4A8 to INT8."
                     if any(r["recipe"] == "modelopt-w4a8-awq" for r in result["rows"]) else ""), "",
                  "Two questions, two verdicts. *Perplexity*: which model scores the text best. *Fidelity*: which "
                  "model's next-token distributions stay closest to FP's, by mean KL(FP ‖ q) per token (nats), "
                  "the same paired test on the per-window KL. Where a quantized model scores below FP (an "
                  "out-of-domain text), perplexity rewards drift; fidelity does not, and it is what a deployment "
                  "that must behave as the FP model did asks for:", ""]
        for d in result["decisions"]:
            lines.append(f"- {d['bits']} {d['mode']}, perplexity: {d['best']}, {_verdict(d, _percent_interval)}")
            if d.get("fidelity"):
                f = d["fidelity"]
                lines.append(f"- {d['bits']} {d['mode']}, fidelity: {f['best']}, {_verdict(f, _kl_interval_text)}")
    return "\n".join(lines) + "\n"


def _conv_note(result: dict) -> str:
    if not result.get("quantize_conv"):
        return ""
    peers = any(r.get("weight_rounding") == "modelopt" for r in result["rows"])
    return (" The recipes quantize the depthwise conv too (`--quantize-conv`: INT8 per-channel weights, its input "
            "at the row's activation bits, floating point at A16)"
            + ("; ModelOpt peers keep it in floating point" if peers else "") + ".")


def _verdict(d: dict, interval) -> str:
    unsure = [f"{name} ({interval(v)})" for name, v in d["against"].items() if not v["decisive"]]
    windows = next(iter(d["against"].values()))["windows"]
    if d["decisive"]:
        return "**winner**: better than every other recipe"
    if d.get("too_few_windows"):
        return f"nothing decided: {windows} windows are too few for an interval"
    return "no decisive winner: not distinguishable from " + ", ".join(unsure)


def _percent_interval(v: dict) -> str:
    return f"{v['low_percent']:+.2f}% … {v['high_percent']:+.2f}%"


def _kl_interval_text(v: dict) -> str:
    """The other recipe's excess KL over the best one's."""
    return f"excess KL {v['low_nll']:+.1e} … {v['high_nll']:+.1e}"


def _kl(value) -> str:
    return "—" if value is None else f"{value:.2e}"


def _interval_header(result: dict) -> str:
    v = result["rows"][0]["vs_fp"] if result["rows"] else {"confidence": 0.95, "windows": 0}
    return f"{100 * v['confidence']:g}% interval ({v['windows']} windows)"


def report_paths(out_prefix) -> tuple[Path, Path]:
    out_prefix = report_prefix(out_prefix)
    return out_prefix.with_name(out_prefix.name + ".md"), out_prefix.with_name(out_prefix.name + ".json")


def check_report_target(out_prefix, force: bool, inputs=()) -> None:
    """Before any work: <prefix>.md/.json are new, or a previous table of ours and --force."""
    previous = read_own_json(report_paths(out_prefix)[1], RECIPE_COMPARISON)
    ours = previous is not None and "decisions" in previous     # (an older report has no file_kind)
    check_output_files(list(report_paths(out_prefix)), RECIPE_COMPARISON, lambda p: ours, force, inputs=inputs,
                       option="--out")


def write_report(result: dict, out_prefix, force: bool = False) -> tuple[Path, Path]:
    """<prefix>.md and <prefix>.json, written together or not at all."""
    check_report_target(out_prefix, force)
    md, js = report_paths(out_prefix)
    with atomic_files() as stage:
        stage.file(md).write_text(to_markdown(result), encoding="utf-8")
        stage.file(js).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return md, js
