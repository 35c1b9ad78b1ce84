"""Calibration time of a recipe on a 130M-shaped random Mamba (d_model 768, 24 layers, d_state 16,
vocab 50280) on this machine's CPU, with 32 windows of 512 tokens by default.

    python benchmarks/bench_calibration.py [--recipe mambaquant] [--samples 32] [--seq-len 512]

Prints one markdown table: seconds per stage (FP statistics + transforms, activation ranges and
weight rounding) and the total. Target on the project's 2-core machine: under 5 minutes.
"""

from __future__ import annotations

import argparse
import time

import torch

from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.models.init import init_mamba_weights
from mq_deploy.quant.config import QuantConfig
from mq_deploy.quant.quantize import quantize


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="mambaquant")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--d-model", type=int, default=768)
    args = p.parse_args(argv)

    config = MambaConfig(vocab_size=50280, hidden_size=args.d_model, num_hidden_layers=args.layers)
    model = init_mamba_weights(MambaLM(config)).eval()
    calib = torch.randint(0, config.vocab_size, (args.samples, args.seq_len),
                          generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.no_grad():
        model(calib[:8])
    forward = time.perf_counter() - start
    start = time.perf_counter()
    qm = quantize(model, args.recipe, calib, QuantConfig(), progress=True)
    total = time.perf_counter() - start
    params = sum(p_.numel() for p_ in model.parameters())
    print(f"{args.recipe} W8A8 deploy on a random {params / 1e6:.0f}M-parameter Mamba (d_model {args.d_model}, "
          f"{args.layers} layers), {args.samples}x{args.seq_len} calibration tokens, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| stage | seconds |")
    print("|---|---:|")
    print(f"| one forward pass over 8x{args.seq_len} tokens (reference) | {forward:.1f} |")
    print(f"| FP statistics + exact transforms | {qm.seconds['transforms']:.1f} |")
    print(f"| activation ranges + weight rounding | {qm.seconds['quantizers']:.1f} |")
    print(f"| **total** | **{total:.1f}** |")


if __name__ == "__main__":
    main()
