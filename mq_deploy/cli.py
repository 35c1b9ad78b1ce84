"""The `mq-deploy` command: argument parsing only; the work is in the functions it calls."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import MQDeployError


def _cmd_doctor(args) -> int:
    from .doctor import collect, format_report
    report = collect()
    if args.json:
        print(json.dumps({"versions": report.versions, "facts": report.facts,
                          "stages": {k: {"ok": ok, "message": m} for k, (ok, m) in report.stages.items()}},
                         indent=2))
    else:
        print(format_report(report))
    return 0


def _cmd_eval(args) -> int:
    from .api import evaluate_text
    result = evaluate_text(args.model, args.text, seq_len=args.seq_len, batch_size=args.batch_size,
                           max_tokens=args.max_tokens, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model       {result['model']} ({result['kind']}, {result['parameters']:,} parameters, "
              f"tokenizer {result['tokenizer']})")
        print(f"text        {result['text']} ({result['scored_tokens']:,} tokens scored, windows of {result['seq_len']})")
        print(f"perplexity  {result['perplexity']:.4f} per token")
        print(f"bits/byte   {result['bits_per_byte']:.4f}   (unigram entropy of the same text: "
              f"{result['unigram_bits_per_byte']:.4f})")
        print(f"time        {result['seconds']:.1f} s")
    return 0


def resolve_device(name: str) -> str:
    """--device auto: cuda when torch sees a GPU, else cpu; anything else as given."""
    if name != "auto":
        return name
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def _cmd_quantize(args) -> int:
    from .api import quantize_checkpoint
    report = quantize_checkpoint(args.model, args.out, recipe=args.recipe, calib=args.calib, w_bits=args.w_bits,
                                 a_bits=args.a_bits, mode=args.mode, calib_samples=args.calib_samples,
                                 calib_seq_len=args.calib_seq_len, eval_text=args.eval,
                                 eval_max_tokens=args.eval_max_tokens, quantize_lm_head=args.quantize_lm_head,
                                 quantize_conv=args.quantize_conv, act_percentile=args.act_percentile, seed=args.seed,
                                 device=resolve_device(args.device), calib_dtype=args.calib_dtype)
    cal = report["calibration"]
    print(f"wrote {args.out}: {args.recipe} W{args.w_bits}A{args.a_bits} {args.mode}, calibrated on "
          f"{cal['samples']}x{cal['seq_len']} tokens of {cal['text']} in {cal['seconds']:.1f} s")
    if "eval" in report:
        e = report["eval"]
        print(f"perplexity on {e['text']}: FP {e['fp_perplexity']:.4f} -> quantized {e['quantized_perplexity']:.4f} "
              f"({e['perplexity_change_percent']:+.2f}%)")
    return 0


def _cmd_inspect(args) -> int:
    from .validate.inspection import inspect_model
    result = inspect_model(args.model, args.plot, quantized_dir=args.quantized, text=args.text,
                           samples=args.samples, seq_len=args.seq_len)
    print(f"statistics on {args.samples}x{args.seq_len} tokens of {result['text']}")
    print("| activation | worst layer's max/median channel range: FP | after transforms |")
    print("|---|---:|---:|")
    for point, s in result["points"].items():
        after = f"{s['outlier_ratio_after']:.1f}" if s["outlier_ratio_after"] is not None else "-"
        print(f"| {point} | {s['outlier_ratio_before']:.1f} | {after} |")
    if result["layer_errors"]:
        print("relative error of each block's output: " + ", ".join(f"{e:.3g}" for e in result["layer_errors"]))
    print("plots: " + ", ".join(result["files"]))
    return 0


def _cmd_compare(args) -> int:
    from .validate.compare_recipes import compare_recipes, to_markdown, write_report
    result = compare_recipes(args.model, args.calib, args.eval, recipes=args.recipes,
                             calib_samples=args.calib_samples, calib_seq_len=args.calib_seq_len,
                             eval_max_tokens=args.eval_max_tokens or None, progress=False)
    md, js = write_report(result, args.out)
    print()
    print(to_markdown(result))
    print(f"written: {md}, {js}")
    return 0


def _cmd_export(args) -> int:
    from .export import export_onnx
    result = export_onnx(args.model, args.onnx, precision=args.precision, scan=args.scan, decode=not args.no_decode,
                         batch_max=args.batch_max, seq_max=args.seq_max, external_data=args.external_data)
    m = result.manifest
    kind = (f"{m['quantization']['recipe']} W{m['quantization']['config']['w_bits']}A{m['quantization']['config']['a_bits']}"
            if m["quantization"] else "FP")
    print(f"exported {args.model} ({kind}) as {args.precision.upper()}, scan={args.scan}, in {result.seconds:.2f} s")
    for graph, path in (("prefill", result.onnx_path), ("decode", result.decode_path)):
        if path is not None:
            print(f"  {graph:8s} {path}  {result.bytes[graph] / 1e6:.2f} MB")
    print(f"  manifest {result.manifest_path}")
    print("check: ok")
    return 0


def _cmd_check(args) -> int:
    from .export import check_onnx
    problems = check_onnx(args.onnx)
    if not problems:
        print(f"{args.onnx}: ok")
        return 0
    print(f"{args.onnx}: {len(problems)} problem(s)")
    for problem in problems:
        print(f"  {problem}")
    return 2


def _cmd_build(args) -> int:
    from .trt.builder import build_engine
    shapes = {sel: text for sel, text in (("min", args.min), ("opt", args.opt), ("max", args.max)) if text}
    result = build_engine(args.onnx, args.engine, plugins=args.plugins, shapes=shapes, timing_cache=args.timing_cache,
                          workspace_mib=args.workspace_mib, optimization_level=args.opt_level,
                          decode=not args.no_decode)
    print(f"TensorRT {result['tensorrt']}, plugins: "
          f"{result['plugin_library']['path'] if result['plugin_library'] else 'none needed'}")
    for kind, sidecar in result["engines"].items():
        profile = sidecar["profiles"][0]
        first = next(iter(profile), None)
        shown = (f"{first} " + " / ".join("x".join(map(str, profile[first][s])) for s in ("min", "opt", "max"))
                 if first else "static shapes")
        print(f"  {kind:8s} {sidecar['engine']}  {sidecar['bytes'] / 1e6:.1f} MB in {sidecar['build_seconds']:.1f} s, "
              f"{len(sidecar['plugin_layers'])} plugin layers, profile {shown}")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(max_tokens=args.max_tokens)


def _cmd_validate(args) -> int:
    from .export.files import write_atomic
    from .validate.validation import format_report, validate_export
    report = validate_export(args.onnx, engine=args.engine, references=args.reference, model_dir=args.model,
                             text=args.text, token_file=args.tokens, samples=args.samples, seq_len=args.seq_len,
                             batch=args.batch, device=args.device, plugins=args.plugins)
    print(format_report(report))
    if args.json:
        from pathlib import Path
        write_atomic(Path(args.json), (json.dumps(report, indent=2) + "\n").encode("utf-8"))
        print(f"report: {args.json}")
    return 0 if report["passed"] else 1


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 16,128,512, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _cmd_bench(args) -> int:
    from .bench.benchmark import format_table, run_bench, write_outputs
    report = run_bench(args.onnx, engine=args.engine, fp_onnx=args.fp_onnx, fp_engine=args.fp_engine,
                       lengths=args.lengths, batch=args.batch, iterations=args.iterations, warmup=args.warmup,
                       decode_steps=args.decode_steps, torch_reference=not args.no_torch, device=args.device,
                       torch_precision=args.torch_precision, plugins=args.plugins)
    print(format_table(report))
    for path in write_outputs(report, args.out):
        print(f"wrote {path}")
    return 0


def _cmd_lm_eval(args) -> int:
    from .eval.lm_eval_cli import run_lm_eval
    return run_lm_eval(args.lm_eval_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mq-deploy",
        description="Quantize Mamba models with MambaQuant and deploy them as TensorRT engines.")
    parser.add_argument("--version", action="version", version=f"mq-deploy {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("doctor", help="report versions, what each stage is missing, and the fix",
                         description="Report installed versions (torch, onnx, onnxruntime, tensorrt, CUDA), "
                                     "the plugin library, and what each stage of the chain is missing.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_doctor)

    p = verbs.add_parser("eval", help="perplexity and bits per byte of a model on a text",
                         description="Perplexity of a model directory (Hugging Face, mamba_ssm or mq-deploy "
                                     "format) on a UTF-8 text file, in non-overlapping windows.")
    p.add_argument("--model", required=True, help="model directory (config.json + weights)")
    p.add_argument("--text", required=True, help="UTF-8 text file, or 'pydoc-topics' for CPython's docs")
    p.add_argument("--seq-len", type=int, default=512, help="window length in tokens (default 512)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--max-tokens", type=int, default=None, help="evaluate only the first N tokens")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_eval)

    p = verbs.add_parser("quantize", help="calibrate and quantize a model, write a quantized artifact",
                         description="MambaQuant post-training quantization (or a baseline recipe). Writes a "
                                     "directory with config.json, model.safetensors (transformed FP weights), "
                                     "transforms.safetensors, quant.json and report.json.")
    p.add_argument("--model", required=True, help="FP model directory")
    p.add_argument("--out", required=True, help="artifact directory to write (replaced atomically)")
    p.add_argument("--recipe", default="mambaquant", choices=["rtn", "smoothquant", "quarot", "quamba", "mambaquant"])
    p.add_argument("--w-bits", type=int, default=8, choices=[4, 8])
    p.add_argument("--a-bits", type=int, default=8, choices=[8, 16], help="16: weight-only quantization")
    p.add_argument("--mode", default="deploy", choices=["deploy", "paper"],
                   help="deploy: symmetric static INT8 as TensorRT runs it; paper: the paper's fake-quant settings")
    p.add_argument("--calib", default="pydoc-topics", help="calibration text file, or 'pydoc-topics'")
    p.add_argument("--calib-samples", type=int, default=32, help="calibration windows (default 32)")
    p.add_argument("--calib-seq-len", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--act-percentile", type=float, default=100.0, help="static activation range percentile")
    p.add_argument("--quantize-lm-head", action="store_true")
    p.add_argument("--quantize-conv", action="store_true",
                   help="also quantize the depthwise conv1d (INT8 per-channel weights; its input at A8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random Hadamard signs")
    p.add_argument("--device", default="auto",
                   help="where calibration and the float64 folds run: auto (a CUDA GPU when torch sees one), cpu, "
                        "cuda, cuda:N")
    p.add_argument("--calib-dtype", default="auto", choices=["auto", "float64", "float32"],
                   help="dtype of the calibration forwards (statistics are float64 sums either way); auto: "
                        "float64 on a CPU, float32 on a GPU")
    p.add_argument("--eval", default=None, help="also report FP vs quantized perplexity on this text")
    p.add_argument("--eval-max-tokens", type=int, default=None)
    p.set_defaults(func=_cmd_quantize)

    p = verbs.add_parser("inspect", help="plot channel ranges before/after the transforms and per-layer error",
                         description="Per-layer, per-channel max|x| and variance at every quantized activation "
                                     "of the FP model and (with --quantized) after the recipe's transforms, plus "
                                     "the quantized model's error after each block. Writes PNG files.")
    p.add_argument("--model", required=True, help="FP model directory")
    p.add_argument("--quantized", default=None, help="quantized artifact made from --model")
    p.add_argument("--plot", required=True, help="directory for the PNG files")
    p.add_argument("--text", default="pydoc-topics", help="text to run (default pydoc-topics)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.set_defaults(func=_cmd_inspect)

    p = verbs.add_parser("compare-recipes", help="every recipe x {W8A8, W4A8, W4A16} x {deploy, paper} in one table",
                         description="Quantize with every recipe, bit setting and mode, evaluate held-out "
                                     "perplexity, and write one table as markdown and JSON.")
    p.add_argument("--model", required=True)
    p.add_argument("--calib", required=True, help="calibration text file, or 'pydoc-topics'")
    p.add_argument("--eval", required=True, help="held-out evaluation text file, or 'pydoc-topics'")
    p.add_argument("--recipes", nargs="+", default=["rtn", "smoothquant", "quarot", "quamba", "mambaquant"])
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--calib-seq-len", type=int, default=512)
    p.add_argument("--eval-max-tokens", type=int, default=65536, help="0 = the whole text")
    p.add_argument("--out", default="out/compare_recipes", help="output path prefix (.md and .json are added)")
    p.set_defaults(func=_cmd_compare)

    p = verbs.add_parser("export", help="write the ONNX graphs (prefill + decode) and manifest.json",
                         description="Export an FP checkpoint or a deploy-mode quantized artifact to ONNX: "
                                     "token-major, dynamic batch and seqlen, INT8 QDQ linears, one SelectiveScan "
                                     "node per layer (TensorRT plugin + ONNX local function). Also writes "
                                     "<name>.decode.onnx (one token, explicit states) and manifest.json beside it.")
    p.add_argument("--model", required=True, help="model directory or quantized artifact")
    p.add_argument("--onnx", required=True, help="output .onnx path")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="graph float type (default fp16)")
    p.add_argument("--scan", default="plugin", choices=["plugin", "onnx"],
                   help="plugin: SelectiveScan/HadamardTransform nodes with local functions; onnx: standard ops only")
    p.add_argument("--batch-max", type=int, default=None, help="largest batch (recorded for the engine profile)")
    p.add_argument("--seq-max", type=int, default=None, help="longest sequence (recorded for the engine profile)")
    p.add_argument("--no-decode", action="store_true", help="skip the single-token decode graph")
    p.add_argument("--external-data", action=argparse.BooleanOptionalAction, default=None,
                   help="weights in <file>.onnx.data beside each graph (default: only past protobuf's 2 GB limit)")
    p.set_defaults(func=_cmd_export)

    p = verbs.add_parser("check", help="check an exported ONNX graph against the TensorRT contracts",
                         description="onnx.checker full check, QDQ conventions, plugin node attributes, dynamic "
                                     "dims, FP32 islands in FP16 graphs. Exit status 2 when something is wrong.")
    p.add_argument("--onnx", required=True, help="the .onnx file to check")
    p.set_defaults(func=_cmd_check)

    p = verbs.add_parser("build", help="build TensorRT engines (prefill + decode) with the selective-scan plugin",
                         description="Parse the exported ONNX into a strongly typed TensorRT network, check that "
                                     "every SelectiveScan/HadamardTransform node became an mq_deploy plugin layer, "
                                     "and build <engine> plus <engine stem>.decode.plan (from manifest.json), each "
                                     "with a <engine>.json sidecar. Needs TensorRT 10.x/11.x, an NVIDIA GPU and "
                                     "libmq_plugins.so. Profiles default to the manifest's batch/seq bounds "
                                     "(else batch 1..8 opt 1, seqlen 1..2048 opt 512).")
    p.add_argument("--onnx", required=True, help="exported .onnx (manifest.json beside it)")
    p.add_argument("--engine", required=True, help="output plan path, e.g. out/model.plan")
    p.add_argument("--plugins", default=None, metavar="PATH",
                   help="libmq_plugins.so or its directory (default: $MQ_PLUGIN_PATH, then build/)")
    for sel in ("min", "opt", "max"):
        p.add_argument(f"--{sel}", default=None, metavar="SHAPES",
                       help=f"{sel} shapes, trtexec syntax: input_ids:1x1,conv_state.0:1x384x3")
    p.add_argument("--timing-cache", default=None, metavar="FILE", help="tactic timing cache, read and updated")
    p.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit in MiB")
    p.add_argument("--opt-level", type=int, default=None, help="builder optimization level 0-5 (TensorRT default 3)")
    p.add_argument("--no-decode", action="store_true", help="build the --onnx graph only, not the decode graph")
    p.set_defaults(func=_cmd_build)

    p = verbs.add_parser("demo", help="run the chain on the bundled demo model",
                         description="The whole chain on the bundled byte-level demo model: evaluate it, quantize "
                                     "it (MambaQuant W8A8), export and check the ONNX graphs, validate and bench "
                                     "ONNX Runtime against torch, and where TensorRT, a GPU and the plugin library "
                                     "are present build and validate the engine. One summary table; exit 1 if a "
                                     "validation fails.")
    p.add_argument("--max-tokens", type=int, default=131072,
                   help="bytes of each text for the perplexity stages (default 131072; 0 = all)")
    p.set_defaults(func=_cmd_demo)

    p = verbs.add_parser("validate", help="compare an engine (or ONNX Runtime) with references, pass/fail",
                         description="Run the TensorRT engine (--engine) or, without one, ONNX Runtime on the "
                                     "graph, and references on the same token ids (Polygraphy Comparator); report "
                                     "logits error, argmax agreement and perplexity, pass/fail with stated "
                                     "tolerances. Exit 0 pass, 1 fail, 2 bad input.")
    p.add_argument("--onnx", required=True, help="the exported .onnx (manifest.json beside it)")
    p.add_argument("--engine", default=None, help="TensorRT plan built from it (needs TensorRT and a GPU)")
    p.add_argument("--reference", action="append", default=None, metavar="REF",
                   help="torch | torch-fp | onnxruntime | onnx:PATH | engine:PATH (repeatable; default: "
                        "onnxruntime (with --engine), torch, and torch-fp for a quantized graph)")
    p.add_argument("--model", default=None, help="the model directory or artifact the graph came from "
                                                 "(default: the manifest's source path)")
    p.add_argument("--text", default=None, help="text file or 'pydoc-topics' (default: the bundled held-out text)")
    p.add_argument("--tokens", default=None, help="token ids instead of text: .npy or JSON [batch, length]")
    p.add_argument("--samples", type=int, default=4, help="windows of the text (default 4)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per window (default 256)")
    p.add_argument("--batch", type=int, default=1, help="windows per run (default 1)")
    p.add_argument("--device", default="auto", help="torch reference device: auto, cpu, cuda (default auto)")
    p.add_argument("--plugins", default=None, help="libmq_plugins.so (default: found beside the package or "
                                                   "via MQ_PLUGIN_PATH)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=_cmd_validate)

    p = verbs.add_parser("bench", help="prefill and decode latency: engines vs ONNX Runtime vs torch, table + plot",
                         description="Latency (median, p90, p99) and tokens/s for prefill at several lengths and "
                                     "for decode steps: the INT8 engine (--engine), the FP16 engine (--fp-engine) "
                                     "and the FP torch model; without TensorRT, ONNX Runtime on the exported graphs "
                                     "(--onnx, --fp-onnx) and torch on the CPU. Writes <out>.md, .json and .png.")
    p.add_argument("--onnx", required=True, help="the exported .onnx (decode graph and manifest.json beside it)")
    p.add_argument("--engine", default=None, help="TensorRT plan built from --onnx (its .decode.plan beside it)")
    p.add_argument("--fp-onnx", default=None, help="the unquantized export, for ONNX Runtime")
    p.add_argument("--fp-engine", default=None, help="the FP16 engine of the unquantized export")
    p.add_argument("--lengths", type=_int_list, default=[16, 128, 512], help="prefill lengths (default 16,128,512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iterations", type=int, default=20, help="timed runs per prefill length (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--decode-steps", type=int, default=64, help="timed decode steps (default 64; 0 = none)")
    p.add_argument("--no-torch", action="store_true", help="leave out the torch model")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda (default auto)")
    p.add_argument("--torch-precision", default=None, choices=["fp16", "fp32"],
                   help="torch model precision (default fp16 on a GPU, fp32 on the CPU)")
    p.add_argument("--plugins", default=None, help="libmq_plugins.so (default: beside the package or MQ_PLUGIN_PATH)")
    p.add_argument("--out", default="out/bench", help="output prefix for .md/.json/.png (default out/bench)")
    p.set_defaults(func=_cmd_bench)

    # Everything after the verb is lm-eval's own arguments, passed through unparsed (see main).
    p = verbs.add_parser("lm-eval", add_help=False, usage="mq-deploy lm-eval --model mq-deploy --model_args "
                         "path=PATH[,backend=torch|onnxruntime|tensorrt] --tasks TASKS [lm_eval options]",
                         help="lm-evaluation-harness with --model mq-deploy (FP, quantized, ONNX or engine)",
                         description="lm-eval's command line with the mq-deploy model registered (docs/lm_eval.md).")
    p.set_defaults(func=_cmd_lm_eval, passes_through=True)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passes_through", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.lm_eval_args = extra
    try:
        return args.func(args)
    except MQDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
