"""Quantization recipes, one small module each, all driven by `mq_deploy.quant.quantize`.

A recipe is a module with `transform(model, calib, config, progress) -> {point suffix: percentile}`:
it applies exact FP transforms to the work copy of the model (float32 storage, each fold computed
in float64; gathering any statistics it needs on the untransformed model first) and may ask for
percentile-clipped activation ranges at some points. A recipe that can also offer
`replays(model, calib, points, config)` and `transform(..., observe={point: [observers]})` feeds the static
range observers from its own statistics pass, which saves quantize() a second pass (mambaquant).
A recipe whose transforms draw random numbers from `config.seed` (random Hadamard signs) says so
with `RANDOM_SIGNS = True`: it is a different model per seed, and compare-recipes runs it at several.
"""

from __future__ import annotations

from importlib import import_module

from ...errors import MQDeployError

RECIPES = ("rtn", "smoothquant", "quarot", "quamba", "mambaquant")


def get_recipe(name: str):
    if name not in RECIPES:
        raise MQDeployError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return import_module(f"{__name__}.{name}")


def uses_seed(name: str) -> bool:
    """Whether the recipe's result depends on QuantConfig.seed."""
    return getattr(get_recipe(name), "RANDOM_SIGNS", False)
