"""Mamba-2: our canonical Mamba2LM is the same function as transformers' Mamba2ForCausalLM (the
independent implementation) loaded from the directories it writes, at awkward shapes; the chunked
SSD scan equals the sequential reference, which equals a loop written here; the recurrent state
continues a sequence exactly; mamba_ssm-format directories load to the same logits; bad checkpoints
give one clear error line."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from mq_deploy.errors import MQDeployError
from mq_deploy.models.mamba2 import MIXER_POINTS, Mamba2Config, Mamba2LM
from mq_deploy.models.mamba2_loading import load_mamba2, save_mamba2
from conftest import assert_every_point_matters, randomize_parameters
from mq_deploy.ops.ssd_scan import ssd_scan, ssd_scan_chunked, ssd_scan_ref

transformers = pytest.importorskip("transformers")

# transformers' chunk_size is small so its chunked torch path runs several chunks, none of the
# sequence lengths below a multiple of it; several heads per group everywhere
CONFIGS = {
    "g1-n64": dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_heads=8, head_dim=8, n_groups=1,
                   state_size=64, chunk_size=16),
    "g2-n128": dict(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_heads=6, head_dim=8, n_groups=2,
                    state_size=128, chunk_size=16),
    # expand 1, 3 groups of 4 heads, in/out_proj bias, kernel 3, tied head, a dt limit that bites
    "g3-bias-limit": dict(vocab_size=61, hidden_size=48, num_hidden_layers=1, num_heads=12, head_dim=4, expand=1,
                          n_groups=3, state_size=64, chunk_size=8, conv_kernel=3, use_bias=True,
                          tie_word_embeddings=True, time_step_limit=(0.02, 0.6)),
}
SHAPES = [(2, 1), (1, 70), (3, 37)]       # 70 > our CPU chunk (64) and not a multiple of any chunk


def random_hf_mamba2(seed=0, **kwargs):
    """transformers.Mamba2ForCausalLM with every parameter randomized (norms, gated norm, D, A_log,
    dt_bias, conv bias too, so no identity shortcut hides a bug)."""
    torch.manual_seed(seed)
    kwargs = {"expand": 2, "use_conv_bias": True, **kwargs}
    return randomize_parameters(transformers.Mamba2ForCausalLM(transformers.Mamba2Config(**kwargs)).eval(),
                                a_log=(-1.0, 2.0), dt_bias=("dt_bias", (-3.0, 1.0)), other_bias_std=0.3)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """{config name: (transformers model, the directory its save_pretrained wrote)}."""
    out = {}
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        hf = random_hf_mamba2(seed=i, **cfg)
        directory = tmp_path_factory.mktemp(name)
        hf.save_pretrained(directory)
        out[name] = (hf, directory)
    return out


def ids_for(vocab, shape, seed=1):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(hf_models, name):
    hf, directory = hf_models[name]
    loaded = load_mamba2(directory)
    assert loaded.source_format == "hf" and isinstance(loaded.model, Mamba2LM)
    ours = loaded.model
    worst = 0.0
    for shape in SHAPES:
        ids = ids_for(hf.config.vocab_size, shape)
        with torch.no_grad():
            expected = hf(ids).logits
            for impl, chunk in (("chunked", 64), ("chunked", 7), ("sequential", 64)):
                ours.set_scan_impl(impl)
                for layer in ours.backbone.layers:
                    layer.mixer.scan_chunk_size = chunk
                err = rel_err(ours(ids), expected)
                worst = max(worst, err)
                assert err < 1e-5, (shape, impl, chunk, err)
    print(f"\n{name}: max relative logit error vs transformers {worst:.2e}")


def test_tied_head_and_config_round_trip(hf_models):
    loaded = load_mamba2(hf_models["g3-bias-limit"][1])
    assert loaded.model.lm_head.weight is loaded.model.backbone.embeddings.weight
    assert loaded.config.time_step_limit == (0.02, 0.6) and loaded.config.n_groups == 3
    loaded = load_mamba2(hf_models["g1-n64"][1])
    assert loaded.config.time_step_limit == (0.0, math.inf)      # transformers 5's {"__float__": "Infinity"}
    assert loaded.model.backbone.layers[0].mixer.dt_limit is None
    assert not loaded.config.tie_word_embeddings


@pytest.mark.parametrize("name", ["g2-n128", "g3-bias-limit"])
def test_prefill_then_decode_reproduces_full_forward(hf_models, name):
    ours = load_mamba2(hf_models[name][1], dtype=torch.float64).model
    for layer in ours.backbone.layers:
        layer.mixer.scan_chunk_size = 8              # the prefill runs several chunks
    ids = ids_for(ours.config.vocab_size, (2, 29), seed=2)
    with torch.no_grad():
        full = ours(ids)
        logits, state = ours(ids[:, :19], return_state=True)
        steps = [logits]
        for t in range(19, 25):
            logits, state = ours(ids[:, t:t + 1], state, return_state=True)
            steps.append(logits)
        logits, state = ours(ids[:, 25:], state, return_state=True)      # a multi-token continuation
        steps.append(logits)
    assert state.ssm[0].shape == (2, ours.config.num_heads, ours.config.head_dim, ours.config.state_size)
    assert state.conv[0].shape == (2, ours.config.conv_dim, ours.config.conv_kernel - 1)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-10, atol=1e-10)


def test_half_precision_model_tracks_float32(hf_models):
    ours = load_mamba2(hf_models["g1-n64"][1]).model
    ids = ids_for(97, (2, 33), seed=3)
    with torch.no_grad():
        ref = ours(ids)
        half = ours.to(torch.bfloat16)(ids)
    assert half.dtype == torch.float32
    assert rel_err(half, ref) < 5e-2
    assert (half.argmax(-1) == ref.argmax(-1)).float().mean() > 0.9


def test_activation_points_in_data_flow_order_and_on_the_path(hf_models):
    ours = load_mamba2(hf_models["g2-n128"][1]).model
    ids = ids_for(50, (1, 9))
    mixer = ours.backbone.layers[0].mixer
    order = []
    handles = [getattr(mixer, p).register_forward_hook(lambda m, i, o, p=p: order.append(p)) for p in MIXER_POINTS]
    with torch.no_grad():
        ref = ours(ids)
    for h in handles:
        h.remove()
    assert order == list(MIXER_POINTS)
    points = [n for n, m in ours.named_modules() if type(m).__name__ == "ActivationPoint"]
    assert len(points) == 2 * len(MIXER_POINTS) + 1
    assert_every_point_matters(ours, ids, points)
    # the gate is z * sigmoid(gate_scale * z): 1 is SiLU (to rounding), anything else changes the output
    mixer.gate_scale = torch.ones(ours.config.intermediate_size)
    with torch.no_grad():
        assert rel_err(ours(ids), ref) < 1e-6
        mixer.gate_scale = torch.full((ours.config.intermediate_size,), 1.3)
        assert not torch.allclose(ours(ids), ref)


def test_check_inputs(hf_models):
    ours = load_mamba2(hf_models["g2-n128"][1]).model
    ours.check_inputs(torch.tensor([[0, 49]]))
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        ours.check_inputs(torch.tensor([[0, 50]]))
    with pytest.raises(ValueError, match="non-empty"):
        ours.check_inputs(torch.zeros(3))


# -------------------------------------------------------------------------------------- scan

def independent_scan(x, dt, A, B, C, D, dt_bias, limit, h0):
    """The recurrence one batch row, head and token at a time, straight from the definition."""
    batch, length, heads, _ = x.shape
    per_group = heads // B.shape[2]
    y = torch.zeros_like(x)
    state = h0.clone()
    for b in range(batch):
        for h in range(heads):
            g = h // per_group                                    # heads g*R .. g*R+R-1 read group g
            s = state[b, h]
            for t in range(length):
                step = math.log1p(math.exp(float(dt[b, t, h] + dt_bias[h])))
                step = min(max(step, limit[0]), limit[1])
                s = math.exp(step * float(A[h])) * s + step * torch.outer(x[b, t, h], B[b, t, g])
                y[b, t, h] = s @ C[b, t, g] + D[h] * x[b, t, h]
            state[b, h] = s
    return y, state


def scan_inputs(batch, length, heads, head_dim, groups, n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)        # noqa: E731
    return dict(x=r(batch, length, heads, head_dim), dt=r(batch, length, heads), A=-torch.rand(heads, generator=g,
                dtype=dtype) * 3, B=r(batch, length, groups, n), C=r(batch, length, groups, n), D=r(heads),
                dt_bias=r(heads), initial_state=r(batch, heads, head_dim, n))


def test_reference_scan_equals_an_independent_loop():
    for groups, limit in ((1, (0.0, math.inf)), (3, (0.1, 0.9))):
        inp = scan_inputs(2, 11, 6, 3, groups, 5)
        y, h = ssd_scan_ref(**inp, dt_softplus=True, dt_limit=limit)
        y_ind, h_ind = independent_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], inp["dt_bias"],
                                        limit, inp["initial_state"])
        torch.testing.assert_close(y, y_ind, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h, h_ind, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups, heads, length, chunk", [(1, 4, 37, 16), (2, 6, 64, 16), (3, 6, 50, 7),
                                                          (2, 4, 5, 64), (1, 2, 1, 64), (2, 8, 130, 64)])
def test_chunked_scan_equals_reference_in_float64(groups, heads, length, chunk):
    inp = scan_inputs(2, length, heads, 4, groups, 16, seed=length)
    for kwargs in (dict(dt_softplus=True), dict(dt_softplus=True, dt_limit=(0.05, 0.7)), dict(initial_state=None)):
        args = {**inp, **kwargs}
        if "dt_softplus" not in kwargs:                     # dt taken as given: make it a valid step >= 0
            args["dt"], args["dt_bias"] = F.softplus(inp["dt"]), None
        y_ref, h_ref = ssd_scan_ref(**args)
        y, h = ssd_scan_chunked(**args, chunk_size=chunk)
        scale = y_ref.abs().max()
        assert ((y - y_ref).abs().max() / scale).item() <= 1e-10
        assert ((h - h_ref).abs().max() / h_ref.abs().max()).item() <= 1e-10


def test_chunked_scan_continues_from_its_final_state_and_float32_tracks():
    inp = scan_inputs(2, 45, 6, 4, 2, 8, seed=5)
    y_all, h_all = ssd_scan_chunked(**inp, dt_softplus=True, chunk_size=16)
    first = {k: (v[:, :20] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
    rest = {k: (v[:, 20:] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
    y1, h1 = ssd_scan_chunked(**first, dt_softplus=True, chunk_size=16)
    y2, h2 = ssd_scan_chunked(**{**rest, "initial_state": h1}, dt_softplus=True, chunk_size=16)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_all, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h2, h_all, rtol=1e-12, atol=1e-12)
    f32 = {k: v.float() for k, v in inp.items()}
    y32, h32 = ssd_scan(**f32, dt_softplus=True, impl="chunked")
    assert y32.dtype == torch.float32 and h32.dtype == torch.float32
    assert rel_err(y32.double(), y_all) < 1e-5


def test_scan_rejects_bad_shapes():
    inp = scan_inputs(1, 4, 6, 2, 4, 3)                  # 6 heads, 4 groups
    with pytest.raises(ValueError, match="cannot be split among 4 groups"):
        ssd_scan(**inp)
    inp = scan_inputs(1, 4, 6, 2, 2, 3)
    with pytest.raises(ValueError, match="unknown SSD scan"):
        ssd_scan(**inp, impl="nope")
    with pytest.raises(ValueError, match="A must have shape"):
        ssd_scan(**{**inp, "A": inp["A"][:3]}, impl="sequential")


# ------------------------------------------------------------------------- mamba_ssm, saving

def write_mamba_ssm_dir(hf, directory, vocab, multiple, ssm_cfg):
    """A directory as mamba_ssm's MambaLMHeadModel.save_pretrained writes it: its config keys,
    pytorch_model.bin with its names (`backbone.embedding.`, no s; the mixer's names are transformers'
    own, which its conversion script loads unchanged); a tied head saved under both names."""
    directory.mkdir()
    cfg = hf.config
    (directory / "config.json").write_text(json.dumps({
        "d_model": cfg.hidden_size, "d_intermediate": 0, "n_layer": cfg.num_hidden_layers, "vocab_size": vocab,
        "ssm_cfg": {"layer": "Mamba2", **ssm_cfg}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True,
        "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": multiple,
        "tie_embeddings": cfg.tie_word_embeddings}))
    state = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in hf.state_dict().items()}
    assert "backbone.embedding.weight" in state and "lm_head.weight" in state
    torch.save(state, directory / "pytorch_model.bin")


def test_mamba_ssm_dirs_load_to_the_same_logits(hf_models, tmp_path):
    hf, hf_dir = hf_models["g2-n128"]
    write_mamba_ssm_dir(hf, tmp_path / "ssm", vocab=45, multiple=25,                  # 45 padded to 50
                        ssm_cfg=dict(d_state=128, d_conv=4, expand=2, headdim=8, ngroups=2, chunk_size=16))
    loaded = load_mamba2(tmp_path / "ssm")
    assert loaded.source_format == "mamba_ssm" and loaded.config.vocab_size == 50
    assert loaded.config.num_heads == 6 and loaded.config.n_groups == 2
    ids = ids_for(50, (2, 37))
    with torch.no_grad():
        expected = hf(ids).logits
        assert rel_err(loaded.model(ids), expected) < 1e-5
        assert torch.equal(loaded.model(ids), load_mamba2(hf_dir).model(ids))

    # mamba_ssm's defaults (d_state 128, d_conv 4, expand 2, headdim 64, ngroups 1), tied embeddings
    hf = random_hf_mamba2(seed=7, vocab_size=64, hidden_size=64, num_hidden_layers=1, num_heads=2, head_dim=64,
                          n_groups=1, state_size=128, chunk_size=16, tie_word_embeddings=True)
    write_mamba_ssm_dir(hf, tmp_path / "defaults", vocab=60, multiple=16, ssm_cfg={})
    loaded = load_mamba2(tmp_path / "defaults")
    assert loaded.config.tie_word_embeddings and loaded.config.vocab_size == 64
    assert loaded.model.lm_head.weight is loaded.model.backbone.embeddings.weight
    ids = ids_for(64, (1, 70))
    with torch.no_grad():
        assert rel_err(loaded.model(ids), hf(ids).logits) < 1e-5


def test_save_is_read_back_by_us_and_by_transformers(hf_models, tmp_path):
    for name in ("g1-n64", "g3-bias-limit"):
        hf, directory = hf_models[name]
        loaded = load_mamba2(directory)
        out = save_mamba2(loaded.model, tmp_path / name)
        again = load_mamba2(out)
        ids = ids_for(hf.config.vocab_size, (2, 21))
        theirs = transformers.Mamba2ForCausalLM.from_pretrained(out).eval()
        assert tuple(theirs.config.time_step_limit) == loaded.config.time_step_limit
        with torch.no_grad():
            reference = loaded.model(ids)
            assert torch.equal(again.model(ids), reference)
            assert rel_err(theirs(ids).logits, reference) < 1e-5
        assert again.config.extra["time_step_min"] == hf.config.time_step_min         # unknown keys kept
    with pytest.raises(MQDeployError, match="not empty"):
        save_mamba2(loaded.model, tmp_path / name)


def test_mamba_ssm_only_options_survive_a_save(tmp_path):
    config = Mamba2Config(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_heads=4, head_dim=4, n_groups=2,
                          state_size=4, norm_before_gate=True, gated_norm_epsilon=1e-3)
    model = Mamba2LM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.5)
    out = save_mamba2(model, tmp_path / "m")
    assert json.loads((out / "config.json").read_text())["mq_deploy"] == {"norm_before_gate": True,
                                                                         "gated_norm_epsilon": 1e-3}
    again = load_mamba2(out)
    assert again.config.norm_before_gate and again.config.gated_norm_epsilon == 1e-3
    ids = ids_for(16, (1, 9))
    with torch.no_grad():
        assert torch.equal(again.model(ids), model(ids))
    no_norm = Mamba2LM(Mamba2Config(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_heads=4, head_dim=4,
                                    n_groups=1, state_size=4, rms_norm=False))
    assert no_norm.backbone.layers[0].mixer.norm is None
    assert no_norm(ids).shape == (1, 9, 16)


# ------------------------------------------------------------------------------ bad checkpoints

def one_line_error(path, *fragments):
    with pytest.raises(MQDeployError) as info:
        load_mamba2(path)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def copy_dir(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_missing_paths_and_configs(hf_models, tmp_path):
    one_line_error(tmp_path / "nowhere", "does not exist")
    (tmp_path / "file").write_text("x")
    one_line_error(tmp_path / "file", "is a file")
    (tmp_path / "empty").mkdir()
    one_line_error(tmp_path / "empty", "has no config.json")
    d = copy_dir(hf_models["g1-n64"][1], tmp_path / "noweights")
    (d / "model.safetensors").unlink()
    one_line_error(d, "has no weights")
    (d / "config.json").write_text("{not json")
    one_line_error(d, "is not valid JSON")


@pytest.mark.parametrize("config, fragments", [
    ({"model_type": "mamba", "hidden_size": 8}, ["not a Mamba-2 config", "load_model"]),
    ({"model_type": "llama"}, ["model_type 'llama'", "not Mamba-2"]),
    ({"d_model": 8, "n_layer": 1, "ssm_cfg": {}}, ["Mamba1 checkpoint", "not Mamba-2"]),
    ({"d_model": 8, "n_layer": 1, "ssm_cfg": {"layer": "Mamba2"}, "d_intermediate": 32}, ["hybrid"]),
    ({"d_model": 8, "n_layer": 1, "ssm_cfg": {"layer": "Mamba2", "d_ssm": 8}}, ["d_ssm"]),
    ({"d_model": 8, "n_layer": 1, "ssm_cfg": {"layer": "Mamba2", "D_has_hdim": True, "headdim": 4}}, ["D_has_hdim"]),
    ({"d_model": 8, "n_layer": 1, "ssm_cfg": {"layer": "Mamba2", "headdim": 5}}, ["not a multiple of headdim"]),
    ({"model_type": "mamba2", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_heads": 3,
      "head_dim": 4, "n_groups": 1}, ["not a valid Mamba-2 config", "num_heads * head_dim"]),
    ({"model_type": "mamba2", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_heads": 4,
      "head_dim": 4, "n_groups": 3}, ["not a valid Mamba-2 config", "not a multiple of n_groups"]),
])
def test_configs_that_are_not_mamba2(tmp_path, config, fragments):
    (tmp_path / "config.json").write_text(json.dumps(config))
    one_line_error(tmp_path, *fragments)


def test_truncated_weights(hf_models, tmp_path):
    hf, src = hf_models["g1-n64"]
    d = copy_dir(src, tmp_path / "st")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:len(data) // 2])
    one_line_error(d, "model.safetensors", "truncated")
    write_mamba_ssm_dir(hf, tmp_path / "bin", vocab=97, multiple=1,
                        ssm_cfg=dict(d_state=64, headdim=8, ngroups=1, chunk_size=16))
    data = (tmp_path / "bin" / "pytorch_model.bin").read_bytes()
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(data[:len(data) // 2])
    one_line_error(tmp_path / "bin", "pytorch_model.bin", "truncated")


def _write_state(directory, state):
    from mq_deploy.models.safetensors_io import write_safetensors
    write_safetensors(directory / "model.safetensors", state)


def test_missing_unexpected_misshaped_and_non_finite_tensors(hf_models, tmp_path):
    hf, src = hf_models["g1-n64"]
    state = {k: v.clone() for k, v in hf.state_dict().items()}

    d = copy_dir(src, tmp_path / "missing")
    _write_state(d, {k: v for k, v in state.items() if k != "backbone.layers.1.mixer.D"})
    one_line_error(d, "missing tensors: backbone.layers.1.mixer.D")

    d = copy_dir(src, tmp_path / "unexpected")
    _write_state(d, {**state, "backbone.layers.0.mixer.init_states": torch.zeros(8, 8, 64)})
    one_line_error(d, "unexpected tensors: backbone.layers.0.mixer.init_states")

    d = copy_dir(src, tmp_path / "shape")
    config = json.loads((d / "config.json").read_text())
    config["n_groups"] = 2                                # in_proj and conv1d grow by 2 * state_size
    (d / "config.json").write_text(json.dumps(config))
    one_line_error(d, "shape mismatches", "backbone.layers.0.mixer.conv1d", "same Mamba-2 checkpoint")

    for bad in (float("nan"), float("inf")):
        d = copy_dir(src, tmp_path / f"nonfinite-{bad}")
        broken = dict(state)
        broken["backbone.layers.0.mixer.A_log"] = state["backbone.layers.0.mixer.A_log"].clone()
        broken["backbone.layers.0.mixer.A_log"][3] = bad
        _write_state(d, broken)
        one_line_error(d, "backbone.layers.0.mixer.A_log", "NaN/inf")


def test_the_chunked_scan_is_differentiable_and_its_gradient_is_the_references():
    """Training a Mamba-2 (the demo model) differentiates through the chunked scan; its gradients equal
    the sequential reference's (float64)."""
    g = torch.Generator().manual_seed(0)
    b, L, H, P, G, N = 2, 21, 4, 3, 2, 5
    inputs = [torch.randn(b, L, H, P, generator=g, dtype=torch.float64),
              torch.rand(b, L, H, generator=g, dtype=torch.float64),
              -torch.rand(H, generator=g, dtype=torch.float64) - 0.1,
              torch.randn(b, L, G, N, generator=g, dtype=torch.float64),
              torch.randn(b, L, G, N, generator=g, dtype=torch.float64)]
    grads = []
    for scan in (lambda *a: ssd_scan_chunked(*a, chunk_size=8), ssd_scan_ref):
        leaves = [t.clone().requires_grad_() for t in inputs]
        y, state = scan(*leaves)
        (y.square().sum() + state.sum()).backward()
        grads.append([t.grad for t in leaves])
    for chunked, ref in zip(*grads):
        assert torch.allclose(chunked, ref, rtol=1e-9, atol=1e-12)
