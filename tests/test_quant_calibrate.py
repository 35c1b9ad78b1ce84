"""The calibration pass runs the model a layer at a time: every observer must see exactly what hooks on
a whole-model forward see, and the pass must stop after the last layer anything observes."""

from __future__ import annotations

import copy

import pytest
import torch

from mq_deploy.models import MambaConfig, MambaLM
from mq_deploy.models.init import init_mamba_weights
from mq_deploy.quant.calibrate import collect_statistics
from mq_deploy.quant.observers import OBSERVERS

POINTS = {"backbone.layers.0.mixer.in_proj_input": ["covariance", "channel_absmax"],
          "backbone.layers.1.mixer.dt_proj_input": ["channel_absmax"],
          "backbone.layers.2.mixer.out_proj_input": ["histogram"],
          "lm_head_input": ["histogram", "channel_absmax"]}


@pytest.fixture(scope="module")
def model_and_batches():
    config = MambaConfig(vocab_size=128, hidden_size=32, state_size=8, num_hidden_layers=3, intermediate_size=64,
                         time_step_rank=4)
    model = init_mamba_weights(MambaLM(config), seed=3).double().eval()
    return model, torch.randint(0, 128, (5, 24), generator=torch.Generator().manual_seed(1))


def observers_for(points):
    return {p: [OBSERVERS[n](p) for n in names] for p, names in points.items()}


def state_of(observer) -> list[torch.Tensor]:
    return [v.clone() for v in vars(observer).values() if isinstance(v, torch.Tensor)]


def whole_model_reference(model, batches, points, batch_size):
    """Hooks on the plain `model(chunk)` forward, chunk after chunk."""
    observers = observers_for(points)

    def feed(module, args, out, obs):
        for o in obs:
            o.update(out)
    handles = [model.get_submodule(p).register_forward_hook(lambda m, a, out, obs=obs: feed(m, a, out, obs))
               for p, obs in observers.items()]
    with torch.no_grad():
        for chunk in batches.split(batch_size):
            model(chunk)
    for h in handles:
        h.remove()
    return observers


def test_layer_at_a_time_statistics_equal_the_whole_model_forward(model_and_batches):
    model, batches = model_and_batches
    got = collect_statistics(model, batches, observers_for(POINTS), batch_size=2, progress=False)
    want = whole_model_reference(model, batches, POINTS, batch_size=2)
    for point in POINTS:
        for mine, ref in zip(got[point], want[point]):
            assert mine.count == ref.count
            mine_state, ref_state = state_of(mine), state_of(ref)
            assert mine_state and len(mine_state) == len(ref_state)
            for a, b in zip(mine_state, ref_state):
                torch.testing.assert_close(a, b, rtol=0, atol=0)   # same operations in the same order


def test_the_pass_stops_after_the_last_observed_layer(model_and_batches):
    model, batches = model_and_batches
    calls = {name: 0 for name in ("backbone.layers.1", "backbone.layers.2", "lm_head")}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, a, out, n=n: calls.__setitem__(n, calls[n] + 1)) for n in calls]
    try:
        collect_statistics(model, batches, observers_for({"backbone.layers.1.mixer.in_proj_input": ["covariance"]}),
                           batch_size=2, progress=False)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"backbone.layers.1": 3, "backbone.layers.2": 0, "lm_head": 0}


def test_a_forward_dtype_runs_each_layer_as_the_converted_model_would(model_and_batches):
    """dtype=float32 on a float64 model: each layer is converted as it runs; its observers see what a
    whole float32 copy of the model shows them (the model itself is left in float64)."""
    model, batches = model_and_batches
    layer_points = {p: names for p, names in POINTS.items() if p.startswith("backbone.layers.")}
    got = collect_statistics(model, batches, observers_for(layer_points), batch_size=2, progress=False,
                             dtype=torch.float32)
    want = whole_model_reference(copy.deepcopy(model).float(), batches, layer_points, batch_size=2)
    for point in layer_points:
        for mine, ref in zip(got[point], want[point]):
            for a, b in zip(state_of(mine), state_of(ref)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert next(model.parameters()).dtype == torch.float64
