"""Vision Mamba (models/vim.py, models/vim_loading.py) against an independent float64 composition of
the official forward, written here from hustvl/Vim's models_mamba.py and mamba_simple.py: the
bimamba-v2 mixer runs its backward branch on time-flipped xz and flips the result back, and each
branch is mamba_ssm's `selective_scan_ref` math; random weights in the official key layout, saved
the way the official checkpoints are ({"model": state_dict, "args": Namespace}). Then the loader's
one-line errors."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from mq_deploy.errors import MQDeployError
from mq_deploy.models.vim_loading import load_vim, save_vim

VIM_T = dict(d=192, depth=24)
VIM_S = dict(d=384, depth=24)


def official_state(d: int, depth: int, seed: int = 0, classes: int = 1000, patch: int = 16, grid: int = 14,
                   d_state: int = 16, kernel: int = 4) -> dict[str, torch.Tensor]:
    """Random weights with the official names and shapes (the released models' settings: expand 2,
    dt_rank ceil(d/16), conv bias, no in/out_proj bias), initialized the way Mamba initializes them."""
    g = torch.Generator().manual_seed(seed)
    d_inner, rank = 2 * d, math.ceil(d / 16)

    def uniform(*shape, bound):
        return (torch.rand(*shape, generator=g) * 2 - 1) * bound

    state = {"patch_embed.proj.weight": uniform(d, 3, patch, patch, bound=1 / math.sqrt(3 * patch * patch)),
             "patch_embed.proj.bias": uniform(d, bound=0.02),
             "cls_token": torch.randn(1, 1, d, generator=g) * 0.02,
             "pos_embed": torch.randn(1, grid * grid + 1, d, generator=g) * 0.02,
             "norm_f.weight": 1 + 0.1 * torch.randn(d, generator=g),
             "head.weight": torch.randn(classes, d, generator=g) * 0.02, "head.bias": torch.randn(classes, generator=g) * 0.01}
    for i in range(depth):
        m = f"layers.{i}.mixer."
        state[f"layers.{i}.norm.weight"] = 1 + 0.1 * torch.randn(d, generator=g)
        state[m + "in_proj.weight"] = uniform(2 * d_inner, d, bound=1 / math.sqrt(d))
        state[m + "out_proj.weight"] = uniform(d, d_inner, bound=1 / math.sqrt(d_inner)) / math.sqrt(depth)
        for b in ("", "_b"):
            state[m + f"conv1d{b}.weight"] = uniform(d_inner, 1, kernel, bound=1 / math.sqrt(kernel))
            state[m + f"conv1d{b}.bias"] = uniform(d_inner, bound=1 / math.sqrt(kernel))
            state[m + f"x_proj{b}.weight"] = uniform(rank + 2 * d_state, d_inner, bound=1 / math.sqrt(d_inner))
            state[m + f"dt_proj{b}.weight"] = uniform(d_inner, rank, bound=rank ** -0.5)
            dt = torch.exp(torch.rand(d_inner, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            state[m + f"dt_proj{b}.bias"] = dt + torch.log(-torch.expm1(-dt))
            state[m + ("A_log" if not b else "A_b_log")] = torch.log(torch.arange(1, d_state + 1.0)).repeat(d_inner, 1) \
                + 0.1 * torch.randn(d_inner, d_state, generator=g)
            state[m + f"D{b}"] = 1 + 0.1 * torch.randn(d_inner, generator=g)
    return state


def save_official(state, path):
    torch.save({"model": state, "epoch": 299, "args": argparse.Namespace(model="vim_tiny", lr=5e-4)}, path)
    return path


# ---- the reference: the official forward, float64, written out ----------------------------------

def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def selective_scan_ref(u, delta, A, B, C, D, z, delta_bias):
    """mamba_ssm's selective_scan_ref, channel-major: u, delta, z [b, d, L]; A [d, n]; B, C [b, n, L]."""
    delta = F.softplus(delta + delta_bias[..., None])
    x = u.new_zeros(u.shape[0], A.shape[0], A.shape[1])
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    ys = []
    for i in range(u.shape[2]):
        x = delta_a[:, :, i] * x + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2) + u * D[:, None]
    return y * F.silu(z)


