"""Train the bundled demo model: a small byte-level Mamba-1 on real English Wikipedia text.

Reproduce samples/models/mamba-byte-demo exactly (about 25 minutes on 2 CPU cores):

    pip download --no-deps gensim==4.4.0 -d /tmp/gensim
    python scripts/demo_model/prepare_text.py /tmp/gensim/gensim-4.4.0-*.whl --out /tmp/wiki
    python scripts/demo_model/train.py --train /tmp/wiki/train.txt --out samples/models/mamba-byte-demo

Deterministic for a given torch version and thread count (seeded init and batch sampling).
Writes the model (config.json + model.safetensors) and training.json (settings, loss curve).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.models.init import init_mamba2_weights, init_mamba_weights
from mq_deploy.models.mamba2 import Mamba2Config, Mamba2LM
from mq_deploy.models.loading import save_model
from mq_deploy.models.tokenizer import ByteTokenizer


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=Path, required=True, help="plain training text (prepare_text.py's train.txt)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (a larger model trains in minutes on a GPU)")
    p.add_argument("--arch", default="mamba", choices=["mamba", "mamba2"],
                   help="mamba2: a Mamba-2 (SSD) model, heads of --head-dim channels, one group")
    p.add_argument("--head-dim", type=int, default=32, help="Mamba-2 head size (default 32)")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    data = torch.tensor(ByteTokenizer().encode(args.train.read_text(encoding="utf-8")), dtype=torch.long)
    if args.arch == "mamba2":
        config = Mamba2Config(vocab_size=256, hidden_size=args.d_model, num_hidden_layers=args.layers,
                              state_size=args.d_state, num_heads=2 * args.d_model // args.head_dim,
                              head_dim=args.head_dim, n_groups=1, tie_word_embeddings=True, tokenizer="bytes")
        model = init_mamba2_weights(Mamba2LM(config), seed=args.seed)
    else:
        config = MambaConfig(vocab_size=256, hidden_size=args.d_model, num_hidden_layers=args.layers,
                             state_size=args.d_state, tokenizer="bytes")
        model = init_mamba_weights(MambaLM(config), seed=args.seed)
    model = model.to(args.device).train()
    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2 and "A_log" not in n]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.dim() < 2 or "A_log" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    sampler = torch.Generator().manual_seed(args.seed)
    curve, start = [], time.time()
    print(f"training {sum(p_.numel() for p_ in model.parameters()):,} parameters on {len(data):,} bytes")
    for step in range(args.steps):
        offsets = torch.randint(0, len(data) - args.seq_len - 1, (args.batch,), generator=sampler)
        batch = torch.stack([data[o:o + args.seq_len + 1] for o in offsets.tolist()]).to(args.device)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, config.vocab_size), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
        if step % 50 == 0 or step == args.steps - 1:
            recent = sum(curve[-50:]) / len(curve[-50:])
            print(f"step {step:5d}/{args.steps}  loss {recent:.3f} nats/byte ({recent / math.log(2):.3f} bits)"
                  f"  {time.time() - start:.0f}s", flush=True)

    model = model.cpu().eval()
    save_model(model, args.out)
    record = {"command": "python scripts/demo_model/train.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "settings": {k: str(v) for k, v in vars(args).items()}, "train_bytes": len(data),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "seconds": round(time.time() - start, 1),
              "loss_per_50_steps": [round(sum(curve[i:i + 50]) / len(curve[i:i + 50]), 4)
                                    for i in range(0, len(curve), 50)]}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
