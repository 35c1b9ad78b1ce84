"""Optimization profiles from a real exported graph's manifest.json and from --min/--opt/--max
(trtexec syntax): defaults, overrides, and one clear error per mistake. Pure logic, no TensorRT."""

from __future__ import annotations

import copy

import pytest

from mq_deploy.errors import MQDeployError
from mq_deploy.trt.profiles import (
    DEFAULT_BATCH,
    DEFAULT_SEQLEN,
    DimRange,
    build_profiles,
    format_profile,
    parse_shape_option,
    resolve_ranges,
)

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A tiny random model exported with --batch-max 4 --seq-max 256 (prefill + decode)."""
    from mq_deploy.export import export_onnx
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    root = tmp_path_factory.mktemp("trt_profiles")
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2,
                                                   state_size=4)), seed=0).eval()
    save_model(model, root / "fp")
    return export_onnx(root / "fp", root / "onnx" / "model.onnx", batch_max=4, seq_max=256).manifest


@pytest.fixture
def unbounded(manifest):
    m = copy.deepcopy(manifest)
    m["profile"] = {"batch_max": None, "seq_max": None}
    return m


def by_name(profile):
    return {p.name: (p.min, p.opt, p.max) for p in profile}


def dims(manifest):
    d_inner = manifest["model"]["intermediate_size"]
    return d_inner, manifest["model"]["conv_kernel"] - 1, manifest["model"]["state_size"]


def test_manifest_bounds_give_every_input_of_both_graphs_a_profile(manifest):
    profiles = build_profiles(manifest, ["prefill", "decode"])
    d, k, n = dims(manifest)
    assert by_name(profiles["prefill"]) == {"input_ids": ((1, 1), (1, 256), (4, 256))}   # opt 512 clamped to 256
    decode = by_name(profiles["decode"])
    assert decode["input_ids"] == ((1, 1), (1, 1), (4, 1))                                # seqlen fixed at 1
    assert decode["conv_state.0"] == ((1, d, k), (1, d, k), (4, d, k))
    assert decode["ssm_state.1"] == ((1, d, n), (1, d, n), (4, d, n))
    assert set(decode) == {e["name"] for e in manifest["graphs"]["decode"]["inputs"]}


def test_defaults_without_bounds_are_documented_values(unbounded):
    ranges = resolve_ranges(unbounded, ["prefill", "decode"])
    assert ranges == {"batch": DEFAULT_BATCH, "seqlen": DEFAULT_SEQLEN}
    assert DEFAULT_BATCH == DimRange(1, 1, 8) and DEFAULT_SEQLEN == DimRange(1, 512, 2048)
    assert format_profile(build_profiles(unbounded, ["prefill"])["prefill"]) == "input_ids 1x1 / 1x512 / 8x2048"


def test_user_shapes_set_the_ranges_of_both_graphs(unbounded):
    profiles = build_profiles(unbounded, ["prefill", "decode"], max_shapes="input_ids:2x64")
    assert by_name(profiles["prefill"])["input_ids"] == ((1, 1), (1, 64), (2, 64))       # opt clamped into range
    d, k, _ = dims(unbounded)
    assert by_name(profiles["decode"])["conv_state.0"][2] == (2, d, k)                   # same batch range
    full = build_profiles(unbounded, ["prefill"], "input_ids:2x16", "'input_ids':3x100", "input_ids:6x300")
    assert by_name(full["prefill"])["input_ids"] == ((2, 16), (3, 100), (6, 300))


def test_decode_state_inputs_can_size_the_batch(unbounded):
    d, k, _ = dims(unbounded)
    profiles = build_profiles(unbounded, ["prefill", "decode"], max_shapes=f"conv_state.0:16x{d}x{k}")
    assert by_name(profiles["prefill"])["input_ids"][2] == (16, 2048)
    assert by_name(profiles["decode"])["ssm_state.0"][2][0] == 16


def test_dict_shapes_pass_through(unbounded):
    assert parse_shape_option({"input_ids": [1, 2]}) == {"input_ids": (1, 2)}
    profiles = build_profiles(unbounded, ["prefill"], max_shapes={"input_ids": (3, 33)})
    assert by_name(profiles["prefill"])["input_ids"][2] == (3, 33)


@pytest.mark.parametrize("text", ["input_ids", "input_ids:", "input_ids:1x", ":1x1", "input_ids:1xa",
                                  "input_ids:1,2", "input_ids=1x1", ""])
def test_malformed_shape_strings(text):
    with pytest.raises(MQDeployError, match="is not NAME:DIMS") as e:
        parse_shape_option(text, "--min")
    assert "input_ids:1x1,conv_state.0:1x384x3" in str(e.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_shapes": "input_ids:0x1"}, "at least 1"),
    ({"max_shapes": "input_ids:1x1,input_ids:2x2"}, "gives input_ids twice"),
    ({"max_shapes": "logits:1x1"}, "unknown input 'logits'.*conv_state.0, conv_state.1, input_ids"),
    ({"max_shapes": "input_ids:4x4x4"}, "has 3 dims but input_ids is \\[batch, seqlen\\]"),
    ({"max_shapes": "conv_state.0:4x384x3"}, "conv_state.0: dim 1 is fixed at 32 in the graph, not 384"),
    ({"min_shapes": "input_ids:4x1", "opt_shapes": "input_ids:2x1"}, "batch needs min <= opt <= max.*min 4, opt 2"),
    ({"opt_shapes": "input_ids:1x4096"}, "seqlen needs min <= opt <= max.*opt 4096, max 2048"),
    ({"max_shapes": "input_ids:4x100,conv_state.0:8x32x3"}, "batch = 4 for input_ids but 8 for conv_state.0"),
])
def test_bad_shapes_are_one_clear_error(unbounded, kwargs, message):
    with pytest.raises(MQDeployError, match=message):
        build_profiles(unbounded, ["prefill", "decode"], **kwargs)


def test_decode_graph_alone_keeps_its_fixed_seqlen(manifest):
    with pytest.raises(MQDeployError, match="dim 1 is fixed at 1 in the graph, not 64; write 1 there"):
        build_profiles(manifest, ["decode"], max_shapes="input_ids:2x64")
    assert by_name(build_profiles(manifest, ["decode"], max_shapes="input_ids:2x1")["decode"])["input_ids"][2] == (2, 1)