def inner_path(xz, p, b, rank, n):
    """mamba_inner_fn_no_out_proj: xz [b, 2·d_inner, L] -> gated scan output [b, d_inner, L]."""
    x, z = xz.chunk(2, dim=1)
    conv = p[f"conv1d{b}.weight"]
    x = F.silu(F.conv1d(x, conv, p[f"conv1d{b}.bias"], padding=conv.shape[-1] - 1, groups=x.shape[1])[..., :x.shape[2]])
    x_dbl = torch.einsum("bdl,kd->bkl", x, p[f"x_proj{b}.weight"])
    dt, B, C = torch.split(x_dbl, [rank, n, n], dim=1)
    delta = torch.einsum("bkl,dk->bdl", dt, p[f"dt_proj{b}.weight"])
    A = -torch.exp(p["A_log" if not b else "A_b_log"])
    return selective_scan_ref(x, delta, A, B, C, p[f"D{b}"], z, p[f"dt_proj{b}.bias"])


def official_forward(state, images, backward=True, stride=16):
    s = {k: v.double() for k, v in state.items()}
    d = s["cls_token"].shape[-1]
    rank, n = s["layers.0.mixer.dt_proj.weight"].shape[1], s["layers.0.mixer.A_log"].shape[1]
    x = F.conv2d(images.double(), s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=stride)
    x = x.flatten(2).transpose(1, 2)
    m = x.shape[1] // 2
    x = torch.cat((x[:, :m], s["cls_token"].expand(x.shape[0], -1, -1), x[:, m:]), dim=1) + s["pos_embed"]
    depth = len({k.split(".")[1] for k in s if k.startswith("layers.")})
    residual, hidden = None, x
    for i in range(depth):          # Block: Add -> Norm -> Mixer
        residual = hidden if residual is None else residual + hidden
        h = rms_norm(residual, s[f"layers.{i}.norm.weight"])
        p = {k[len(f"layers.{i}.mixer."):]: v for k, v in s.items() if k.startswith(f"layers.{i}.mixer.")}
        xz = torch.einsum("bld,ed->bel", h, p["in_proj.weight"])
        out = inner_path(xz, p, "", rank, n)
        if backward:
            out = (out + inner_path(xz.flip([-1]), p, "_b", rank, n).flip([-1])) / 2
        hidden = torch.einsum("bdl,ed->ble", out, p["out_proj.weight"])
    hidden = rms_norm(residual + hidden, s["norm_f.weight"])
    return hidden[:, m] @ s["head.weight"].T + s["head.bias"]


def rel(a, b):
    return ((a.double() - b).norm() / b.norm()).item()


@pytest.mark.parametrize("sizes", [VIM_T, VIM_S], ids=["vim-t", "vim-s"])
def test_parity_with_the_official_forward_in_float64(sizes, tmp_path):
    state = official_state(**sizes, seed=1)
    loaded = load_vim(save_official(state, tmp_path / "vim_midclstok.pth"))
    assert loaded.source_format == "official"
    cfg = loaded.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.img_size, cfg.stride, cfg.num_patches, cfg.token_position) == \
        (sizes["d"], 24, 224, 16, 196, 98)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    reference = official_forward(state, images)
    with torch.no_grad():
        ours = loaded.model(images)
    assert ours.dtype == torch.float32 and ours.shape == (2, 1000)
    assert rel(ours, reference) <= 1e-5
    # the trap: the official CPU fallback drops the backward branch; it changes the answer by far more
    assert rel(official_forward(state, images, backward=False), reference) > 1e-2


