"""Where the bundled demo model and data live (samples/ in the source tree)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import MQDeployError

DEMO_MODEL = "mamba-byte-demo"
DEMO_MODELS = {"mamba": DEMO_MODEL, "mamba2": "mamba2-byte-demo"}     # the language-model demos, by family
COMPARISON_MODEL = "mamba-byte-8m"    # the larger Mamba-1 the recipe comparisons also run on (docs/comparison_model.md)
# larger models with outliers, by family (the vision one: a Vim-T-wide model on 5,000 MNIST digits)
COMPARISON_MODELS = {"mamba": COMPARISON_MODEL, "mamba2": "mamba2-byte-8m", "vim": "vim-mnist-comparison"}
HELDOUT_TEXT = "wiki_heldout.txt"
CALIB_TEXT = "wiki_calib.txt"


def samples_dir() -> Path:
    """$MQ_DEPLOY_SAMPLES, else samples/ beside the package (a source checkout / editable install)."""
    candidates = [Path(os.environ["MQ_DEPLOY_SAMPLES"])] if os.environ.get("MQ_DEPLOY_SAMPLES") else []
    candidates.append(Path(__file__).resolve().parent.parent / "samples")
    for path in candidates:
        if (path / "models" / DEMO_MODEL).is_dir():
            return path
    raise MQDeployError("the bundled samples (demo model and data) were not found; install from a source "
                        "checkout with `pip install -e .`, or set MQ_DEPLOY_SAMPLES to the samples/ directory")


def demo_model_dir(family: str = "mamba") -> Path:
    return samples_dir() / "models" / DEMO_MODELS[family]


def comparison_model_dir(family: str = "mamba") -> Path:
    return samples_dir() / "models" / COMPARISON_MODELS[family]


def sample_text(name: str) -> Path:
    return samples_dir() / "data" / name


def sample_data(name: str) -> Path:
    """A bundled data file (samples/data/<name>)."""
    return samples_dir() / "data" / name
