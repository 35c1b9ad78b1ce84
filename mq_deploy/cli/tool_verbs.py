"""doctor, demo and lm-eval."""

from __future__ import annotations

from .args import add_force, add_json, check_json_output, json_to_stdout, write_json

DOCTOR_REPORT = "doctor report"


def run_doctor(args) -> int:
    from ..doctor import collect, format_report
    check_json_output(args, DOCTOR_REPORT)
    report = collect()
    result = {"versions": report.versions, "facts": report.facts,
              "stages": {k: {"ok": ok, "message": m} for k, (ok, m) in report.stages.items()}}
    if json_to_stdout(args):
        write_json(args, result, DOCTOR_REPORT)
        return 0
    print(format_report(report))
    if args.json:
        print(f"report: {write_json(args, result, DOCTOR_REPORT)}")
    return 0


def run_demo(args) -> int:
    if args.vision:
        from ..vision_demo import run_vision_demo
        return run_vision_demo()
    from ..demo import run_demo as demo
    return demo(max_tokens=args.max_tokens, family="mamba2" if args.mamba2 else "mamba")


def run_lm_eval(args) -> int:
    from ..lm_eval.cli import run_lm_eval as lm_eval
    return lm_eval(args.lm_eval_args)


def register(verbs) -> None:
    p = verbs.add_parser("doctor", help="report versions, what each stage is missing, and the fix",
                         description="Report installed versions (torch, onnx, onnxruntime, tensorrt, CUDA), "
                                     "the plugin library, and what each stage of the chain is missing.")
    add_json(p, "the report")
    add_force(p)
    p.set_defaults(func=run_doctor)

    p = verbs.add_parser("demo", help="run the chain on the bundled demo model",
                         description="The whole chain on the bundled byte-level demo model: evaluate it, quantize "
                                     "it (MambaQuant W8A8), export and check the ONNX graphs, validate and bench "
                                     "ONNX Runtime against torch, and where TensorRT, a GPU and the plugin library "
                                     "are present build and validate the engine. One summary table; exit 1 if a "
                                     "validation fails.")
    p.add_argument("--max-tokens", type=int, default=131072,
                   help="bytes of each text for the perplexity stages (default 131072; 0 = all)")
    family = p.add_mutually_exclusive_group()
    family.add_argument("--vision", action="store_true",
                        help="the same chain on the bundled Vision Mamba (digits): top-1 instead of perplexity")
    family.add_argument("--mamba2", action="store_true",
                        help="the same chain on the bundled byte-level Mamba-2 (SSDScan nodes instead of "
                             "SelectiveScan)")
    p.set_defaults(func=run_demo)

    # Everything after the verb is lm-eval's own arguments, passed through unparsed (see cli.main).
    p = verbs.add_parser("lm-eval", add_help=False, usage="mq-deploy lm-eval --model mq-deploy --model_args "
                         "path=PATH[,backend=torch|onnxruntime|tensorrt] --tasks TASKS [lm_eval options]",
                         help="lm-evaluation-harness with --model mq-deploy (FP, quantized, ONNX or engine)",
                         description="lm-eval's command line with the mq-deploy model registered (docs/lm_eval.md).")
    p.set_defaults(func=run_lm_eval, passes_through=True)
