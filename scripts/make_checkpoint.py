"""Write a random-initialised checkpoint of a published Mamba-1, Mamba-2 or Vision Mamba model, offline.

    python scripts/make_checkpoint.py --size 130m --format hf --out /tmp/mamba-130m-hf [--layers 4] [--dtype bfloat16]
    python scripts/make_checkpoint.py --size mamba2-780m --out /tmp/mamba2-780m          # mamba_ssm, as published
    python scripts/make_checkpoint.py --size vim-s --out /tmp/vim-s                       # /tmp/vim-s/vim_s_midclstok_80p5acc.pth

Mamba-1 (mamba-130m ... mamba-2.8b, or just 130m ... 2.8b): --format hf (default) is transformers'
MambaForCausalLM saved by save_pretrained (as state-spaces/mamba-<size>-hf ships); mamba_ssm is
config.json + pytorch_model.bin with mamba_ssm's names (as state-spaces/mamba-<size>).
Mamba-2 (mamba2-130m ... mamba2-2.7b): --format mamba_ssm (default, as state-spaces/mamba2-<size>
ships) or hf (transformers' Mamba2ForCausalLM at the config its conversion script derives).
Vision Mamba (vim-t, vim-t-ft, vim-s, vim-s-ft, vim-b; -ft: the fine-tuned stride-8 models): the
official .pth under its published name. No tokenizer is written (a real mamba_ssm checkpoint has
none either): use token-id files, or copy a GPT-NeoX tokenizer.json in.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from mq_deploy.errors import MQDeployError
from mq_deploy.models.real_sizes import FORMATS, PUBLISHED, REAL_SIZES, materialize, parameter_count, published


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=(*REAL_SIZES, *PUBLISHED), required=True, metavar="NAME",
                        help=f"one of {', '.join(PUBLISHED)} (a bare Mamba-1 size names the Mamba-1 model)")
    parser.add_argument("--format", choices=FORMATS, help="default: the format the publisher ships")
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
    entry = published(args.size)
    print(f"{out}: {entry.name} ({args.format or entry.formats[0]}, {parameter_count(args.size) / 1e6:.0f} M "
          f"parameters at full depth{f', {args.layers} layers kept' if args.layers else ''}) in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
