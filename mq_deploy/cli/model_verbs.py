"""Verbs on a PyTorch model: eval, quantize, inspect, compare-recipes."""

from __future__ import annotations

import math

from .args import (add_device, add_force, add_json, add_text, check_json_output, json_to_stdout, resolve_device,
                   write_json)

EVAL_RESULT = "eval result"


def run_eval(args) -> int:
    from ..api import evaluate_text
    check_json_output(args, EVAL_RESULT, inputs=[args.model, args.text])
    result = evaluate_text(args.model, args.text, seq_len=args.seq_len, batch_size=args.batch_size,
                           max_tokens=args.max_tokens, progress=not json_to_stdout(args))
    if json_to_stdout(args):
        write_json(args, result, EVAL_RESULT)
        return 0
    print(f"model       {result['model']} ({result['kind']}, {result['parameters']:,} parameters, "
          f"tokenizer {result['tokenizer']})")
    print(f"text        {result['text']} ({result['scored_tokens']:,} tokens scored, windows of {result['seq_len']})")
    print(f"perplexity  {result['perplexity']:.4f} per token")
    if result["bits_per_byte"] is None:
        print(f"bits/token  {result['nll_per_token'] / math.log(2):.4f}   (unigram entropy of the same ids: "
              f"{result['unigram_bits_per_token']:.4f}; token ids have no bytes)")
    else:
        print(f"bits/byte   {result['bits_per_byte']:.4f}   (unigram entropy of the same text: "
              f"{result['unigram_bits_per_byte']:.4f})")
    print(f"time        {result['seconds']:.1f} s")
    if args.json:
        print(f"result: {write_json(args, result, EVAL_RESULT)}")
    return 0


def run_quantize(args) -> int:
    from ..api import quantize_checkpoint
    report = quantize_checkpoint(args.model, args.out, recipe=args.recipe, calib=args.calib, w_bits=args.w_bits,
                                 a_bits=args.a_bits, mode=args.mode, calib_samples=args.calib_samples,
                                 calib_seq_len=args.calib_seq_len, eval_text=args.eval,
                                 eval_max_tokens=args.eval_max_tokens, quantize_lm_head=args.quantize_lm_head,
                                 quantize_conv=args.quantize_conv, act_percentile=args.act_percentile, seed=args.seed,
                                 device=resolve_device(args.device), calib_dtype=args.calib_dtype,
                                 weight_rounding=args.weight_rounding, weight_scales=args.weight_scales,
                                 effective_bits=args.effective_bits, r1=args.r1,
                                 keep_linears=tuple(args.keep_linears or ()),
                                 force=args.force, export_check=not args.no_export_check)
    cal, cfg = report["calibration"], report["config"]
    data = (f"{cal['samples']}x{cal['seq_len']} tokens of {cal['text']}" if "text" in cal
            else f"{cal['samples']} images of {cal['images']}")
    print(f"wrote {args.out}: {args.recipe} W{cfg['w_bits']}A{cfg['a_bits']} {cfg['mode']}, calibrated on "
          f"{data} in {cal['seconds']:.1f} s")
    if "mixed_precision" in report:
        mixed = report["mixed_precision"]
        print(f"mixed precision: {len(mixed['kept'])} linears kept as {mixed['kept_as']}, {mixed['effective_bits']:.3f} "
              f"effective bits (budget {mixed['effective_bits_budget']}): " + (", ".join(mixed["kept"]) or "none"))
    if cfg["mode"] != "deploy" or (cfg["w_bits"] == 4 and cfg["a_bits"] != 16):
        print("note: this artifact is for fake-quant evaluation; `mq-deploy export` cannot deploy it")
    if "eval" in report and "fp_top1" in report["eval"]:
        e = report["eval"]
        print(f"top-1 on {e['images']}: FP {100 * e['fp_top1']:.2f}% -> quantized {100 * e['quantized_top1']:.2f}% "
              f"(top-1 agreement {100 * e['top1_agreement']:.2f}%)")
    elif "eval" in report:
        e = report["eval"]
        print(f"perplexity on {e['text']}: FP {e['fp_perplexity']:.4f} -> quantized {e['quantized_perplexity']:.4f} "
              f"({e['perplexity_change_percent']:+.2f}%); KL(FP || quantized) {e['kl_per_token']:.2e} nats/token")
        if e["fp_perplexity"] >= e["unigram_perplexity"]:
            print(f"note: the FP model predicts this text no better than its unigram frequencies (perplexity "
                  f"{e['fp_perplexity']:.4g} >= {e['unigram_perplexity']:.4g}): perplexity cannot judge the quantization "
                  "here; the KL above and `mq-deploy validate` (logit agreement) can")
    return 0


