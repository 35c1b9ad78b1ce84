"""Canonical models and checkpoint loading."""

from .config import MambaConfig
from .mamba import MIXER_POINTS, ActivationPoint, MambaLM, MambaState

__all__ = ["MambaConfig", "MambaLM", "MambaState", "ActivationPoint", "MIXER_POINTS"]
