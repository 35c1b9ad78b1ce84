"""Ablation: MambaQuant at W4A16 with and without its smoothings (S2, S5, S7), by perplexity change and
KL(FP ‖ quantized) per token, on the comparison model and both held-out texts (docs/comparison_model.md,
"W4A16"). With 16-bit activations smoothing has nothing to protect and only moves activation range
into the 4-bit weights, so the recipe leaves them out at 16-bit activations
(mambaquant.SMOOTHING = "quantized-activations", the default); this measures what smoothing would cost.

    python benchmarks/bench_a16_smoothing.py [--model samples/models/mamba-byte-8m] [--seeds 3]

"on" sets mambaquant.SMOOTHING = "always" for this process only (an ablation, not a shipped option).
About 15 minutes on 2 cores; prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import mq_deploy.quant.recipes.mambaquant as mambaquant  # noqa: E402
from mq_deploy.data.calibration import calibration_batches  # noqa: E402
from mq_deploy.eval import evaluate_model  # noqa: E402
from mq_deploy.eval.fidelity import FPReference  # noqa: E402
from mq_deploy.models.checkpoints import load_checkpoint  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "samples" / "models" / "mamba-byte-8m"))
    p.add_argument("--calib", default=str(REPO / "samples" / "data" / "wiki_calib.txt"))
    p.add_argument("--texts", nargs="+", default=[str(REPO / "samples" / "data" / "wiki_heldout.txt"), "pydoc-topics"])
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    loaded = load_checkpoint(args.model)
    tokenizer = lambda: loaded.tokenizer  # noqa: E731
    batches, _ = calibration_batches(tokenizer, args.calib, 32, 512, loaded.config.vocab_size)
    print("| text | smoothing | perplexity vs FP (per seed) | KL(FP ‖ q) per token (seed mean) |\n|---|---|---|---:|")
    for text in args.texts:
        reference = FPReference(loaded.model)
        fp = evaluate_model(loaded.model, tokenizer, text, max_tokens=65536, progress=False, reference=reference)
        for smoothing in ("on", "off"):
            mambaquant.SMOOTHING = "always" if smoothing == "on" else "quantized-activations"
            changes, kls = [], []
            for seed in range(args.seeds):
                qm = quantize(loaded.model, "mambaquant", batches, QuantConfig(w_bits=4, a_bits=16, seed=seed),
                              progress=False)
                q = evaluate_model(qm.model, tokenizer, text, max_tokens=65536, progress=False, reference=reference)
                changes.append(100 * (q["perplexity"] / fp["perplexity"] - 1))
                kls.append(q["kl_per_token"])
            print(f"| {Path(text).name} | {smoothing} | {', '.join(f'{c:+.2f} %' for c in changes)} | "
                  f"{sum(kls) / len(kls):.2e} |", flush=True)
    mambaquant.SMOOTHING = "quantized-activations"


if __name__ == "__main__":
    main()
