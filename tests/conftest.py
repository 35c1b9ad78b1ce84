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

class ScaleBy(torch.nn.Module):
    """x -> x * factor: put at an activation point, it must change the model's output."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def assert_every_point_matters(model, ids, points):
    """Scaling the activation at each of `points` (module names) by 1.5 changes the logits: every point
    sits on the data path (a point off it would let a quantizer there do nothing)."""
    with torch.no_grad():
        ref = model(ids)
    for name in points:
        parent, attr = name.rsplit(".", 1) if "." in name else ("", name)
        owner = model.get_submodule(parent) if parent else model
        original = getattr(owner, attr)
        setattr(owner, attr, ScaleBy(1.5))
        with torch.no_grad():
            changed = model(ids)
        setattr(owner, attr, original)
        assert not torch.allclose(changed, ref), name


def random_hf_mamba(vocab=97, hidden=40, layers=2, state=8, rank=None, seed=0, **kwargs):
    """transformers.MambaForCausalLM with every parameter randomized (norm weights, D, A_log and the
    dt bias too, so no identity shortcut hides a bug)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.MambaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                      state_size=state, time_step_rank=rank or "auto", **kwargs)
    return randomize_parameters(transformers.MambaForCausalLM(config).eval(), a_log=(-1.0, 2.5),
                                dt_bias=("dt_proj.bias", (-4.0, 0.0)))


@torch.no_grad()
def randomize_parameters(model, a_log, dt_bias, other_bias_std=None):
    """Every parameter of a transformers Mamba model away from its init identities: norm weights in
    0.5..1.5, D normal, A_log and the dt bias (name suffix, range) uniform in the given ranges, the
    embedding wide; with other_bias_std also every other bias."""
    suffix, (low, high) = dt_bias
    for name, p in model.named_parameters():
        if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
            p.uniform_(0.5, 1.5)
        elif name.endswith(".D"):
            p.normal_()
        elif name.endswith("A_log"):
            p.uniform_(*a_log)
        elif name.endswith(suffix):
            p.uniform_(low, high)
        elif other_bias_std is not None and name.endswith("bias"):
            p.normal_(std=other_bias_std)
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


def assert_export_keeps_linears_float(art, onnx_path, kept, n_int4: int, ids, ref) -> None:
    """Export a mixed-precision artifact (FP32 graph): the manifest records the kept linears, both
    graphs carry them as `float` and the rest as INT4 weight-only, and ONNX Runtime reproduces `ref`
    (the artifact's fake-quant logits on `ids`) within 1e-4."""
    import numpy as np

    from mq_deploy.deploy.manifest import read_manifest
    from mq_deploy.deploy.onnxruntime_session import onnxruntime_session
    from mq_deploy.export import export_onnx
    result = export_onnx(art, onnx_path, precision="fp32")
    manifest = read_manifest(result.onnx_path)
    assert manifest["quantization"]["config"]["keep_linears"] == list(kept)
    for graph in ("prefill", "decode"):
        forms = manifest["graphs"][graph]["linears"]
        assert {forms[n] for n in kept} == {"float"}
        assert manifest["graphs"][graph]["linear_forms"]["int4-weight-only"] == n_int4
    out = onnxruntime_session(result.onnx_path).run(["logits"], {"input_ids": ids.numpy()})[0]
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-4
