"""Shared fixtures: random tiny Mamba models built by transformers (the independent oracle)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch


def load_module(name: str, path):
    """Import a script that is not part of the package (plugins/, scripts/) by its path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

def random_hf_mamba(vocab=97, hidden=40, layers=2, state=8, rank=None, seed=0, **kwargs):
    """transformers.MambaForCausalLM with every parameter randomized (norm weights, D, A_log and the
    dt bias too, so no identity shortcut hides a bug)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.MambaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                      state_size=state, time_step_rank=rank or "auto", **kwargs)
    model = transformers.MambaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith(".D"):
                p.normal_()
            elif name.endswith("A_log"):
                p.uniform_(-1.0, 2.5)
            elif name.endswith("dt_proj.bias"):
                p.uniform_(-4.0, 0.0)
            elif "embeddings" in name:
                p.normal_(std=0.5)
    return model


def random_mamba_lm(seed=0, **sizes):
    """Our MambaLM holding the weights of random_hf_mamba(**sizes, seed=seed), in eval mode."""
    from mq_deploy.models import MambaConfig, MambaLM
    hf = random_hf_mamba(seed=seed, **sizes)
    model = MambaLM(MambaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    return model


def token_windows(seed, *shapes, vocab=256):
    """Seeded random token ids, one tensor per shape."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, vocab, shape, generator=g) for shape in shapes)


@pytest.fixture
def hf_mamba_factory():
    return random_hf_mamba


@pytest.fixture(scope="session")
def demo_model_dir():
    from mq_deploy.samples import demo_model_dir as find
    return find()
