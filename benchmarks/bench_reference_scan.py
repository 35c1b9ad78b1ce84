"""Throughput of the PyTorch reference selective scans on this machine's CPU.

    python benchmarks/bench_reference_scan.py [--batch 1 --seqlen 2048 --dim 1536 --dstate 16]

Prints a markdown table: tokens/s of the sequential loop and the chunked form (forward, and
forward+backward, which is what training costs), and the chunked form's max relative error against
the sequential loop in float32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mq_deploy.ops import selective_scan_fused, selective_scan_chunked, selective_scan_ref


def make_inputs(batch, seqlen, dim, dstate, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    def r(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)
    A = -torch.exp(torch.log(torch.arange(1, dstate + 1.0)).expand(dim, dstate))
    return dict(x=r(batch, seqlen, dim), delta=r(batch, seqlen, dim) - 2.0, A=A,
                B=r(batch, seqlen, dstate), C=r(batch, seqlen, dstate), D=torch.ones(dim),
                delta_bias=torch.zeros(dim), z=r(batch, seqlen, dim))


def time_call(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--dstate", type=int, default=16)
    p.add_argument("--chunk-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-backward", action="store_true", help="skip the forward+backward rows")
    args = p.parse_args(argv)

    tokens = args.batch * args.seqlen
    inputs = make_inputs(args.batch, args.seqlen, args.dim, args.dstate)
    impls = {"sequential": lambda **kw: selective_scan_ref(**kw),
             "fused": lambda **kw: selective_scan_fused(**kw),
             "chunked": lambda **kw: selective_scan_chunked(**kw, chunk_size=args.chunk_size)}
    with torch.no_grad():
        ref = selective_scan_ref(**inputs)
        err = ((selective_scan_chunked(**inputs, chunk_size=args.chunk_size) - ref).abs().max()
               / ref.abs().max()).item()

    rows = []
    for name, fn in impls.items():
        with torch.no_grad():
            t = time_call(lambda: fn(**inputs), args.repeats)
        rows.append((name, "forward", t))
        if not args.no_backward:
            grad_inputs = make_inputs(args.batch, args.seqlen, args.dim, args.dstate, requires_grad=True)
            t = time_call(lambda: fn(**grad_inputs).sum().backward(), args.repeats)
            rows.append((name, "forward+backward", t))

    print(f"selective scan, B={args.batch} L={args.seqlen} D={args.dim} N={args.dstate}, "
          f"float32, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"chunked vs sequential: max relative error {err:.2e} (chunk_size={args.chunk_size})\n")
    print("| implementation | pass | median time (s) | tokens/s |")
    print("|---|---|---:|---:|")
    for name, kind, t in rows:
        print(f"| {name} | {kind} | {t:.3f} | {tokens / t:,.0f} |")


if __name__ == "__main__":
    main()