def run_inspect(args) -> int:
    from ..reports.inspection import inspect_model
    result = inspect_model(args.model, args.plot, quantized_dir=args.quantized, text=args.text,
                           samples=args.samples, seq_len=args.seq_len, force=args.force, images=args.images)
    print(f"statistics on {result['data']}")
    print("| activation | worst layer's max/median channel range: FP | after transforms |")
    print("|---|---:|---:|")
    for point, s in result["points"].items():
        after = f"{s['outlier_ratio_after']:.1f}" if s["outlier_ratio_after"] is not None else "-"
        print(f"| {point} | {s['outlier_ratio_before']:.1f} | {after} |")
    if result["layer_errors"]:
        print("relative error of each block's output: " + ", ".join(f"{e:.3g}" for e in result["layer_errors"]))
    print("plots: " + ", ".join(result["files"]))
    return 0


def run_compare(args) -> int:
    from ..reports.compare_recipes import check_report_target, compare_recipes, to_markdown, write_report
    check_report_target(args.out, args.force, inputs=[args.model, args.calib, args.eval])
    from ..reports.compare_recipes import parse_bit_settings
    result = compare_recipes(args.model, args.calib, args.eval, recipes=args.recipes,
                             bit_settings=parse_bit_settings(args.bits), modes=args.modes,
                             calib_samples=args.calib_samples, calib_seq_len=args.calib_seq_len,
                             eval_max_tokens=args.eval_max_tokens or None, progress=True, peers=args.peers,
                             seeds=args.seeds, quantize_conv=args.quantize_conv)
    md, js = write_report(result, args.out, force=args.force)
    print()
    print(to_markdown(result))
    print(f"written: {md}, {js}")
    return 0