def test_stride8_variant_and_our_directory_round_trip(tmp_path):
    state = official_state(d=64, depth=2, grid=27, classes=10, seed=3)    # 27² patches: 224 px at stride 8
    loaded = load_vim(save_official(state, tmp_path / "vim_t_midclstok_ft.pth"))
    assert (loaded.config.img_size, loaded.config.stride, loaded.config.token_position) == (224, 8, 364)
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = loaded.model(images)
    assert rel(ours, official_forward(state, images, stride=8)) <= 1e-5
    saved = save_vim(loaded.model, tmp_path / "ours")
    again = load_vim(saved)
    assert again.source_format == "mq-deploy" and again.config == loaded.config
    with torch.no_grad():
        assert torch.equal(again.model(images), ours)


def test_a_backward_path_is_a_reversed_scan_not_a_copy_of_the_forward(tmp_path):
    """Swapping the two directions' parameters changes the output (each direction reads its own)."""
    state = official_state(d=64, depth=2, classes=10, seed=5)
    swapped = dict(state)
    for key in list(state):
        if "_b" in key or key.endswith("A_b_log"):
            forward_key = key.replace("_b.", ".").replace("A_b_log", "A_log").replace("D_b", "D")
            swapped[key], swapped[forward_key] = state[forward_key], state[key]
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        a = load_vim(save_official(state, tmp_path / "a.pth")).model(images)
        b = load_vim(save_official(swapped, tmp_path / "b.pth")).model(images)
    assert rel(b, official_forward(swapped, images)) <= 1e-5
    assert rel(a, b.double()) > 1e-3


def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("break_it, message", [
    (lambda s, p: save_official(s, p) and _cut(p), "truncated, corrupt"),
    (lambda s, p: save_official({k.replace("layers.1.mixer.x_proj_b", "layers.1.mixer.xproj_b"): v
                                 for k, v in s.items()}, p), "missing tensors: backbone.layers.1.mixer.x_proj_b.weight"),
    (lambda s, p: save_official({**s, "layers.0.mixer.D": torch.ones(7)}, p), "shape mismatches"),
    (lambda s, p: save_official({**s, "layers.0.mixer.D": s["layers.0.mixer.D"] * float("nan")}, p), "NaN/inf"),
    (lambda s, p: save_official({k: v for k, v in s.items() if "_b" not in k}, p), "unidirectional mixers"),
    (lambda s, p: save_official({k: v for k, v in s.items() if not k.startswith("patch_embed")}, p),
     "no patch_embed.proj.weight"),
    (lambda s, p: save_official({**s, "pos_embed": s["pos_embed"][:, :100]}, p), "not a square grid"),
    (lambda s, p: torch.save({"model": {"a": 1}}, p), "no state_dict of tensors"),
], ids=["truncated", "mis-keyed", "wrong-shape", "nan", "unidirectional", "no-patch-embed", "pos-embed", "not-tensors"])
def test_bad_checkpoints_get_one_line(break_it, message, tmp_path):
    path = tmp_path / "vim.pth"
    break_it(official_state(d=64, depth=2, classes=10), path)
    with pytest.raises(MQDeployError, match=message) as err:
        load_vim(path)
    assert "\n" not in str(err.value)


def test_missing_file_and_wrong_image_size(tmp_path):
    with pytest.raises(MQDeployError, match="does not exist"):
        load_vim(tmp_path / "nope.pth")
    loaded = load_vim(save_official(official_state(d=64, depth=1, classes=10), tmp_path / "v.pth"))
    with pytest.raises(ValueError, match=r"images must be \[batch, 3, 224, 224\]"):
        loaded.model(torch.zeros(1, 3, 256, 256))


def test_the_language_model_loader_names_a_vim_directory(tmp_path):
    from mq_deploy.models.loading import load_model
    loaded = load_vim(save_official(official_state(d=64, depth=1, classes=10), tmp_path / "v.pth"))
    with pytest.raises(MQDeployError, match="is a Vision Mamba"):
        load_model(save_vim(loaded.model, tmp_path / "ours"))
