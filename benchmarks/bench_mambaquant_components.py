"""Which part of MambaQuant earns its place on a model? The recipe whole against itself with one part
taken out (R1 = H instead of K·H; no smoothing; in paper mode, no S4 + R4 at the scan's h·C
contraction), beside QuaRot (R1 = H and R2, nothing else) and Quamba (R2 alone), deploy or paper mode,
scored by KL(FP ‖ quantized) per token on the same held-out windows at several rotation seeds.

Reported per row: the variant's perplexity change against FP and its KL (seed means), and the paired
difference of its per-window KL against whole MambaQuant with the 95 % bootstrap interval over
windows and seeds (eval/paired.py): below zero the variant is closer to FP than MambaQuant, above
zero further, across zero a tie. Taking a part out and landing below zero means that part costs.

    python benchmarks/bench_mambaquant_components.py [--model samples/models/mamba2-byte-8m]
        [--bits W8A8 W4A8] [--mode deploy] [--seeds 3] [--out docs/mambaquant_components_mamba2_8m.md]

"no smoothing" sets mambaquant.SMOOTHING = "never" and "no S4 + R4" mambaquant.CONTRACTION_TRANSFORMS
= False for this process only (ablations, not shipped options). At 16-bit activations the recipe
smooths nothing anyway, so that variant is skipped there; "no S4 + R4" runs in paper mode only,
the one mode that quantizes the contraction.
About 2 minutes a variant and setting on 2 cores for the 8 M-parameter models.
"""

from __future__ import annotations

import argparse
import json
import shlex
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

# variant: (recipe, QuantConfig overrides, mambaquant.SMOOTHING, mambaquant.CONTRACTION_TRANSFORMS)
VARIANTS = {
    "MambaQuant": ("mambaquant", {}, "quantized-activations", True),
    "MambaQuant, R1 = H": ("mambaquant", {"r1": "hadamard"}, "quantized-activations", True),
    "MambaQuant, no smoothing": ("mambaquant", {}, "never", True),
    "MambaQuant, no S4 + R4": ("mambaquant", {}, "quantized-activations", False),
    "QuaRot": ("quarot", {}, "quantized-activations", True),
    "Quamba": ("quamba", {}, "quantized-activations", True),
}


def _applies(smoothing: str, contraction: bool, config: QuantConfig) -> bool:
    """Whether a variant differs from whole MambaQuant at this setting."""
    if smoothing == "never" and config.a_bits >= 16:
        return False                      # nothing is smoothed at 16-bit activations
    return contraction or config.quantizes_scan_output


def run(model: str, bits: list[str], seeds: int, max_tokens: int, mode: str = "deploy", variants=None,
        log=print, quantize_conv: bool = False) -> dict:
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
            setting = QuantConfig(w_bits=w_bits, a_bits=a_bits, mode=mode).label
            kl, nll = {}, {}
            for name, (recipe, overrides, smoothing, contraction) in VARIANTS.items():
                if variants is not None and name not in variants:
                    continue
                if not _applies(smoothing, contraction, QuantConfig(w_bits=w_bits, a_bits=a_bits, mode=mode)):
                    log(f"{setting} {name}: skipped (the part it takes out does not act at {setting} {mode})")
                    continue
                mambaquant.SMOOTHING, mambaquant.CONTRACTION_TRANSFORMS = smoothing, contraction
                kl[name], nll[name] = [], []
                for seed in range(seeds):
                    start = time.perf_counter()
                    config = QuantConfig(w_bits=w_bits, a_bits=a_bits, mode=mode, seed=seed,
                                         quantize_conv=quantize_conv, **overrides)
                    qm = quantize(loaded.model, recipe, batches, config, progress=False)
                    q = evaluate_model(qm.model, tokenizer, heldout, max_tokens=max_tokens, progress=False,
                                       option="--eval", reference=reference)
                    kl[name].append(q["window_kl"])
                    nll[name].append(q["window_nll"])
                    log(f"{setting} {name} seed {seed}: KL {q['kl_per_token']:.3e}, perplexity "
                        f"{100 * (q['perplexity'] / fp['perplexity'] - 1):+.3f} % ({time.perf_counter() - start:.0f} s)")
                mambaquant.SMOOTHING, mambaquant.CONTRACTION_TRANSFORMS = "quantized-activations", True
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
        mambaquant.SMOOTHING, mambaquant.CONTRACTION_TRANSFORMS = "quantized-activations", True
    return {"model": model, "mode": mode, "quantize_conv": quantize_conv, "seeds": seeds, "tokens": fp["scored_tokens"],
            "fp_perplexity": fp["perplexity"], "rows": rows}


_MODE_TEXT = {"deploy": "Deploy mode",
              "paper": "Paper mode (asymmetric weights, dynamic per-sample activations, the scan's h·C "
                       "contraction quantized per time step)"}
_ROUNDING_TEXT = {"deploy": "4-bit weights with GPTQ rounding (the default)",
                  "paper": "weights rounded to nearest (the paper's)"}


def to_markdown(result: dict, command: str) -> str:
    table = markdown_table(result["rows"], [
        ("setting", "bits", ""), ("variant", "variant", ""), ("perplexity vs FP %", "percent", "+.3f"),
        ("KL(FP ‖ q) ×10⁻³", "kl_1e3", ".3f"), ("KL − MambaQuant's ×10⁻³ (95 % interval)", "diff", ""),
        ("verdict", "verdict", "")])
    return (f"# MambaQuant's parts, ablated on `{result['model']}`\n\n"
            f"Written by `{command}`. {_MODE_TEXT[result.get('mode', 'deploy')]}, calibration 32×512 tokens of samples/data/{CALIB_TEXT}, "
            f"evaluation on the first {result['tokens']:,} scored tokens of samples/data/{HELDOUT_TEXT} in "
            f"{result['rows'][0]['windows']} windows (FP perplexity {result['fp_perplexity']:.4f}), "
            f"{result['seeds']} rotation seeds per variant; {_ROUNDING_TEXT[result.get('mode', 'deploy')]}"
            + ("; the depthwise conv quantized too (its input at the activation bits; at A8 MambaQuant's S7 "
               "acts there)"
               if result.get("quantize_conv") else "") + ". "
            "Perplexity changes and KL are seed means; the difference column is the variant's per-window KL "
            "minus whole MambaQuant's, with its 95 % bootstrap interval over windows and seeds: a variant "
            "*closer to FP* with a part taken out means that part costs on this model.\n\n" + table + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="default: the bundled Mamba-2 comparison model")
    p.add_argument("--bits", nargs="+", default=["W8A8", "W4A8"])
    p.add_argument("--mode", choices=["deploy", "paper"], default="deploy")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                   help="only these (default: all; MambaQuant is always run, as the baseline of the differences)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=65536)
    p.add_argument("--quantize-conv", action="store_true",
                   help="every variant also quantizes the depthwise conv (as quantize --quantize-conv)")
    p.add_argument("--out", type=Path, default=None, help="also write the report here (.md, and a .json beside it)")
    args = p.parse_args(argv)
    command = "python benchmarks/bench_mambaquant_components.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    model = args.model or str(comparison_model_dir("mamba2"))
    if Path(model).resolve().is_relative_to(REPO):
        model = str(Path(model).resolve().relative_to(REPO))      # as the report names it
    variants = None if args.variants is None else {"MambaQuant", *args.variants}
    result = run(model, args.bits, args.seeds, args.max_tokens, args.mode, variants, quantize_conv=args.quantize_conv)
    report = to_markdown(result, command.strip())
    print(report)
    if args.out is not None:
        args.out.with_suffix(".md").write_text(report, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
