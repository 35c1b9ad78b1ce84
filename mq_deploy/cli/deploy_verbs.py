"""Verbs on the deployed artifact: export, check, build, validate, bench."""

from __future__ import annotations

import argparse

from .args import add_device, add_force, add_json, add_onnx, add_plugins, add_text, check_json_output, write_json

VALIDATION_REPORT = "validation report"


def run_export(args) -> int:
    from ..export import export_onnx
    result = export_onnx(args.model, args.onnx, precision=args.precision, scan=args.scan, decode=not args.no_decode,
                         batch_max=args.batch_max, seq_max=args.seq_max, external_data=args.external_data,
                         force=args.force, fuse_quantize=args.fuse_quantize)
    m = result.manifest
    kind = (f"{m['quantization']['recipe']} W{m['quantization']['config']['w_bits']}A{m['quantization']['config']['a_bits']}"
            if m["quantization"] else "FP")
    print(f"exported {args.model} ({kind}) as {args.precision.upper()}, scan={args.scan}, in {result.seconds:.2f} s")
    for graph, path in (("prefill", result.onnx_path), ("decode", result.decode_path)):
        if path is not None:
            print(f"  {graph:8s} {path}  {path.stat().st_size / 1e6:.2f} MB")     # the file; weights below
    data = m["graphs"]["prefill"].get("external_data")
    if data:
        print(f"  weights  {result.onnx_path.with_name(data['file'])}  {data['bytes'] / 1e6:.2f} MB"
              + (" (both graphs)" if result.decode_path else ""))
    print(f"  manifest {result.manifest_path}")
    if m.get("fused_quantize"):
        print(f"  {len(m['fused_quantize'])} out_proj input quantizers fused into HadamardQuantize nodes")
    print("check: ok (contracts; finite logits on a probe input)")
    return 0


def run_check(args) -> int:
    from ..deploy.manifest import Manifest
    from ..export import check_onnx
    from ..export.probe import probe_export
    problems = check_onnx(args.onnx)        # an incomplete export set is an error before this
    if not problems:
        manifest = Manifest.load(args.onnx)
        graphs = manifest.graphs
        if "prefill" in graphs:             # the probe runs the set: prefill, then a decode step
            probe_export(graphs["prefill"].path, graphs["decode"].path if "decode" in graphs else None,
                         None if manifest.is_vision else manifest.vocab_size, manifest.precision, aftermath="",
                         image_shape=manifest.image_shape if manifest.is_vision else None)
        print(f"{args.onnx}: ok")
        return 0
    print(f"{args.onnx}: {len(problems)} problem(s)")
    for problem in problems:
        print(f"  {problem}")
    return 2


def run_build(args) -> int:
    from ..trt.builder import build_engine
    shapes = {sel: text for sel, text in (("min", args.min), ("opt", args.opt), ("max", args.max)) if text}
    result = build_engine(args.onnx, args.engine, plugins=args.plugins, shapes=shapes, timing_cache=args.timing_cache,
                          workspace_mib=args.workspace_mib, optimization_level=args.opt_level,
                          decode=not args.no_decode, force=args.force)
    print_build_summary(result)
    return 0


def print_build_summary(result: dict) -> None:
    """One line per plan of `build_engine`'s result, from the sidecars it wrote."""
    print(f"TensorRT {result['tensorrt']}, plugins: "
          f"{result['plugin_library']['path'] if result['plugin_library'] else 'none needed'}")
    for kind, sidecar in result["engines"].items():
        profile = sidecar["profiles"][0]
        first = next(iter(profile), None)
        shown = (f"{first} " + " / ".join("x".join(map(str, profile[first][s])) for s in ("min", "opt", "max"))
                 if first else "static shapes")
        print(f"  {kind:8s} {sidecar['engine']}  {sidecar['bytes'] / 1e6:.1f} MB in {sidecar['build_seconds']:.1f} s, "
              f"{len(sidecar['plugin_layers'])} plugin layers, profile {shown}")


