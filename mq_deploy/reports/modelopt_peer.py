"""NVIDIA TensorRT Model Optimizer (ModelOpt) as a peer in compare-recipes: its INT8 SmoothQuant,
INT4 AWQ and W4A8 AWQ configs run on our canonical model (every linear is called as its module, so
ModelOpt's module swap reaches all of them), calibrated on the same windows and evaluated the same
way. Optional: `pip install 'mq-deploy[modelopt]'`; without it compare-recipes has no peer rows.

The quantized set is kept equal to our deploy mode's: ModelOpt's defaults already leave the head
and the depthwise conv in floating point; at 4 bits dt_proj stays FP too (its K = dt_rank takes no
INT4 block, docs/quantization.md), and INT4 blocks are 128 along K, or 64 where some K only takes 64,
the same rule as DEPLOY_INT4_BLOCKS."""

from __future__ import annotations

import contextlib
import copy
import io
import time
import warnings

import torch

from ..quant.config import DEPLOY_INT4_BLOCKS

# peer name -> (our bit label, ModelOpt config attribute)
PEERS = {
    "modelopt-int8-smoothquant": ("W8A8", "INT8_SMOOTHQUANT_CFG"),
    "modelopt-int4-awq": ("W4A16", "INT4_AWQ_CFG"),
    "modelopt-w4a8-awq": ("W4A8", "W4A8_AWQ_BETA_CFG"),      # FP8 (E4M3) activations: ModelOpt's W4A8
}


def modelopt_unavailable() -> str | None:
    """Why the ModelOpt peers cannot run here (not installed, or installed without a module it
    imports: nvidia-modelopt 0.47 imports requests without requiring it), or None."""
    import importlib.util
    if importlib.util.find_spec("modelopt") is None:
        return "nvidia-modelopt is not installed: pip install 'mq-deploy[modelopt]'"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import modelopt.torch.quantization  # noqa: F401
    except ImportError as e:
        top = (e.name or "").split(".")[0]
        if top and top != "modelopt":       # a dependency it did not declare
            return (f"nvidia-modelopt is installed but cannot import {top}: pip install {top} (or pip install "
                    "'mq-deploy[modelopt]', which lists it)")
        return f"nvidia-modelopt is installed but does not import ({e}); reinstall it: pip install -U nvidia-modelopt"
    except Exception as e:  # noqa: BLE001 - a compiled extension or a version clash fails in many ways
        return (f"nvidia-modelopt is installed but does not import ({type(e).__name__}: {e}); reinstall it: "
                "pip install -U nvidia-modelopt")
    return None



def _int4_linears(model) -> dict[str, int]:
    """{name: K} of the linears a 4-bit deploy config may quantize (not the head, not dt_proj)."""
    return {name: m.in_features for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and name != "lm_head" and not name.endswith("dt_proj")}


def _int4_block(model) -> int:
    """One block size for the whole config (ModelOpt's is global): 128 where every K takes it, else 64."""
    ks = set(_int4_linears(model).values())
    return next((b for b in DEPLOY_INT4_BLOCKS if all(k % b == 0 for k in ks)), min(DEPLOY_INT4_BLOCKS))


def peer_config(name: str, model) -> dict:
    """The ModelOpt config of a peer, with the block size and the FP linears of our deploy mode."""
    import modelopt.torch.quantization as mtq
    bits, attribute = PEERS[name]
    config = copy.deepcopy(getattr(mtq, attribute))
    if bits.startswith("W4"):
        block = _int4_block(model)
        for entry in config["quant_cfg"]:
            cfgs = entry.get("cfg")
            for cfg in (cfgs if isinstance(cfgs, list) else [cfgs]):
                if isinstance(cfg, dict) and "block_sizes" in cfg:
                    cfg["block_sizes"] = {**cfg["block_sizes"], -1: block}
        config["quant_cfg"].append({"quantizer_name": "*dt_proj*", "enable": False})
        for name, k in _int4_linears(model).items():         # a K that takes no block stays FP, as ours
            if k % block:
                config["quant_cfg"].append({"quantizer_name": f"{name}.*", "enable": False})
    return config


def modelopt_quantize(model, name: str, calib: torch.Tensor, batch_size: int = 8):
    """(a ModelOpt fake-quant copy of `model`, seconds) calibrated on `calib` [n, L] token ids."""
    import modelopt.torch.quantization as mtq
    work = copy.deepcopy(model).float().eval()
    config = peer_config(name, work)

    def forward_loop(m):
        with torch.no_grad():
            for chunk in calib.split(batch_size):
                m(chunk)

    start = time.perf_counter()
    # ModelOpt prints its bookkeeping ("Inserted 36 quantizers") to stdout, where compare-recipes'
    # table (or --json -) goes: kept out of it
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        work = mtq.quantize(work, config, forward_loop=forward_loop)
    return work, time.perf_counter() - start
