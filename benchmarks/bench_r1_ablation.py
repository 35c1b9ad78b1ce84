"""Does MambaQuant's KLT earn its place? The recipe with R1 = K·H (the paper's, the default) against
R1 = H alone (`--r1 hadamard`, everything else equal) on both bundled byte-level language models,
deploy mode, W8A8 / W4A8 / W4A16 (4-bit weights with the default GPTQ rounding), several rotation
seeds each, scored on the same held-out windows.

Reported per row: each variant's perplexity change against FP (seed mean), and the paired
difference KLT − Hadamard with its 95 % bootstrap interval over windows and seeds
(eval/paired.py): below zero the KLT helps, above zero it hurts, across zero it is a tie.

    python benchmarks/bench_r1_ablation.py [--seeds 3] [--max-tokens 65536] [--out docs/r1_ablation_demo.md]

About 10 minutes on 2 cores. Prints one markdown report (and writes it with --out, plus a .json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mq_deploy.data.calibration import calibration_batches  # noqa: E402
from mq_deploy.eval.paired import paired_difference  # noqa: E402
from mq_deploy.eval.text import evaluate_model  # noqa: E402
from mq_deploy.markdown import markdown_table  # noqa: E402
from mq_deploy.models.checkpoints import load_checkpoint  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.samples import CALIB_TEXT, HELDOUT_TEXT, demo_model_dir, sample_text  # noqa: E402

SETTINGS = ((8, 8), (4, 8), (4, 16))
FAMILIES = {"mamba": "Mamba-1 demo (mamba-byte-demo)", "mamba2": "Mamba-2 demo (mamba2-byte-demo)"}


def run(seeds: int, max_tokens: int, log=print) -> dict:
    rows = []
    for family, label in FAMILIES.items():
        loaded = load_checkpoint(demo_model_dir(family))
        tokenizer = lambda: loaded.tokenizer  # noqa: E731
        batches, _ = calibration_batches(tokenizer, str(sample_text(CALIB_TEXT)), 32, 512,
                                         loaded.config.vocab_size, option="--calib")
        heldout = str(sample_text(HELDOUT_TEXT))
        fp = evaluate_model(loaded.model, tokenizer, heldout, max_tokens=max_tokens, progress=False, option="--eval")
        for w_bits, a_bits in SETTINGS:
            windows = {}
            for r1 in ("klt", "hadamard"):
                windows[r1] = []
                for seed in range(seeds):
                    config = QuantConfig(w_bits=w_bits, a_bits=a_bits, seed=seed, r1=r1)
                    start = time.perf_counter()
                    qm = quantize(loaded.model, "mambaquant", batches, config, progress=False)
                    q = evaluate_model(qm.model, tokenizer, heldout, max_tokens=max_tokens, progress=False,
                                       option="--eval")
                    windows[r1].append(q["window_nll"])
                    log(f"{family} {config.label} r1={r1} seed {seed}: perplexity {q['perplexity']:.4f} "
                        f"({100 * (q['perplexity'] / fp['perplexity'] - 1):+.2f} %) {time.perf_counter() - start:.0f} s")
            klt_vs_fp = paired_difference(windows["klt"], fp["window_nll"])
            had_vs_fp = paired_difference(windows["hadamard"], fp["window_nll"])
            diff = paired_difference(windows["klt"], windows["hadamard"])
            verdict = ("KLT helps" if diff["high_nll"] < 0 else "KLT hurts" if diff["low_nll"] > 0 else "tie")
            rows.append({"model": label, "bits": f"W{w_bits}A{a_bits}", "fp_perplexity": fp["perplexity"],
                         "klt_percent": klt_vs_fp["percent"], "hadamard_percent": had_vs_fp["percent"],
                         "diff": f"{diff['percent']:+.3f} % [{diff['low_percent']:+.3f}, {diff['high_percent']:+.3f}]",
                         "verdict": verdict, "paired": diff, "windows": diff["windows"]})
    return {"seeds": seeds, "max_tokens": max_tokens, "rows": rows}


def to_markdown(result: dict) -> str:
    rows = result["rows"]
    table = markdown_table(rows, [("model", "model", ""), ("setting", "bits", ""),
                                  ("K·H vs FP %", "klt_percent", "+.2f"), ("H vs FP %", "hadamard_percent", "+.2f"),
                                  ("K·H − H (95 % interval)", "diff", ""), ("verdict", "verdict", "")])
    return (f"# MambaQuant's KLT, ablated (R1 = K·H vs R1 = H)\n\n"
            f"Written by `python benchmarks/bench_r1_ablation.py --seeds {result['seeds']} --max-tokens "
            f"{result['max_tokens']} --out docs/r1_ablation_demo.md`. Deploy mode, calibration 32×512 bytes of "
            f"samples/data/{CALIB_TEXT}, evaluation on the first {result['max_tokens']:,} bytes of "
            f"samples/data/{HELDOUT_TEXT} in {rows[0]['windows']} windows, {result['seeds']} rotation seeds per "
            "variant (the seed draws the Hadamard signs of R1, R2 and, for Mamba-1, R5); 4-bit weights with GPTQ "
            "rounding (the default). Perplexity changes against FP are seed means; the last columns are the "
            "paired difference of the two variants' mean NLL as a perplexity change, with its 95 % bootstrap "
            "interval over windows and seeds (eval/paired.py).\n\n" + table + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=65536)
    p.add_argument("--out", type=Path, default=None, help="also write the report here (and a .json beside it)")
    args = p.parse_args(argv)
    result = run(args.seeds, args.max_tokens, log=lambda line: print(line, file=sys.stderr, flush=True))
    text = to_markdown(result)
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
