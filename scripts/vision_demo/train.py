"""Train a bundled Vision Mamba on a bundled image set (mq_deploy/data/bundled_images.py).

Reproduce samples/models/vim-digits-demo, the vision demo (about 20 minutes on 2 CPU cores):

    python scripts/vision_demo/prepare_digits.py --out samples/data/digits.npz   # once; needs scikit-learn
    python scripts/vision_demo/train.py --out samples/models/vim-digits-demo

and samples/models/vim-mnist-comparison, the vision comparison model (the command is in its
training.json and in docs/comparison_model.md; --fast-scan compiles scripts/demo_model/cpu_scan.c).

The model is the released Vim's architecture (bidirectional mixers, middle class token, RMSNorm, FP32
residual) at a toy size: 32x32 inputs in 4x4 patches (64 patches + the class token), by default 4
layers of width 64. Trained on the set's training split with random shifts of up to 2 pixels; the
held-out split (360 digits, 1,000 MNIST images) is never seen. Deterministic for a given torch version and thread count.
Writes the model (config.json + model.safetensors) and training.json (settings, loss curve,
held-out top-1).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from mq_deploy.data.bundled_images import BUNDLED_SETS, bundled_split
from mq_deploy.data.images import topk_accuracy
from mq_deploy.models.init import init_mamba_weights
from mq_deploy.models.vim import VimConfig, VisionMamba
from mq_deploy.models.vim_loading import save_vim


def shifted(images: torch.Tensor, g: torch.Generator, most: int = 2) -> torch.Tensor:
    """Each image moved by up to `most` pixels each way, the border filled with its background (the
    corner pixel: these digits have no ink there)."""
    size = images.shape[-1]
    background = images[:, :, :1, :1]
    padded = F.pad(images - background, (most,) * 4) + background
    offsets = torch.randint(0, 2 * most + 1, (len(images), 2), generator=g).tolist()
    return torch.stack([padded[i, :, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(offsets)])


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@torch.no_grad()
def heldout_top1(model, images, labels) -> float:
    model.eval()
    logits = torch.cat([model(chunk) for chunk in images.split(120)])
    model.train()
    return topk_accuracy(logits, labels, ks=(1,))["top1"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", default="digits", choices=list(BUNDLED_SETS), help="the bundled image set")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--fast-scan", action="store_true",
                   help="the compiled CPU training scan (scripts/demo_model/fast_scan.py): about 2-3x faster")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"{args.out} exists and is not empty; choose another --out or remove it")
    torch.manual_seed(args.seed)
    train_x, train_y = bundled_split(args.data, "train")
    test_x, test_y = bundled_split(args.data, "heldout")
    config = VimConfig(hidden_size=args.d_model, num_hidden_layers=args.layers, img_size=32, patch_size=args.patch,
                       stride=args.patch, num_classes=10)
    model = VisionMamba(config)
    init_mamba_weights(model, seed=args.seed)
    with torch.no_grad():
        nn.init.trunc_normal_(model.backbone.pos_embed, std=0.02)
        nn.init.trunc_normal_(model.backbone.cls_token, std=0.02)
    device = torch.device(args.device)
    if args.fast_scan:
        if device.type != "cpu":
            sys.exit("error: --fast-scan is the CPU training scan; drop it on a GPU")
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "demo_model"))
        from fast_scan import compiled_selective_scan
        for layer in model.backbone.layers:
            layer.mixer.scan_impl = compiled_selective_scan
    model = model.to(device).train()
    train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.endswith("_log")]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.endswith("_log"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(train_y) / args.batch)
    total, step, curve, start = args.epochs * steps_per_epoch, 0, [], time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_y), generator=g).to(device)
        losses = []
        for chunk in order.split(args.batch):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total, args.lr, warmup=steps_per_epoch)
            images = shifted(train_x[chunk].cpu(), g).to(device)
            loss = F.cross_entropy(model(images), train_y[chunk], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            step += 1
        top1 = heldout_top1(model, test_x, test_y)
        curve.append({"epoch": epoch + 1, "loss": round(sum(losses) / len(losses), 4), "heldout_top1": round(top1, 4)})
        print(f"epoch {epoch + 1}/{args.epochs}  loss {curve[-1]['loss']:.4f}  held-out top-1 {top1:.4f}  "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    model = model.cpu().eval()
    save_vim(model, args.out)
    record = {"command": shlex.join(["python", "scripts/vision_demo/train.py", *(argv if argv is not None else sys.argv[1:])]),
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "train_images": len(train_y), "heldout_images": len(test_y),
              "heldout_top1": curve[-1]["heldout_top1"], "seconds": round(time.perf_counter() - start, 1),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "curve": curve}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: held-out top-1 {record['heldout_top1']:.4f}")


if __name__ == "__main__":
    main()
