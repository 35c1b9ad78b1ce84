"""Statistics helpers shared by the recipes."""

from __future__ import annotations

from ..calibrate import collect_statistics
from ..observers import OBSERVERS


def gather(model, calib, config, requests: dict[str, list[str]], progress=True, desc="FP statistics"):
    """{point: {observer name: observer}} after one calibration pass over the (untransformed) model.
    requests: {point name: [observer names]}."""
    observers = {p: [OBSERVERS[n](p) for n in names] for p, names in requests.items()}
    collect_statistics(model, calib, observers, batch_size=config.batch_size, progress=progress, desc=desc,
                       dtype=config.forward_dtype)
    return {p: {o.name: o for o in obs} for p, obs in observers.items()}


def mixer_point(i: int, point: str) -> str:
    return f"backbone.layers.{i}.mixer.{point}"
