"""4-bit weight options on the bundled demo model: for every recipe at W4A16 (deploy), round to
nearest vs GPTQ, each with and without AWQ scale search, and mixed precision under a few size budgets;
perplexity change against FP on held-out texts, with the paired interval over windows and rotation
seeds (eval/paired.py), and per recipe the best option and whether its lead is decisive.

    python benchmarks/bench_weight_options.py [--texts samples/data/wiki_heldout.txt pydoc-topics]
        [--seeds 3] [--mixed 4.5 5.0] [--out docs/weight_options_demo.md]

About 15 minutes a text on 2 cores. Prints one markdown report (and writes it with --out).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mq_deploy.data.calibration import calibration_batches  # noqa: E402
from mq_deploy.eval import evaluate_model  # noqa: E402
from mq_deploy.eval.paired import decisive_best, paired_difference  # noqa: E402
from mq_deploy.models.loading import load_model  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.quant.recipes import RECIPES, uses_seed  # noqa: E402

OPTIONS = {"rtn": dict(weight_rounding="rtn"), "gptq": dict(weight_rounding="gptq"),
           "awq+rtn": dict(weight_rounding="rtn", weight_scales="awq"),
           "awq+gptq": dict(weight_rounding="gptq", weight_scales="awq")}


def run_variant(loaded, batches, text, fp, recipe, options, seeds, max_tokens):
    per_seed, changes, seconds, kept = [], [], [], []
    for seed in range(seeds if uses_seed(recipe) else 1):
        start = time.perf_counter()
        qm = quantize(loaded.model, recipe, batches, QuantConfig(w_bits=4, a_bits=16, seed=seed, **options),
                      progress=False)
        seconds.append(time.perf_counter() - start)
        q = evaluate_model(qm.model, loaded.tokenizer, text, max_tokens=max_tokens, progress=False)
        per_seed.append(q["window_nll"])
        changes.append(100 * (q["perplexity"] / fp["perplexity"] - 1))
        if qm.mixed_precision:
            kept.append(qm.mixed_precision["effective_bits"])
    windows = per_seed if len(per_seed) > 1 else per_seed[0]
    return {"windows": windows, "vs_fp": paired_difference(windows, fp["window_nll"]), "seeds": changes,
            "seconds": sum(seconds) / len(seconds), "effective_bits": kept}


def regenerate_args(argv):
    """The command line as given, with the repository's own paths made relative, for the report header."""
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(a.replace(str(REPO) + "/", "") for a in args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "samples/models/mamba-byte-demo"))
    p.add_argument("--calib", default=str(REPO / "samples/data/wiki_calib.txt"))
    p.add_argument("--texts", nargs="+", default=[str(REPO / "samples/data/wiki_heldout.txt"), "pydoc-topics"])
    p.add_argument("--recipes", nargs="+", default=list(RECIPES))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--mixed", nargs="*", type=float, default=[4.5, 5.0],
                   help="effective-bits budgets (kept linears in FP16) to try with each recipe's best option "
                        "without AWQ (mixed precision does not combine with it yet)")
    p.add_argument("--max-tokens", type=int, default=65536)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    loaded = load_model(args.model)
    batches, calib_label = calibration_batches(loaded.tokenizer, args.calib, 32, 512, loaded.config.vocab_size)
    lines = [f"# 4-bit weight options (W4A16 deploy) on `{Path(args.model).name}`", "",
             f"Calibration 32×512 tokens of {Path(calib_label).name}; {args.seeds} rotation seed{'s' if args.seeds != 1 else ''} for recipes with "
             "random Hadamard signs. Change in perplexity against FP, the paired 95 % interval over evaluation "
             "windows and seeds, and each seed's change. Regenerate: `python benchmarks/bench_weight_options.py "
             f"{regenerate_args(argv)}` (about 15 minutes a text on 2 cores for the demo model).", ""]
    for text in args.texts:
        fp = evaluate_model(loaded.model, loaded.tokenizer, text, max_tokens=args.max_tokens, progress=False)
        lines += [f"## {Path(fp['text']).name}: {fp['scored_tokens']:,} tokens, FP perplexity {fp['perplexity']:.4f}", "",
                  "| recipe | weights | vs FP | 95% interval | seeds: vs FP each | quantize (s) |",
                  "|---|---|---:|---|---|---:|"]
        verdicts = []
        for recipe in args.recipes:
            results = {}
            for label, options in OPTIONS.items():
                results[label] = run_variant(loaded, batches, text, fp, recipe, options, args.seeds, args.max_tokens)
                print(f"{recipe} {label}: {results[label]['vs_fp']['percent']:+.3f}%", file=sys.stderr, flush=True)
            verdict = decisive_best(list(results), {k: v["windows"] for k, v in results.items()})
            plain = min(("rtn", "gptq"), key=lambda k: results[k]["vs_fp"]["mean_nll"])
            best = OPTIONS[plain]
            for budget in args.mixed:
                label = f"{plain} @ {budget:g} bits"
                results[label] = run_variant(loaded, batches, text, fp, recipe, {**best, "effective_bits": budget},
                                             args.seeds, args.max_tokens)
                print(f"{recipe} {label}: {results[label]['vs_fp']['percent']:+.3f}%", file=sys.stderr, flush=True)
            for label, r in results.items():
                v = r["vs_fp"]
                bits = f" ({sum(r['effective_bits']) / len(r['effective_bits']):.2f} bits used)" if r["effective_bits"] else ""
                lines.append(f"| {recipe} | {label}{bits} | {v['percent']:+.2f}% | {v['low_percent']:+.2f}% … "
                             f"{v['high_percent']:+.2f}% | " + ", ".join(f"{c:+.2f}%" for c in r["seeds"]) +
                             f" | {r['seconds']:.1f} |")
            unsure = [n for n, a in verdict["against"].items() if not a["decisive"]]
            verdicts.append(f"- {recipe}: best 4-bit option **{verdict['best']}**" +
                            (", decisively" if verdict["decisive"] else f", not distinguishable from {', '.join(unsure)}"))
        lines += ["", "Best of rtn / gptq / awq+rtn / awq+gptq per recipe (paired interval over windows and seeds):", "",
                  *verdicts, ""]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
