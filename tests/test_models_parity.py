"""Our canonical MambaLM is the same function as transformers' MambaForCausalLM (the independent
implementation), for awkward shapes, and its recurrent state continues a sequence exactly."""

from __future__ import annotations

import pytest
import torch

from conftest import assert_every_point_matters
from mq_deploy.models import MambaConfig, MambaLM

CONFIGS = [  # (hidden, layers, state, dt_rank, vocab): d_model not a power of two, dt_rank not dividing it
    dict(hidden=40, layers=2, state=8, rank=7, vocab=97),
    dict(hidden=24, layers=3, state=16, rank=None, vocab=50),
    dict(hidden=64, layers=1, state=4, rank=3, vocab=256, use_conv_bias=False, use_bias=True),
]


def ours_from(hf) -> MambaLM:
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict(), strict=True)
    return model


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("shape", [(2, 1), (1, 257), (3, 17)])
def test_logits_match_transformers(hf_mamba_factory, cfg, shape):
    hf = hf_mamba_factory(**cfg)
    ours = ours_from(hf)
    ids = torch.randint(0, cfg["vocab"], shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
        for impl in ("fused", "sequential", "chunked"):
            ours.set_scan_impl(impl)
            assert rel_err(ours(ids), expected) < 1e-5, impl


def test_prefill_then_decode_reproduces_full_forward(hf_mamba_factory):
    hf = hf_mamba_factory(**CONFIGS[0])
    ours = ours_from(hf).double()
    ids = torch.randint(0, 97, (2, 23), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = ours(ids)
        logits, state = ours(ids[:, :10], return_state=True)
        steps = [logits]
        for t in range(10, 23):
            logits, state = ours(ids[:, t:t + 1], state, return_state=True)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-10, atol=1e-10)


def test_half_precision_model_tracks_float32(hf_mamba_factory):
    hf = hf_mamba_factory(**CONFIGS[0])
    ours = ours_from(hf)
    ids = torch.randint(0, 97, (2, 33), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = ours(ids)
        half = ours.to(torch.bfloat16)(ids)
    assert half.dtype == torch.float32
    assert rel_err(half, ref) < 5e-2       # bf16 weights and activations: 8 mantissa bits
    assert (half.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_activation_points_see_every_quantization_site(hf_mamba_factory):
    """Each named point is on the data path: replacing it changes the output."""
    hf = hf_mamba_factory(**CONFIGS[0])
    ours = ours_from(hf)
    ids = torch.randint(0, 97, (1, 9))
    points = [n for n, m in ours.named_modules() if type(m).__name__ == "ActivationPoint"]
    assert len(points) == 2 * 10 + 1
    assert_every_point_matters(ours, ids, points)


def test_every_linear_runs_as_its_module(hf_mamba_factory):
    """Module-swapping quantizers (ModelOpt, torchao) replace nn.Linear modules and quantize only what
    runs through them: every linear of the model, dt_proj included, must be called as its module, and
    swapping one for a module that changes its output must change the logits."""
    hf = hf_mamba_factory(**CONFIGS[0])
    ours = ours_from(hf)
    linears = {name for name, m in ours.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {"backbone.layers.0.mixer.dt_proj", "backbone.layers.1.mixer.x_proj", "lm_head"} <= linears
    called = set()
    handles = [ours.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: called.add(name))
               for name in linears]
    ids = torch.randint(0, CONFIGS[0]["vocab"], (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = ours(ids)
    for h in handles:
        h.remove()
    assert called == linears

    class Doubled(torch.nn.Linear):           # what a swapped-in quantized linear would be, exaggerated
        def forward(self, x):
            return 2 * super().forward(x)

    dt_proj = ours.backbone.layers[0].mixer.dt_proj
    swapped = Doubled(dt_proj.in_features, dt_proj.out_features)
    swapped.load_state_dict(dt_proj.state_dict())
    ours.backbone.layers[0].mixer.dt_proj = swapped
    with torch.no_grad():
        assert rel_err(ours(ids), before) > 1e-5     # random init: dt moves the logits a little, but not 0
