"""Which part of MambaQuant earns its place on a model? The recipe whole against itself with one part
taken out (R1 = H instead of K·H; no smoothing), beside QuaRot (R1 = H and R2, nothing else) and
Quamba (R2 alone), deploy mode, scored by KL(FP ‖ quantized) per token on the same held-out windows
at several rotation seeds.

Reported per row: the variant's perplexity change against FP and its KL (seed means), and the paired
difference of its per-window KL against whole MambaQuant with the 95 % bootstrap interval over
windows and seeds (eval/paired.py): below zero the variant is closer to FP than MambaQuant, above
zero further, across zero a tie. Taking a part out and landing below zero means that part costs.

    python benchmarks/bench_mambaquant_components.py [--model samples/models/mamba2-byte-8m]
        [--bits W8A8 W4A8] [--seeds 3] [--out docs/mambaquant_components_mamba2_8m.md]

"no smoothing" sets mambaquant.SMOOTHING = "never" for this process only (an ablation, not a shipped
option). At 16-bit activations the recipe smooths nothing anyway, so that variant is skipped there.
About 2 minutes a variant and setting on 2 cores for the 8 M-parameter models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import mq_deploy.quant.recipes.mambaquant as mambaquant  # noqa: E402
from mq_deploy.data.calibration import calibration_batches  # noqa: E402
from mq_deploy.eval.fidelity import FPReference  # noqa: E402
from mq_deploy.eval.paired import paired_difference  # noqa: E402
from mq_deploy.eval.text import evaluate_model  # noqa: E402
from mq_deploy.markdown import markdown_table  # noqa: E402
from mq_deploy.models.checkpoints import load_checkpoint  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.reports.compare_recipes import parse_bit_settings  # noqa: E402
from mq_deploy.samples import CALIB_TEXT, HELDOUT_TEXT, comparison_model_dir, sample_text  # noqa: E402

# variant: (recipe, QuantConfig overrides, mambaquant.SMOOTHING)
VARIANTS = {
    "MambaQuant": ("mambaquant", {}, "quantized-activations"),
    "MambaQuant, R1 = H": ("mambaquant", {"r1": "hadamard"}, "quantized-activations"),
    "MambaQuant, no smoothing": ("mambaquant", {}, "never"),
    "QuaRot": ("quarot", {}, "quantized-activations"),
    "Quamba": ("quamba", {}, "quantized-activations"),
}


def run(model: str, bits: list[str], seeds: int, max_tokens: int, log=print) -> dict:
    loaded = load_checkpoint(model)
    tokenizer = lambda: loaded.tokenizer  # noqa: E731
    batches, _ = calibration_batches(tokenizer, str(sample_text(CALIB_TEXT)), 32, 512,
                                     loaded.config.vocab_size, option="--calib")
    heldout = str(sample_text(HELDOUT_TEXT))
    reference = FPReference(loaded.model)
    fp = evaluate_model(loaded.model, tokenizer, heldout, max_tokens=max_tokens, progress=False, option="--eval",
                        reference=reference)
    rows = []
    try:
        for w_bits, a_bits in parse_bit_settings(bits):
            setting = QuantConfig(w_bits=w_bits, a_bits=a_bits).label
            kl, nll = {}, {}
            for name, (recipe, overrides, smoothing) in VARIANTS.items():
                if smoothing == "never" and a_bits >= 16:
                    continue                      # nothing is smoothed at 16-bit activations
                mambaquant.SMOOTHING = smoothing
                kl[name], nll[name] = [], []
                for seed in range(seeds):
                    start = time.perf_counter()
                    config = QuantConfig(w_bits=w_bits, a_bits=a_bits, seed=seed, **overrides)
                    qm = quantize(loaded.model, recipe, batches, config, progress=False)
                    q = evaluate_model(qm.model, tokenizer, heldout, max_tokens=max_tokens, progress=False,
                                       option="--eval", reference=reference)
                    kl[name].append(q["window_kl"])
                    nll[name].append(q["window_nll"])
                    log(f"{setting} {name} seed {seed}: KL {q['kl_per_token']:.3e}, perplexity "
                        f"{100 * (q['perplexity'] / fp['perplexity'] - 1):+.3f} % ({time.perf_counter() - start:.0f} s)")
                mambaquant.SMOOTHING = "quantized-activations"
            for name in kl:
                vs_fp = paired_difference(nll[name], fp["window_nll"])
                diff = paired_difference(kl[name], kl["MambaQuant"])
                verdict = ("—" if name == "MambaQuant" else "closer to FP" if diff["high_nll"] < 0
                           else "further from FP" if diff["low_nll"] > 0 else "tie")
                rows.append({"bits": setting, "variant": name, "percent": vs_fp["percent"],
                             "kl_1e3": 1e3 * sum(map(sum, kl[name])) / sum(map(len, kl[name])),
                             "diff": "—" if name == "MambaQuant" else
                             f"{1e3 * diff['mean_nll']:+.3f} [{1e3 * diff['low_nll']:+.3f}, {1e3 * diff['high_nll']:+.3f}]",
                             "verdict": verdict, "windows": diff["windows"]})
    finally:
        mambaquant.SMOOTHING = "quantized-activations"
    return {"model": model, "seeds": seeds, "tokens": fp["scored_tokens"], "fp_perplexity": fp["perplexity"],
            "rows": rows}


def to_markdown(result: dict, command: str) -> str:
    table = markdown_table(result["rows"], [
        ("setting", "bits", ""), ("variant", "variant", ""), ("perplexity vs FP %", "percent", "+.3f"),
        ("KL(FP ‖ q) ×10⁻³", "kl_1e3", ".3f"), ("KL − MambaQuant's ×10⁻³ (95 % interval)", "diff", ""),
        ("verdict", "verdict", "")])
    return (f"# MambaQuant's parts, ablated on `{result['model']}`\n\n"
            f"Written by `{command}`. Deploy mode, calibration 32×512 tokens of samples/data/{CALIB_TEXT}, "
            f"evaluation on the first {result['tokens']:,} scored tokens of samples/data/{HELDOUT_TEXT} in "
            f"{result['rows'][0]['windows']} windows (FP perplexity {result['fp_perplexity']:.4f}), "
            f"{result['seeds']} rotation seeds per variant; 4-bit weights with GPTQ rounding (the default). "
            "Perplexity changes and KL are seed means; the difference column is the variant's per-window KL "
            "minus whole MambaQuant's, with its 95 % bootstrap interval over windows and seeds: a variant "
            "*closer to FP* with a part taken out means that part costs on this model.\n\n" + table + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="default: the bundled Mamba-2 comparison model")
    p.add_argument("--bits", nargs="+", default=["W8A8", "W4A8"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=65536)
    p.add_argument("--out", type=Path, default=None, help="also write the report here (.md, and a .json beside it)")
    args = p.parse_args(argv)
    command = "python benchmarks/bench_mambaquant_components.py " + " ".join(sys.argv[1:] if argv is None else argv)
    model = args.model or str(comparison_model_dir("mamba2"))
    if Path(model).resolve().is_relative_to(REPO):
        model = str(Path(model).resolve().relative_to(REPO))      # as the report names it
    result = run(model, args.bits, args.seeds, args.max_tokens)
    report = to_markdown(result, command.strip())
    print(report)
    if args.out is not None:
        args.out.with_suffix(".md").write_text(report, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