def register(verbs) -> None:
    p = verbs.add_parser("eval", help="perplexity and bits per byte of a model on a text",
                         description="Perplexity of a model directory (Hugging Face, mamba_ssm or mq-deploy "
                                     "format) on a UTF-8 text file, in non-overlapping windows.")
    p.add_argument("--model", required=True, help="model directory (config.json + weights) or quantized artifact")
    add_text(p, required=True, purpose="what to score")
    p.add_argument("--seq-len", type=int, default=512, help="window length in tokens (default 512)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--max-tokens", type=int, default=None, help="evaluate only the first N tokens")
    add_json(p, "the result")
    add_force(p)
    p.set_defaults(func=run_eval)

    p = verbs.add_parser("quantize", help="calibrate and quantize a model, write a quantized artifact",
                         description="MambaQuant post-training quantization (or a baseline recipe). Writes a "
                                     "directory with config.json, model.safetensors (transformed FP weights), "
                                     "transforms.safetensors, quant.json and report.json.")
    p.add_argument("--model", required=True, help="FP model directory (a language model, or a Vision Mamba: our "
                                                  "directory or an official vim_*.pth)")
    p.add_argument("--out", required=True, help="artifact directory to write (new or empty; written whole or not at all)")
    add_force(p)
    p.add_argument("--recipe", default="mambaquant", choices=["rtn", "smoothquant", "quarot", "quamba", "mambaquant"],
                   help="mambaquant (default: KLT-enhanced Hadamard rotation, smooth-fused rotation), or a baseline "
                        "(docs/quantization.md)")
    p.add_argument("--w-bits", type=int, default=8, choices=[4, 8], help="weight bits (default 8)")
    p.add_argument("--a-bits", type=int, default=None, choices=[8, 16],
                   help="16: weight-only quantization (default: 8 with --w-bits 8, 16 with --w-bits 4, "
                        "the settings TensorRT runs)")
    p.add_argument("--no-export-check", action="store_true",
                   help="allow deploy-mode settings that export cannot deploy (W4A8), for fake-quant evaluation")
    p.add_argument("--mode", default="deploy", choices=["deploy", "paper"],
                   help="deploy (default): symmetric static INT8 as TensorRT runs it; paper: the paper's fake-quant "
                        "settings (not exportable)")
    p.add_argument("--calib", default="pydoc-topics",
                   help="calibration data: a UTF-8 text file, 'pydoc-topics', or token ids (.npy / .json) (default "
                        "pydoc-topics); for a Vision Mamba, images: a folder, a .npy of preprocessed images "
                        "[n, 3, H, W], or a bundled set's training images: 'digits' (the vision demo's) or 'mnist'")
    p.add_argument("--calib-samples", type=int, default=32, help="calibration windows, or images (default 32)")
    p.add_argument("--calib-seq-len", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--act-percentile", type=float, default=100.0,
                   help="static activation range percentile (default 100: the observed max)")
    p.add_argument("--weight-rounding", default="auto", choices=["auto", "rtn", "gptq"],
                   help="rtn: round weights to nearest; gptq: error-compensating rounding from the calibration "
                        "inputs of each linear after the transforms (deploy mode; one layer's E[x xT] held at a "
                        "time); auto (default): gptq for 4-bit weights in deploy mode, rtn otherwise")
    p.add_argument("--weight-scales", default="none", choices=["none", "awq"],
                   help="awq: activation-aware input-channel scales searched per 4-bit linear before rounding "
                        "(W4A16 only; folded into the norm, the gate or one Mul before x_proj)")
    p.add_argument("--r1", default="klt", choices=["klt", "hadamard"],
                   help="MambaQuant's residual rotation: klt (default, the paper's K·H) or hadamard (the random "
                        "Hadamard alone; measured in docs/r1_ablation_demo.md)")
    p.add_argument("--effective-bits", type=float, default=None, metavar="B",
                   help="4-bit weights under a size budget: the mean bits per weight of the 4-bit linears (4 to 16 "
                        "in deploy mode, where a kept linear is FP16; 4 to 8 in paper mode); a sensitivity pass keeps "
                        "the linears that buy the most accuracy per weight (W4A16 deploy, or paper mode)")
    p.add_argument("--keep-linears", nargs="+", default=None, metavar="LINEAR",
                   help="4-bit weights: keep these linears at higher precision (FP16 in deploy mode, 8 bits in paper "
                        "mode; module names, e.g. backbone.layers.0.mixer.in_proj) instead of letting "
                        "--effective-bits choose")
    p.add_argument("--quantize-lm-head", action="store_true",
                   help="also quantize the output head (kept FP16 by default)")
    p.add_argument("--quantize-conv", action="store_true",
                   help="also quantize the depthwise conv1d (INT8 per-channel weights; its input at A8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random Hadamard signs")
    add_device(p, "calibration (and the float64 folds)")
    p.add_argument("--calib-dtype", default="auto", choices=["auto", "float64", "float32"],
                   help="dtype of the calibration forwards (statistics are float64 sums and the folds float64 "
                        "either way); auto: float32, whose statistics agree with float64 forwards to 1e-4 at half "
                        "the time on a CPU")
    p.add_argument("--eval", default=None,
                   help="also report FP vs quantized perplexity on a UTF-8 text file, 'pydoc-topics', or token ids "
                        "(.npy / .json); for a Vision Mamba, top-1 on labelled images (an ImageFolder folder or "
                        "'digits:heldout' / 'mnist:heldout')")
    p.add_argument("--eval-max-tokens", type=int, default=None, help="score at most this many --eval tokens "
                                                                     "(default: the whole text)")
    p.set_defaults(func=run_quantize)

    p = verbs.add_parser("inspect", help="plot channel ranges before/after the transforms and per-layer error",
                         description="Per-layer, per-channel max|x| and variance at every quantized activation "
                                     "of the FP model and (with --quantized) after the recipe's transforms, plus "
                                     "the quantized model's error after each block, on text (a language model) or "
                                     "images (a Vision Mamba). Writes PNG files.")
    p.add_argument("--model", required=True, help="FP model directory")
    p.add_argument("--quantized", default=None, help="quantized artifact made from --model")
    p.add_argument("--plot", required=True, help="directory for the PNG files")
    add_force(p)
    add_text(p, purpose="text to run (default pydoc-topics)")
    p.add_argument("--images", default=None,
                   help="a Vision Mamba's images: a folder, a .npy of preprocessed images [n, 3, H, W], or a bundled "
                        "set (digits:heldout, the default for 32x32 models; mnist:heldout)")
    p.add_argument("--samples", type=int, default=None, help="windows of text (default 8), or images (default 64)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per window (default 512; text only)")
    p.set_defaults(func=run_inspect)

    p = verbs.add_parser("compare-recipes", help="every recipe x {W8A8, W4A8, W4A16} x {deploy, paper} in one table "
                                                 "(--bits / --modes for fewer)",
                         description="Quantize with every recipe, bit setting and mode, evaluate held-out "
                                     "perplexity, and write one table as markdown and JSON.")
    p.add_argument("--model", required=True, help="FP language model directory")
    add_text(p, "--calib", required=True, purpose="calibration data")
    add_text(p, "--eval", required=True, purpose="held-out evaluation data")
    p.add_argument("--recipes", nargs="+", default=["rtn", "smoothquant", "quarot", "quamba", "mambaquant"],
                   help="recipes to compare (default: rtn smoothquant quarot quamba mambaquant)")
    p.add_argument("--bits", nargs="+", default=["W8A8", "W4A8", "W4A16"], metavar="WxAy",
                   help="bit settings to compare (default: W8A8 W4A8 W4A16)")
    p.add_argument("--modes", nargs="+", default=["deploy", "paper"], choices=["deploy", "paper"],
                   help="quantization modes to compare (default: both)")
    p.add_argument("--peers", nargs="*", default=None, metavar="PEER",
                   help="NVIDIA ModelOpt configs to run beside the recipes (modelopt-int8-smoothquant, "
                        "modelopt-int4-awq, modelopt-w4a8-awq); default: all of them when nvidia-modelopt is "
                        "installed (pip install 'mq-deploy[modelopt]'); --peers alone: none")
    p.add_argument("--calib-samples", type=int, default=32, help="calibration windows (default 32)")
    p.add_argument("--calib-seq-len", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--eval-max-tokens", type=int, default=65536,
                   help="score at most this many --eval tokens per model (default 65536; 0 = the whole text)")
    p.add_argument("--seeds", type=int, default=3,
                   help="rotation seeds for each recipe with random Hadamard signs (quarot, quamba, mambaquant; "
                        "default 3): the row is their mean, the intervals cover the spread between them")
    p.add_argument("--quantize-conv", action="store_true",
                   help="every recipe also quantizes the depthwise conv1d (as quantize --quantize-conv)")
    p.add_argument("--out", default="out/compare_recipes", help="output path prefix (.md and .json are added)")
    add_force(p)
    p.set_defaults(func=run_compare)
