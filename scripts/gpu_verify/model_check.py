"""The torch model with its scan swapped for the project's CUDA kernel (libmq_kernels, through the
ctypes binding) must score held-out text as the torch reference scan does.

Runs a bundled demo model (the Mamba-1 one with the selective scan, or with family="mamba2" the
Mamba-2 one with the SSD scan) on samples/data/wiki_heldout.txt on the GPU twice, once with the
torch scan and once with the CUDA kernel, in float32 and in bfloat16 (the Mamba-2 model also with
the tensor-core SSD kernel in bfloat16), and compares perplexity and logits.
"""

from __future__ import annotations

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "samples" / "models" / "mamba-byte-demo"
DEMO_MODELS = {"mamba": DEMO_MODEL, "mamba2": REPO / "samples" / "models" / "mamba2-byte-demo"}
HELDOUT = REPO / "samples" / "data" / "wiki_heldout.txt"


def run(kernels, windows: int = 32, seq_len: int = 512, family: str = "mamba") -> list[dict]:
    import torch

    from mq_deploy.eval.perplexity import evaluate_perplexity
    from mq_deploy.ops.cuda_kernels import cuda_selective_scan, cuda_ssd_scan
    from mq_deploy.models.checkpoints import load_checkpoint

    loaded = load_checkpoint(DEMO_MODELS[family])
    cuda_scan = cuda_ssd_scan(kernels) if family == "mamba2" else cuda_selective_scan(kernels)
    text = HELDOUT.read_text(encoding="utf-8")
    ids = torch.tensor(list(text.encode("utf-8")[: windows * seq_len]), dtype=torch.long)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        model = loaded.model.to(device="cuda", dtype=dtype).eval()
        kernels_here = [("cuda kernel", cuda_scan)]
        if family == "mamba2" and dtype == torch.bfloat16:    # the tensor-core SSD scan takes 16-bit only
            kernels_here.append(("cuda mma", cuda_ssd_scan(kernels, "mma")))
        results, logits = {}, {}
        for impl_name, impl in [("torch", "fused")] + kernels_here:
            model.set_scan_impl(impl)
            r = evaluate_perplexity(model, ids.cuda(), total_bytes=ids.numel(), seq_len=seq_len, batch_size=8,
                                    progress=False)
            results[impl_name] = r
            with torch.no_grad():
                logits[impl_name] = model(ids[: 2 * seq_len].view(2, seq_len).cuda()).double()
        ref = results["torch"]
        for impl_name, _ in kernels_here:
            got = results[impl_name]
            rel_ppl = abs(got.perplexity / ref.perplexity - 1)
            diff = (logits[impl_name] - logits["torch"]).norm() / logits["torch"].norm()
            agree = (logits[impl_name].argmax(-1) == logits["torch"].argmax(-1)).double().mean().item()
            # float32: both scans are float32 arithmetic (different order); bfloat16: activations are
            # rounded to bf16 between ops in both, so the two may drift apart by a few bf16 ulps.
            tol = 1e-4 if dtype == torch.float32 else 5e-3
            name = str(dtype).replace("torch.", "") + (" (mma)" if impl_name == "cuda mma" else "")
            rows.append({"dtype": name, "tokens": ref.scored_tokens,
                         "ppl_torch": ref.perplexity, "ppl_cuda": got.perplexity, "rel_ppl": rel_ppl,
                         "rel_logits": diff.item(), "argmax": agree, "tol": tol,
                         "sec_torch": ref.seconds, "sec_cuda": got.seconds, "ok": rel_ppl <= tol})
    return rows
