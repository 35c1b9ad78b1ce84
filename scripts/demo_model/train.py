"""Train the bundled demo model: a small byte-level Mamba-1 on real English Wikipedia text.

Reproduce samples/models/mamba-byte-demo exactly (about 25 minutes on 2 CPU cores):

    pip download --no-deps gensim==4.4.0 -d /tmp/gensim
    python scripts/demo_model/prepare_text.py /tmp/gensim/gensim-4.4.0-*.whl --out /tmp/wiki
    python scripts/demo_model/train.py --train /tmp/wiki/train.txt --out samples/models/mamba-byte-demo

Deterministic for a given torch version and thread count (seeded init and batch sampling).
Writes the model (config.json + model.safetensors) and training.json (settings, loss curve).

Long runs (the larger comparison model) are resumable: with --checkpoint DIR the run saves its whole
state (weights, optimizer, sampler, loss curve) there every --checkpoint-every steps and when
--stop-after-minutes runs out or it gets SIGTERM; the same command resumes it. A resumed run ends
with the same weights as an uninterrupted one (same torch version and thread count).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

# large CPU tensors on 2 MB pages: fewer page faults for the step's 100 MB temporaries (read by
# torch's CPU allocator, so set before it allocates; speed only, the numbers do not change)
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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
    p.add_argument("--checkpoint", type=Path, help="resumable state directory (resumed when it holds a run)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--stop-after-minutes", type=float,
                   help="save a checkpoint and stop after this long (rerun the same command to go on)")
    p.add_argument("--save-dtype", default="float32", choices=["float32", "float16"],
                   help="dtype of the saved weights (float16 halves the file; loading upcasts)")
    p.add_argument("--fast-scan", action="store_true",
                   help="train with the compiled scan (cpu_scan.c, needs a C compiler): 2x faster per step on a CPU")
    p.add_argument("--outliers-every", type=int, default=0,
                   help="every this many steps, print the largest channel max/median ratio at the linears' inputs")
    args = p.parse_args(argv)
    command = "python scripts/demo_model/train.py " + " ".join(sys.argv[1:] if argv is None else argv)

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
    if args.fast_scan:
        if args.arch != "mamba" or args.device != "cpu":
            raise SystemExit("error: --fast-scan is the Mamba-1 CPU scan; drop it for --arch mamba2 or a GPU")
        sys.path.insert(0, str(Path(__file__).parent))
        from fast_scan import compiled_selective_scan
        model.set_scan_impl(compiled_selective_scan)
    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2 and "A_log" not in n]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.dim() < 2 or "A_log" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    sampler = torch.Generator().manual_seed(args.seed)
    run = {"step": 0, "curve": [], "segments": []}
    if args.checkpoint is not None and (args.checkpoint / "state.pt").is_file():
        run = resume(args, model, opt, sampler)
    curve, start = run["curve"], time.time()
    stop = {"signal": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(signal=True))
    probe = data[-4 * (args.seq_len + 1):].reshape(4, args.seq_len + 1)[:, :-1]   # fixed batch for --outliers-every
    print(f"training {sum(p_.numel() for p_ in model.parameters()):,} parameters on {len(data):,} bytes"
          f" from step {run['step']}")
    step = run["step"]
    while step < args.steps:
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
        step += 1
        if (step - 1) % 50 == 0 or step == args.steps:
            recent = sum(curve[-50:]) / len(curve[-50:])
            print(f"step {step - 1:5d}/{args.steps}  loss {recent:.3f} nats/byte ({recent / math.log(2):.3f} bits)"
                  f"  {time.time() - start:.0f}s", flush=True)
        if args.outliers_every and step % args.outliers_every == 0:
            print(f"  outliers at step {step}: {outlier_summary(model, probe.to(args.device))}", flush=True)
        out_of_time = (args.stop_after_minutes is not None
                       and time.time() - start > 60 * args.stop_after_minutes)
        if args.checkpoint is not None and step < args.steps and (
                step % args.checkpoint_every == 0 or out_of_time or stop["signal"]):
            save_checkpoint(args, model, opt, sampler, step, curve,
                            run["segments"] + [segment(step - run["step"], time.time() - start)], command)
        if step < args.steps and (out_of_time or stop["signal"]):
            print(f"stopped at step {step}/{args.steps}; rerun the same command to resume from {args.checkpoint}")
            return 3
    segments = run["segments"] + [segment(step - run["step"], time.time() - start)]

    model = model.cpu().eval()
    model.set_scan_impl("fused")
    if args.save_dtype == "float16":
        model = model.half()
    save_model(model, args.out)
    record = {"command": command,
              "settings": {k: str(v) for k, v in vars(args).items()}, "train_bytes": len(data),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "seconds": round(sum(s_["seconds"] for s_ in segments), 1),
              "loss_per_50_steps": [round(sum(curve[i:i + 50]) / len(curve[i:i + 50]), 4)
                                    for i in range(0, len(curve), 50)]}
    if len(segments) > 1:
        record["segments"] = segments     # a resumed run: how long each part took, on how many threads
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"saved {args.out}")
    return 0


# settings that must match for a checkpoint to be resumed (the rest may change between parts)
RESUME_KEYS = ("train", "d_model", "layers", "d_state", "steps", "batch", "seq_len", "lr", "warmup", "seed",
               "arch", "head_dim")


def segment(steps: int, seconds: float) -> dict:
    return {"steps": steps, "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def save_checkpoint(args, model, opt, sampler, step, curve, segments, command) -> None:
    """Everything the run needs to go on, written to a temporary file and renamed into place so that
    a run killed mid-write leaves the previous checkpoint intact."""
    args.checkpoint.mkdir(parents=True, exist_ok=True)
    state = {"settings": {k: str(getattr(args, k)) for k in RESUME_KEYS}, "step": step, "curve": curve,
             "model": model.state_dict(), "optimizer": opt.state_dict(), "sampler": sampler.get_state(),
             "segments": segments, "command": command}
    tmp = args.checkpoint / "state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, args.checkpoint / "state.pt")
    print(f"checkpoint: step {step} -> {args.checkpoint / 'state.pt'}", flush=True)


def resume(args, model, opt, sampler) -> dict:
    state = torch.load(args.checkpoint / "state.pt", weights_only=False)
    wanted = {k: str(getattr(args, k)) for k in RESUME_KEYS}
    changed = {k: (state["settings"][k], v) for k, v in wanted.items() if state["settings"].get(k) != v}
    if changed:
        raise SystemExit(f"error: {args.checkpoint} holds a run with other settings {changed} (checkpoint, now); "
                         "pass the original settings or another --checkpoint directory")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sampler.set_state(state["sampler"])
    print(f"resuming {args.checkpoint} at step {state['step']}")
    return {"step": state["step"], "curve": state["curve"], "segments": state["segments"]}


@torch.no_grad()
def outlier_summary(model, probe) -> str:
    """The largest ratio of a channel's max |x| to the median channel's, over every quantized linear's
    input: the number that says whether per-tensor INT8 has outliers to fight."""
    from mq_deploy.quant.inspect import channel_statistics
    was_training = model.training
    model.eval()
    stats = channel_statistics(model, probe, progress=False)
    model.train(was_training)
    worst = {}
    for (layer, point), obs in stats.items():
        ratio = (obs.absmax.max() / obs.absmax.median().clamp_min(1e-12)).item()
        if ratio > worst.get(point, (0, None))[0]:
            worst[point] = (ratio, layer)
    return ", ".join(f"{point} {ratio:.0f}x (layer {layer})" for point, (ratio, layer) in sorted(worst.items()))


if __name__ == "__main__":
    sys.exit(main())
