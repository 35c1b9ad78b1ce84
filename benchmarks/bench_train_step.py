"""Seconds per training step of a byte-level Mamba-1 on this CPU: the package's PyTorch scan against
train.py's compiled scan (--fast-scan, scripts/demo_model/cpu_scan.c).

    python benchmarks/bench_train_step.py [--d-model 384 --layers 8 --batch 8 --seq-len 256 --threads 1 2]

Prints a markdown table: the median of --repeats steps (forward, backward, AdamW) after one warm-up
step, per scan and thread count, and the time one --steps-long run would take. Each setting runs in
its own process, so the thread count and the allocator setting (THP_MEM_ALLOC_ENABLE, as train.py
sets it) take effect; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_setting(args) -> dict:
    import torch
    import torch.nn.functional as F

    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    torch.set_num_threads(args.threads[0])
    config = MambaConfig(vocab_size=256, hidden_size=args.d_model, num_hidden_layers=args.layers, state_size=16,
                         tokenizer="bytes")
    model = init_mamba_weights(MambaLM(config), seed=0).train()
    if args.scan == "compiled":
        sys.path.insert(0, str(ROOT / "scripts" / "demo_model"))
        from fast_scan import compiled_selective_scan
        model.set_scan_impl(compiled_selective_scan)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randint(0, 256, (args.batch, args.seq_len + 1), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(args.repeats + 1):
        start = time.perf_counter()
        loss = F.cross_entropy(model(batch[:, :-1]).reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return {"parameters": sum(p.numel() for p in model.parameters()), "seconds": statistics.median(times[1:])}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d-model", type=int, default=384)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000, help="run length for the last column")
    p.add_argument("--scan", choices=["torch", "compiled"], help=argparse.SUPPRESS)   # one setting (child)
    args = p.parse_args(argv)
    if args.scan is not None:
        print(json.dumps(one_setting(args)))
        return 0
    rows = []
    for threads in args.threads:
        for scan in ("torch", "compiled"):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "THP_MEM_ALLOC_ENABLE": "1",
                   "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            cmd = [sys.executable, __file__, "--scan", scan, "--threads", str(threads), "--d-model", str(args.d_model),
                   "--layers", str(args.layers), "--batch", str(args.batch), "--seq-len", str(args.seq_len),
                   "--repeats", str(args.repeats)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            rows.append((threads, scan, json.loads(done.stdout.strip().splitlines()[-1])))
    params = rows[0][2]["parameters"]
    print(f"Training step of a {args.layers} x {args.d_model} byte-level Mamba-1 ({params:,} parameters), "
          f"batch {args.batch} x {args.seq_len} bytes, AdamW; median of {args.repeats} steps.\n")
    print(f"| threads | scan | s / step | bytes / s | {args.steps} steps |")
    print("|---:|---|---:|---:|---:|")
    for threads, scan, r in rows:
        s = r["seconds"]
        label = "PyTorch (mq_deploy.ops, fused)" if scan == "torch" else "compiled (train.py --fast-scan)"
        print(f"| {threads} | {label} | {s:.2f} | {args.batch * args.seq_len / s:,.0f} | "
              f"{args.steps * s / 60:.0f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
