"""`mq-deploy compare-recipes`: every recipe × bit setting × mode on one model and one held-out text,
in one table (markdown + JSON): perplexity, its change vs FP, and calibration time."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..data.calibration import calibration_batches
from ..eval import evaluate_model
from ..models.loading import load_model
from ..quant.config import QuantConfig
from ..quant.quantize import quantize
from ..quant.recipes import RECIPES

BIT_SETTINGS = ((8, 8), (4, 8), (4, 16))
MODES = ("deploy", "paper")


def compare_recipes(model_dir, calib: str, eval_text: str, recipes=RECIPES, bit_settings=BIT_SETTINGS,
                    modes=MODES, calib_samples: int = 32, calib_seq_len: int = 512,
                    eval_max_tokens: int | None = 65536, progress: bool = True, log=print) -> dict:
    loaded = load_model(model_dir)
    batches, calib_label = calibration_batches(loaded.tokenizer, calib, calib_samples, calib_seq_len)
    fp = evaluate_model(loaded.model, loaded.tokenizer, eval_text, max_tokens=eval_max_tokens, progress=progress)
    rows = []
    for recipe in recipes:
        for w_bits, a_bits in bit_settings:
            for mode in modes:
                config = QuantConfig(w_bits=w_bits, a_bits=a_bits, mode=mode)
                start = time.perf_counter()
                qm = quantize(loaded.model, recipe, batches, config, progress=progress)
                seconds = time.perf_counter() - start
                q = evaluate_model(qm.model, loaded.tokenizer, eval_text, max_tokens=eval_max_tokens,
                                   progress=progress)
                row = {"recipe": recipe, "bits": config.label, "mode": mode, "perplexity": q["perplexity"],
                       "change_percent": 100 * (q["perplexity"] / fp["perplexity"] - 1),
                       "bits_per_byte": q["bits_per_byte"], "calibration_seconds": seconds}
                rows.append(row)
                log(f"{recipe:>11} {config.label} {mode:<6} perplexity {row['perplexity']:.4f} "
                    f"({row['change_percent']:+.2f}%)  calibration {seconds:.1f} s")
    return {"model": str(model_dir), "calibration": {"text": calib_label, "samples": int(batches.shape[0]),
                                                     "seq_len": int(batches.shape[1])},
            "eval": {"text": fp["text"], "tokens": fp["scored_tokens"]}, "fp_perplexity": fp["perplexity"],
            "fp_bits_per_byte": fp["bits_per_byte"], "rows": rows}


def to_markdown(result: dict) -> str:
    lines = [f"Model `{result['model']}`; calibration {result['calibration']['samples']}×"
             f"{result['calibration']['seq_len']} tokens of {result['calibration']['text']}; evaluation "
             f"{result['eval']['tokens']:,} tokens of {result['eval']['text']}. "
             f"FP perplexity {result['fp_perplexity']:.4f} ({result['fp_bits_per_byte']:.4f} bits/byte).", "",
             "| recipe | bits | mode | perplexity | vs FP | calibration (s) |", "|---|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['recipe']} | {r['bits']} | {r['mode']} | {r['perplexity']:.4f} | "
                     f"{r['change_percent']:+.2f}% | {r['calibration_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def write_report(result: dict, out_prefix) -> tuple[Path, Path]:
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    md, js = out_prefix.with_suffix(".md"), out_prefix.with_suffix(".json")
    for path, text in ((md, to_markdown(result)), (js, json.dumps(result, indent=2) + "\n")):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return md, js
