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
import json
import sys
import time
from pathlib import Path

import numpy as np

from engines import OnnxRuntimeGraphs, TensorRTGraphs, fail, plugin_library, read_export


# ---------------------------------------------------------------------------------------- the loop
def generate(graphs, prompt_ids: list[int], max_new_tokens: int) -> tuple[list[int], dict]:
    """Greedy decoding; returns the new token ids and timings."""
    start = time.perf_counter()
    out = graphs.run("prefill", {"input_ids": graphs.from_numpy(np.asarray([prompt_ids], dtype=np.int64))})
    new = [graphs.argmax_last(out["logits"])]
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(max_new_tokens - 1):
        state = {name.replace("_out.", "."): value for name, value in out.items() if "_out." in name}
        out = graphs.run("decode", {"input_ids": graphs.from_numpy(np.asarray([[new[-1]]], dtype=np.int64)), **state})
        new.append(graphs.argmax_last(out["logits"]))
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
    fail(f"no tokenizer.json in {', '.join(map(str, candidates))}; pass --model DIR with the model's "
         "tokenizer files, or the prompt as token ids with --ids 1,2,3")


def parse_ids(text: str, manifest: dict) -> list[int]:
    """--ids "1, 2, 3": non-negative integers below the model's vocabulary size."""
    try:
        ids = [int(item) for item in text.split(",")]
    except ValueError:
        fail(f"--ids must be comma-separated token ids, got {text!r}")
    vocab = int(manifest["model"]["vocab_size"])
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        fail(f"--ids: {bad[0]} is not a token id of this model (0 .. {vocab - 1})")
    return ids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--engine", type=Path, help="prefill plan (its .decode.plan beside it)")
    which.add_argument("--onnx", type=Path, help="prefill graph (its .decode.onnx beside it)")
    p.add_argument("--manifest", type=Path, help="manifest.json of the export (default: beside the graph, or "
                                                 "named by the engine's sidecar)")
    p.add_argument("--plugins", type=Path, help="libmq_plugins.so (default: $MQ_PLUGIN_PATH)")
    p.add_argument("--model", help="model directory for the tokenizer (default: the manifest's source)")
    p.add_argument("--prompt", default="The ")
    p.add_argument("--ids", help="the prompt as token ids, 1,2,3 (no tokenizer needed: a mamba_ssm checkpoint "
                                 "ships none); prints the new ids")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print the token ids and timings as JSON")
    args = p.parse_args(argv)
    graph = args.engine or args.onnx
    manifest, manifest_file, sidecar = read_export(graph, args.manifest, engine=args.engine is not None)
    if manifest["model"].get("model_type") == "vim":
        fail(f"{graph} is an image classifier (Vision Mamba), not a language model; run "
             "samples/python/classify.py on it")
    if "decode" not in manifest["graphs"]:
        fail("the export has no decode graph (exported with --no-decode); export again without it")
    if args.max_new_tokens < 1:
        fail("--max-new-tokens must be at least 1")
    prompt_ids = parse_ids(args.ids, manifest) if args.ids is not None else None
    tokenizer = load_tokenizer(manifest, manifest_file, args.model) if prompt_ids is None else None
    if prompt_ids is None:          # tokenized (and checked) before any graph is loaded
        prompt_ids = tokenizer.encode(args.prompt)
        if not prompt_ids:
            fail("the prompt is empty after tokenization")
        vocab = int(manifest["model"]["vocab_size"])
        if max(prompt_ids) >= vocab:
            fail(f"the tokenizer gave id {max(prompt_ids)}, outside this model's vocabulary (0 .. {vocab - 1}): "
                 "it is not the model's tokenizer; pass --model DIR with the model's own tokenizer.json")
    if args.engine:
        plugins = plugin_library(args.plugins)
        engine_set = sidecar.get("engine_set")
        if engine_set is not None and "decode" not in engine_set:
            fail(f"{graph} was built without a decode plan (--no-decode); build again without it")
        # Older sidecars name no set: the decode plan is then <stem>.decode.plan beside the prefill plan.
        decode_plan = graph.with_name(engine_set["decode"] if engine_set else f"{graph.stem}.decode{graph.suffix or '.plan'}")
        if not decode_plan.is_file():
            fail(f"{decode_plan} (the decode plan) does not exist; build the engines with "
                 "`mq-deploy build` (without --no-decode)")
        graphs = TensorRTGraphs({"prefill": graph, "decode": decode_plan}, plugins)
    else:
        decode = graph.with_name(manifest["graphs"]["decode"]["file"])     # the manifest names the set
        graphs = OnnxRuntimeGraphs({"prefill": graph, "decode": decode})
    new, timing = generate(graphs, prompt_ids, args.max_new_tokens)
    if args.json:
        print(json.dumps({"prompt_ids": prompt_ids, "new_ids": new, **timing}))
    elif tokenizer is None:
        print(" ".join(map(str, new)))
    else:
        print(args.prompt + tokenizer.decode(new))
        decode = timing["decode_tokens_per_s"]
        print(f"\n[prefill {len(prompt_ids)} tokens: {timing['prefill_tokens_per_s']:,.0f} tokens/s; "
              f"decode {len(new)} tokens: {'-' if decode is None else f'{decode:,.0f}'} tokens/s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
