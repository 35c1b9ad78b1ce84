"""Write a random-initialised checkpoint of a published Mamba-1 size, offline.

    python scripts/make_checkpoint.py --size 130m --format hf --out /tmp/mamba-130m-hf [--layers 4] [--dtype bfloat16]

--format hf: transformers' MambaForCausalLM saved by save_pretrained (as state-spaces/mamba-<size>-hf
ships); mamba_ssm: config.json + pytorch_model.bin with mamba_ssm's names (as state-spaces/mamba-<size>).
No tokenizer is written (a real mamba_ssm checkpoint has none either): use token-id files, or copy a
GPT-NeoX tokenizer.json in. Sizes: 130m 370m 790m 1.4b 2.8b.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models.real_sizes import FORMATS, REAL_SIZES, materialize, parameter_count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=REAL_SIZES, required=True)
    parser.add_argument("--format", choices=FORMATS, default="hf")
    parser.add_argument("--out", required=True, help="new directory to create")
    parser.add_argument("--layers", type=int, help="keep only the first N layers")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        out = materialize(args.size, args.out, args.format, layers=args.layers, seed=args.seed,
                          dtype=getattr(torch, args.dtype))
    except MQDeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out}: mamba-{args.size} ({args.format}, {parameter_count(args.size) / 1e6:.0f} M parameters at full "
          f"depth{f', {args.layers} layers kept' if args.layers else ''}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
