"""The published sizes of every family through the chain on this machine: load, calibrate + quantize
(mambaquant W8A8, 32 x 512 tokens or 32 images), export and check, with seconds, peak memory and sizes.

    python benchmarks/bench_scale.py [--sizes 130m,370m,790m] [--device cpu|cuda] [--layers N]
                                     [--no-export] [--workdir DIR] [--json FILE]
    python benchmarks/bench_scale.py --sizes mamba2-130m,mamba2-370m,vim-t,vim-s,vim-b

Sizes: the names of mq_deploy.models.real_sizes (mamba-130m ... mamba-2.8b, or just 130m ... 2.8b;
mamba2-130m ... mamba2-2.7b; vim-t, vim-t-ft, vim-s, vim-s-ft, vim-b). Each size runs in its own
process (peak RSS per size): first a random-initialised checkpoint of the published config is
written in the format its publisher ships (scripts/make_checkpoint.py, not timed), then the measured
run. Calibration tokens are seeded random ids over the vocabulary, calibration images seeded
Gaussian noise at the model's resolution: the timing and memory of calibration do not depend on
the content. --device cuda calibrates on the GPU (statistics and the float64 folds there;
the project's CUDA scan when libmq_kernels is built, MQ_KERNELS_LIB) and adds the peak GPU memory.
Memory is given twice: peak RSS (ru_maxrss, which counts the pages of the mapped checkpoint and
artifact, pages the system drops when it needs the room) and peak anonymous memory (sampled
RssAnon: what has to fit). Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _dir_bytes(path: Path) -> int:
    """Bytes of a checkpoint, artifact or export: a directory's files, or one file (a Vim .pth)."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure_one(size: str, checkpoint: Path, work: Path, device: str, export: bool, samples: int, seq_len: int) -> dict:
    import torch

    from mq_deploy.models.checkpoints import load_checkpoint
    from mq_deploy.models.vim import VimConfig
    from mq_deploy.quant.artifact import save_quantized
    from mq_deploy.quant.config import QuantConfig
    from mq_deploy.quant.quantize import quantize

    row = {"size": size, "device": device}
    anonymous = AnonymousPeak()
    start = time.perf_counter()
    loaded = load_checkpoint(checkpoint)
    row["load_s"] = time.perf_counter() - start
    row["params_m"] = sum(p.numel() for p in loaded.model.parameters()) / 1e6
    cfg = loaded.model.config
    seeded = torch.Generator().manual_seed(0)
    if isinstance(cfg, VimConfig):
        calib = torch.randn(samples, cfg.in_channels, cfg.img_size, cfg.img_size, generator=seeded)
    else:
        calib = torch.randint(0, cfg.vocab_size, (samples, seq_len), generator=seeded)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    qm = quantize(loaded.model, "mambaquant", calib, QuantConfig(device=device), progress=False)
    row["quantize_s"] = time.perf_counter() - start
    row["stages"] = {k: round(v, 1) for k, v in qm.seconds.items()}
    row["ranges"] = "replayed" if qm.ranges_replayed else "2nd pass"      # calibration passes: 1 or 2
    if device.startswith("cuda"):
        row["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    start = time.perf_counter()
    artifact = save_quantized(qm, work / "q", source_dir=checkpoint)
    row["save_s"] = time.perf_counter() - start
    row["source_gb"] = _dir_bytes(checkpoint) / 1e9
    row["artifact_gb"] = _dir_bytes(artifact) / 1e9
    row["quantize_rss_gb"] = _peak_rss_gb()          # load + quantize + save; export may raise it later
    row["quantize_anon_gb"] = anonymous.peak_gb
    del qm, loaded
    if export:
        from mq_deploy.export import check_onnx, export_onnx
        start = time.perf_counter()
        result = export_onnx(artifact, work / "onnx" / "model.onnx")
        row["export_s"] = time.perf_counter() - start
        start = time.perf_counter()
        problems = check_onnx(result.onnx_path)
        row["check_s"] = time.perf_counter() - start
        row["check"] = "ok" if not problems else f"{len(problems)} problems"
        row["export_gb"] = _dir_bytes(result.onnx_path.parent) / 1e9
    row["peak_rss_gb"] = _peak_rss_gb()
    row["peak_anon_gb"] = anonymous.stop()
    return row


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class AnonymousPeak:
    """Peak anonymous memory (RssAnon: what the system cannot drop, unlike the pages of a mapped
    checkpoint, which ru_maxrss counts too), sampled every 50 ms on Linux."""

    def __init__(self):
        import threading
        self.peak_gb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def now_gb() -> float:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) / 2**20
        except OSError:
            pass
        return float("nan")

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak_gb = max(self.peak_gb, self.now_gb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak_gb, self.now_gb())


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    # the child imports this checkout's mq_deploy, installed or not
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="130m,370m,790m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, help="keep only the first N layers of each size")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--workdir", help="where checkpoints and outputs go (default: a temporary folder)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "CHECKPOINT", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        size, checkpoint, work = args.one
        row = measure_one(size, Path(checkpoint), Path(work), args.device, not args.no_export, args.samples,
                          args.seq_len)
        print("ROW " + json.dumps(row))
        return 0

    sys.path.insert(0, str(REPO))                     # this checkout's mq_deploy, installed or not
    from mq_deploy.errors import MQDeployError
    from mq_deploy.models.real_sizes import checkpoint_path, published
    sizes = args.sizes.split(",")
    for size in sizes:                                 # every name checked before the first size runs
        try:
            published(size)
        except MQDeployError as e:
            parser.error(str(e))
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for size in sizes:
            folder, work = Path(tmp) / f"checkpoint-{size}", Path(tmp) / f"work-{size}"
            checkpoint = checkpoint_path(size, folder)
            make = [sys.executable, str(REPO / "scripts" / "make_checkpoint.py"), "--size", size, "--out",
                    str(folder)] + (["--layers", str(args.layers)] if args.layers else [])
            start = time.perf_counter()
            made = _run(make)
            if made.returncode != 0:
                rows.append({"size": size, "error": made.stderr.strip().splitlines()[-1:]})
                continue
            print(f"[bench_scale] {size}: checkpoint written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            cmd = [sys.executable, __file__, "--one", size, str(checkpoint), str(work), "--device", args.device,
                   "--samples", str(args.samples), "--seq-len", str(args.seq_len)] + (
                ["--no-export"] if args.no_export else [])
            result = _run(cmd)
            found = [line[4:] for line in result.stdout.splitlines() if line.startswith("ROW ")]
            row = json.loads(found[0]) if found else {"size": size, "error": result.stderr.strip().splitlines()[-3:]}
            if args.layers:
                row["layers"] = args.layers
            rows.append(row)
            print(f"[bench_scale] {size}: {json.dumps(row)}", file=sys.stderr)
            subprocess.run(["rm", "-rf", str(folder), str(work)])
    cols = [("size", "size", ""), ("device", "device", ""), ("params (M)", "params_m", ".0f"), ("load s", "load_s", ".1f"),
            ("quantize s", "quantize_s", ".1f"), ("ranges", "ranges", ""), ("export s", "export_s", ".1f"), ("check s", "check_s", ".1f"),
            ("quantize peak RSS GB", "quantize_rss_gb", ".2f"), ("peak RSS GB", "peak_rss_gb", ".2f"),
            ("quantize peak anon GB", "quantize_anon_gb", ".2f"), ("peak anon GB", "peak_anon_gb", ".2f"), ("GPU peak GB", "gpu_peak_gb", ".2f"),
            ("source GB", "source_gb", ".2f"), ("artifact GB", "artifact_gb", ".2f"), ("export GB", "export_gb", ".2f")]
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(format(r[k], f) if k in r and f else str(r.get(k, "—")) for _, k, f in cols) + " |")
        if "error" in r:
            print(f"<!-- {r['size']}: {r['error']} -->")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
