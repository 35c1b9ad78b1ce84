"""Greedy text generation with an mq-deploy engine: prefill the prompt, then one decode step per token.

    # TensorRT (GPU): the plans from `mq-deploy build`, our plugin library loaded first
    python samples/python/generate.py --engine out/model.plan --prompt "The history of " --max-new-tokens 64

    # ONNX Runtime (CPU, no TensorRT): the same loop on the exported graphs
    python samples/python/generate.py --onnx out/model.onnx --prompt "The history of " --max-new-tokens 64

Everything comes from the files and their documented contract (docs/export.md, docs/tensorrt.md),
not from mq_deploy's code, as in an application that ships the plans alone: the decode graph's file
from the export's manifest.json (`graphs.decode.file`, beside model.onnx), the decode plan from the
prefill plan's sidecar (`<plan>.json`: `engine_set.decode`, `manifest_path`), the tokenizer the
manifest declares (`model.mq_deploy.tokenizer`: "bytes") or the source model's tokenizer.json, the
I/O names from the graphs themselves, and the state carry rule: output `*_out.<i>` feeds decode
input `*.<i>`. The loop itself is `generate()`: about 15 lines.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


# ---------------------------------------------------------------------------------------- graphs
class OnnxRuntimeGraphs:
    """model.onnx (prefill) and model.decode.onnx (one token) in ONNX Runtime; numpy in and out."""

    def __init__(self, onnx_path: Path, manifest: dict):
        import onnxruntime as ort
        decode = onnx_path.with_name(manifest["graphs"]["decode"]["file"])     # the manifest names the set
        # ORT_ENABLE_BASIC: the extended level turns a W8A8 graph's Q/DQ MatMuls into integer kernels
        # that saturate on AVX2 CPUs without VNNI (mq-deploy docs/export.md, session options)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self.sessions = {kind: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                         for kind, p in (("prefill", onnx_path), ("decode", decode))}

    def run(self, kind: str, feeds: dict) -> dict:
        session = self.sessions[kind]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))

    @staticmethod
    def argmax_last(logits) -> np.ndarray:
        return np.asarray(logits)[:, -1].argmax(-1)[:, None].astype(np.int64)

    @staticmethod
    def tokens(ids: list[int]):
        return np.asarray([ids], dtype=np.int64)


class TensorRTGraphs:
    """model.plan and model.decode.plan in TensorRT. Buffers are torch CUDA tensors, so the state
    goes from one step to the next without leaving the GPU."""

    def __init__(self, plan: Path, plugins: Path, decode_plan: Path):
        import tensorrt as trt
        import torch
        self.torch = torch
        # The plugin library registers its creators when it is loaded; load it before deserializing.
        ctypes.CDLL(str(plugins), mode=ctypes.RTLD_GLOBAL)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engines, self.contexts = {}, {}
        for kind, path in (("prefill", plan), ("decode", decode_plan)):
            if not path.is_file():
                sys.exit(f"error: {path} does not exist; `mq-deploy build` writes it beside the prefill plan")
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                sys.exit(f"error: TensorRT could not load {path} (built by another TensorRT version or GPU?)")
            context = engine.create_execution_context()
            if context is None:
                sys.exit(f"error: TensorRT could not create an execution context for {path} (GPU memory?)")
            self.engines[kind], self.contexts[kind] = engine, context
        self.stream = torch.cuda.Stream()
        self.dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                       trt.DataType.BF16: torch.bfloat16, trt.DataType.INT64: torch.int64,
                       trt.DataType.INT32: torch.int32}
        self.input_mode = trt.TensorIOMode.INPUT

    def run(self, kind: str, feeds: dict) -> dict:
        torch, engine, context = self.torch, self.engines[kind], self.contexts[kind]
        outputs = {}
        with torch.cuda.stream(self.stream):
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) == self.input_mode:
                    value = feeds[name].to(self.dtypes[engine.get_tensor_dtype(name)]).contiguous()
                    feeds[name] = value                       # keep it alive until the stream is done
                    if not context.set_input_shape(name, tuple(value.shape)):
                        low, _, high = engine.get_tensor_profile_shape(name, 0)
                        sys.exit(f"error: {name} of shape {tuple(value.shape)} is outside the {kind} engine's "
                                 f"profile ({tuple(low)} .. {tuple(high)}); shorten the prompt or rebuild with "
                                 "a larger --max")
                    context.set_tensor_address(name, value.data_ptr())
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if engine.get_tensor_mode(name) != self.input_mode:
                    out = torch.empty(tuple(context.get_tensor_shape(name)),
                                      dtype=self.dtypes[engine.get_tensor_dtype(name)], device="cuda")
                    context.set_tensor_address(name, out.data_ptr())
                    outputs[name] = out
            if not context.execute_async_v3(self.stream.cuda_stream):
                sys.exit(f"error: TensorRT failed to run the {kind} engine")
        self.stream.synchronize()
        return outputs

    def argmax_last(self, logits):
        return logits[:, -1].float().argmax(-1, keepdim=True)

    def tokens(self, ids: list[int]):
        return self.torch.tensor([ids], dtype=self.torch.int64, device="cuda")


# ---------------------------------------------------------------------------------------- the loop
def generate(graphs, prompt_ids: list[int], max_new_tokens: int) -> tuple[list[int], dict]:
    """Greedy decoding; returns the new token ids and timings."""
    start = time.perf_counter()
    out = graphs.run("prefill", {"input_ids": graphs.tokens(prompt_ids)})
    token = graphs.argmax_last(out["logits"])
    prefill_s, new = time.perf_counter() - start, [int(token[0, 0])]
    start = time.perf_counter()
    for _ in range(max_new_tokens - 1):
        state = {name.replace("_out.", "."): value for name, value in out.items() if "_out." in name}
        out = graphs.run("decode", {"input_ids": token, **state})
        token = graphs.argmax_last(out["logits"])
        new.append(int(token[0, 0]))
    decode_s = time.perf_counter() - start
    return new, {"prefill_tokens_per_s": len(prompt_ids) / prefill_s,
                 "decode_tokens_per_s": (max_new_tokens - 1) / decode_s if max_new_tokens > 1 else None}


# ---------------------------------------------------------------------------------------- app
class ByteTokenizer:
    """The demo model's tokenizer (manifest: model.mq_deploy.tokenizer = "bytes"): UTF-8 bytes are ids."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class FileTokenizer:
    """A Hugging Face tokenizer.json (the `tokenizers` package)."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer
        self.tokenizer = Tokenizer.from_file(str(path))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def load_tokenizer(manifest: dict, manifest_file: Path, model_dir: str | None):
    """The byte-level tokenizer the manifest declares, or tokenizer.json of the source model
    (manifest source.path, else source.relative_path from the manifest's folder, or --model)."""
    if manifest["model"].get("mq_deploy", {}).get("tokenizer") == "bytes":
        return ByteTokenizer()
    source = manifest["source"]
    candidates = [Path(model_dir)] if model_dir else [Path(source["path"])]
    if not model_dir and source.get("relative_path"):
        candidates.append(manifest_file.parent / source["relative_path"])
    for folder in candidates:
        if (folder / "tokenizer.json").is_file():
            return FileTokenizer(folder / "tokenizer.json")
    sys.exit(f"error: no tokenizer.json in {', '.join(map(str, candidates))}; pass --model DIR with the model's "
             "tokenizer files")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--engine", type=Path, help="prefill plan (its .decode.plan beside it)")
    which.add_argument("--onnx", type=Path, help="prefill graph (its .decode.onnx beside it)")
    p.add_argument("--manifest", type=Path, help="manifest.json of the export (default: beside the graph, or "
                                                 "named by the engine's sidecar)")
    p.add_argument("--plugins", type=Path, default=os.environ.get("MQ_PLUGIN_PATH"),
                   help="libmq_plugins.so (default: $MQ_PLUGIN_PATH)")
    p.add_argument("--model", help="model directory for the tokenizer (default: the manifest's source)")
    p.add_argument("--prompt", default="The ")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the token ids and timings as JSON")
    args = p.parse_args(argv)
    graph = args.engine or args.onnx
    if not graph.is_file():
        sys.exit(f"error: {graph} does not exist")
    manifest_file = args.manifest or graph.with_name("manifest.json")
    sidecar = {}
    if args.engine:
        if not Path(f"{graph}.json").is_file():
            sys.exit(f"error: {graph}.json (the plan's sidecar, written by `mq-deploy build`) is missing")
        sidecar = json.loads(Path(f"{graph}.json").read_text())
        if not args.manifest and not manifest_file.is_file():
            manifest_file = Path(sidecar.get("manifest_path", manifest_file))
    if not manifest_file.is_file():
        sys.exit(f"error: no manifest at {manifest_file}; pass --manifest (written by `mq-deploy export`)")
    manifest = json.loads(manifest_file.read_text())
    if "decode" not in manifest["graphs"]:
        sys.exit("error: the export has no decode graph (exported with --no-decode); export again without it")
    tokenizer = load_tokenizer(manifest, manifest_file, args.model)
    if args.engine:
        plugins = args.plugins
        if plugins is not None and plugins.is_dir():
            plugins = plugins / "libmq_plugins.so"
        if plugins is None or not plugins.is_file():
            sys.exit("error: the plugin library libmq_plugins.so was not found; pass --plugins PATH or set "
                     "MQ_PLUGIN_PATH (build it: cmake -S . -B build && cmake --build build)")
        engine_set = sidecar.get("engine_set")
        if engine_set is not None and "decode" not in engine_set:
            sys.exit(f"error: {graph} was built without a decode plan (--no-decode); build again without it")
        # Older sidecars name no set: the decode plan is then <stem>.decode.plan beside the prefill plan.
        decode_plan = graph.with_name(engine_set["decode"] if engine_set else f"{graph.stem}.decode{graph.suffix or '.plan'}")
        if not decode_plan.is_file():
            sys.exit(f"error: {decode_plan} (the decode plan) does not exist; build the engines with "
                     "`mq-deploy build` (without --no-decode)")
        graphs = TensorRTGraphs(args.engine, plugins, decode_plan)
    else:
        graphs = OnnxRuntimeGraphs(args.onnx, manifest)
    if args.max_new_tokens < 1:
        sys.exit("error: --max-new-tokens must be at least 1")
    prompt_ids = tokenizer.encode(args.prompt)
    if not prompt_ids:
        sys.exit("error: the prompt is empty after tokenization")
    new, timing = generate(graphs, prompt_ids, args.max_new_tokens)
    if args.json:
        print(json.dumps({"prompt_ids": prompt_ids, "new_ids": new, **timing}))
    else:
        print(args.prompt + tokenizer.decode(new))
        decode = timing["decode_tokens_per_s"]
        print(f"\n[prefill {len(prompt_ids)} tokens: {timing['prefill_tokens_per_s']:,.0f} tokens/s; "
              f"decode {len(new)} tokens: {'-' if decode is None else f'{decode:,.0f}'} tokens/s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