def run_validate(args) -> int:
    from ..validate.validation import format_report, validate_export
    from ..deploy.naming import manifest_path
    check_json_output(args, VALIDATION_REPORT, inputs=[args.onnx, manifest_path(args.onnx), args.engine, args.model,
                                                         args.tokens, args.text, args.images])
    report = validate_export(args.onnx, engine=args.engine, references=args.reference, model_dir=args.model,
                             text=args.text, token_file=args.tokens, samples=args.samples, seq_len=args.seq_len,
                             batch=args.batch, device=args.device, plugins=args.plugins, images=args.images)
    if args.json == "-":
        write_json(args, report, VALIDATION_REPORT)
    else:
        print(format_report(report))
        if args.json:
            print(f"report: {write_json(args, report, VALIDATION_REPORT)}")
    return 0 if report["passed"] else 1


def run_bench(args) -> int:
    from ..bench.benchmark import check_outputs, format_table, run_bench as bench
    check_outputs(args.out, args.force, inputs=[args.onnx, args.engine, args.fp_onnx, args.fp_engine, args.model])
    report = bench(args.onnx, engine=args.engine, fp_onnx=args.fp_onnx, fp_engine=args.fp_engine,
                   lengths=args.lengths, batch=args.batch, iterations=args.iterations, warmup=args.warmup,
                   decode_steps=args.decode_steps, torch_reference=not args.no_torch, device=args.device,
                   torch_precision=args.torch_precision, plugins=args.plugins, model_dir=args.model)
    print(format_table(report))
    from ..bench.benchmark import write_outputs
    for path in write_outputs(report, args.out, force=args.force):
        print(f"wrote {path}")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 16,128,512, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def register(verbs) -> None:
    p = verbs.add_parser("export", help="write the ONNX graphs (prefill + decode) and manifest.json",
                         description="Export an FP checkpoint or a deploy-mode quantized artifact to ONNX: "
                                     "token-major, dynamic batch and seqlen, INT8 QDQ linears, one scan node per "
                                     "layer (SelectiveScan, or SSDScan for Mamba-2: TensorRT plugin + ONNX local "
                                     "function). Also writes "
                                     "<name>.decode.onnx (one token, explicit states), the weights of both graphs "
                                     "once in <name>.onnx.data, and manifest.json beside it.")
    p.add_argument("--model", required=True, help="model directory or quantized artifact")
    p.add_argument("--onnx", required=True, help="output .onnx path (its directory holds one export set)")
    add_force(p)
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="graph float type (default fp16)")
    p.add_argument("--scan", default="plugin", choices=["plugin", "onnx"],
                   help="plugin: SelectiveScan/HadamardTransform nodes with local functions; onnx: standard ops only")
    p.add_argument("--fuse-quantize", action="store_true",
                   help="emit each online Hadamard before out_proj together with out_proj's INT8 input quantizer "
                        "as one HadamardQuantize plugin node (INT8 codes out, one kernel and one FP16 round trip "
                        "fewer); needs --scan plugin and a plugin library with HadamardQuantize")
    p.add_argument("--batch-max", type=int, default=None, help="largest batch (recorded for the engine profile)")
    p.add_argument("--seq-max", type=int, default=None, help="longest sequence (recorded for the engine profile)")
    p.add_argument("--no-decode", action="store_true", help="skip the single-token decode graph")
    p.add_argument("--external-data", action=argparse.BooleanOptionalAction, default=None,
                   help="weights of both graphs stored once in <name>.onnx.data (default); --no-external-data: "
                        "each graph one self-contained file (weights twice, below 2 GB only)")
    p.set_defaults(func=run_export)

    p = verbs.add_parser("check", help="check an exported ONNX graph against the TensorRT contracts",
                         description="onnx.checker full check, QDQ conventions, plugin node attributes, dynamic "
                                     "dims, FP32 islands in FP16 graphs, then a probe run. Exit status 2 when "
                                     "something is wrong.")
    p.add_argument("--onnx", required=True, help="the .onnx file to check (its export set must be complete)")
    p.set_defaults(func=run_check)

    p = verbs.add_parser("build", help="build TensorRT engines (prefill + decode) with the selective-scan plugin",
                         description="Parse the exported ONNX into a strongly typed TensorRT network, check that "
                                     "every SelectiveScan/HadamardTransform node became an mq_deploy plugin layer, "
                                     "and build <engine> plus <engine stem>.decode.plan (from manifest.json), each "
                                     "with a <engine>.json sidecar. Needs TensorRT 10.x/11.x, an NVIDIA GPU and "
                                     "libmq_plugins.so. Profiles default to the manifest's batch/seq bounds "
                                     "(else batch 1..8 opt 1, seqlen 1..2048 opt 512).")
    add_onnx(p)
    p.add_argument("--engine", required=True, help="output plan path, e.g. out/model.plan")
    add_force(p)
    add_plugins(p)
    for sel in ("min", "opt", "max"):
        p.add_argument(f"--{sel}", default=None, metavar="SHAPES",
                       help=f"{sel} shapes, trtexec syntax: input_ids:1x1,conv_state.0:1x384x3")
    p.add_argument("--timing-cache", default=None, metavar="FILE", help="tactic timing cache, read and updated")
    p.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit in MiB")
    p.add_argument("--opt-level", type=int, default=None, help="builder optimization level 0-5 (TensorRT default 3)")
    p.add_argument("--no-decode", action="store_true", help="build the --onnx graph only, not the decode graph")
    p.set_defaults(func=run_build)

    p = verbs.add_parser("validate", help="compare an engine (or ONNX Runtime) with references, pass/fail",
                         description="Run the TensorRT engine (--engine) or, without one, ONNX Runtime on the "
                                     "graph, and references on the same token ids (Polygraphy Comparator); report "
                                     "logits error, argmax agreement and perplexity, pass/fail with stated "
                                     "tolerances. Exit 0 pass, 1 fail, 2 bad input.")
    add_onnx(p)
    p.add_argument("--engine", default=None, help="TensorRT plan built from it (needs TensorRT and a GPU)")
    p.add_argument("--reference", action="append", default=None, metavar="REF",
                   help="torch | torch-fp | onnxruntime | onnx:PATH | engine:PATH (repeatable; default: "
                        "onnxruntime (with --engine), torch, and torch-fp for a quantized graph)")
    p.add_argument("--model", default=None, help="the model directory or artifact the graph came from "
                                                 "(default: the manifest's source)")
    add_text(p, purpose="what to run (default: the bundled held-out text)")
    p.add_argument("--tokens", default=None, help="token ids instead of text: .npy or JSON [batch, length]")
    p.add_argument("--samples", type=int, default=4, help="windows of the text (default 4)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per window (default 256)")
    p.add_argument("--batch", type=int, default=1, help="windows (or images) per run (default 1)")
    p.add_argument("--images", default=None,
                   help="a vision export's inputs: a folder of images (ImageFolder layout: top-1 too), a .npy of "
                        "preprocessed images [n, 3, H, W], or digits:heldout (the default for 32x32 models) / "
                        "mnist:heldout")
    add_device(p, "the torch reference")
    add_plugins(p)
    add_json(p, "the report")
    add_force(p)
    p.set_defaults(func=run_validate)

    p = verbs.add_parser("bench", help="prefill and decode latency: engines vs ONNX Runtime vs torch, table + plot",
                         description="Latency (median, p90, p99) and tokens/s for prefill at several lengths and "
                                     "for decode steps: the INT8 engine (--engine), the FP16 engine (--fp-engine) "
                                     "and the FP torch model; without TensorRT, ONNX Runtime on the exported graphs "
                                     "(--onnx, --fp-onnx) and torch on the CPU. Writes <out>.md, .json and (a "
                                     "language model's, with matplotlib) .png.")
    add_onnx(p, "the exported .onnx (decode graph and manifest.json beside it)")
    p.add_argument("--engine", default=None, help="TensorRT plan built from --onnx (its .decode.plan beside it)")
    p.add_argument("--fp-onnx", default=None, help="the unquantized export, for ONNX Runtime")
    p.add_argument("--fp-engine", default=None, help="the FP16 engine of the unquantized export")
    p.add_argument("--lengths", type=_int_list, default=[16, 128, 512], help="prefill lengths (default 16,128,512)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iterations", type=int, default=20, help="timed runs per prefill length (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--decode-steps", type=int, default=64, help="timed decode steps (default 64; 0 = none)")
    p.add_argument("--no-torch", action="store_true", help="leave out the torch model")
    p.add_argument("--model", default=None,
                   help="the model --onnx was exported from, if it has moved (default: the path manifest.json records)")
    add_device(p, "the torch model")
    p.add_argument("--torch-precision", default=None, choices=["fp16", "fp32"],
                   help="torch model precision (default fp16 on a GPU, fp32 on the CPU)")
    add_plugins(p)
    p.add_argument("--out", default="out/bench", help="output prefix for .md/.json/.png (default out/bench)")
    add_force(p)
    p.set_defaults(func=run_bench)
