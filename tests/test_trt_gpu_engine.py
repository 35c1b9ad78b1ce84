"""On a machine with TensorRT, an NVIDIA GPU and a built libmq_plugins.so only (skipped elsewhere;
never a mock): build a tiny export's prefill and decode engines, check the sidecars and the plugin
layers, and compare both engines with ONNX Runtime on the same inputs, through our runner and
through Polygraphy's; then the deployed form itself: a MambaQuant W8A8 FP16 QDQ export with the
HadamardTransform node, built with a profile long enough that the scan runs in several chunks,
validated against ONNX Runtime with `mq-deploy validate`'s own tolerances."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
if importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available():
    pytest.skip("needs TensorRT and a CUDA GPU", allow_module_level=True)

from mq_deploy.errors import MQDeployError  # noqa: E402
from mq_deploy.trt.plugin_loading import resolve_plugin_library  # noqa: E402
from mq_deploy.deploy.onnxruntime_session import onnxruntime_session  # noqa: E402

try:
    PLUGINS = resolve_plugin_library()
except MQDeployError as e:
    pytest.skip(str(e), allow_module_level=True)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    from mq_deploy.export import export_onnx
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    from mq_deploy.trt.builder import build_engine
    root = tmp_path_factory.mktemp("trt_gpu")
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                   state_size=8)), seed=2).eval()
    save_model(model, root / "fp")
    onnx_path = export_onnx(root / "fp", root / "onnx" / "model.onnx", batch_max=2, seq_max=64).onnx_path
    result = build_engine(onnx_path, root / "engine" / "model.plan", plugins=PLUGINS, progress=False,
                          timing_cache=root / "timing.cache")
    return onnx_path, root / "engine" / "model.plan", result


def test_sidecars_record_plugins_profiles_and_sources(engines):
    _, plan, result = engines
    prefill, decode = result["engines"]["prefill"], result["engines"]["decode"]
    assert [m["node"] for m in prefill["plugin_layers"]] == [f"backbone.layers.{i}.mixer.selective_scan"
                                                              for i in range(2)]
    import tensorrt as trt
    if tuple(int(v) for v in trt.__version__.split(".")[:2]) >= (10, 4):
        # the plugin's own name was read through IPluginV3OneCore, not guessed from the layer name
        assert all(m["plugin"] == "SelectiveScan" for m in prefill["plugin_layers"]), prefill["plugin_layers"]
    assert decode["plugin_layers"] == [] and plan.with_name("model.decode.plan").is_file()
    assert prefill["profiles"][0]["input_ids"] == {"min": [1, 1], "opt": [1, 64], "max": [2, 64]}
    assert prefill["onnx"]["matches_manifest"] and prefill["plugin_library"]["sha256"]
    assert (plan.parent.parent / "timing.cache").is_file()


def test_engines_match_onnx_runtime(engines):
    from mq_deploy.trt.runtime import TrtEngineRunner
    onnx_path, plan, _ = engines
    ids = np.random.default_rng(0).integers(0, 64, size=(2, 48), dtype=np.int64)
    ref = onnxruntime_session(onnx_path)     # ORT_ENABLE_BASIC: the graph's arithmetic (docs/export.md)
    expected = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, {"input_ids": ids})))
    runner = TrtEngineRunner(plan, plugins=PLUGINS)
    got = runner.run({"input_ids": ids})
    on_device = runner.run_device({"input_ids": torch.as_tensor(ids, device="cuda")})
    torch.cuda.synchronize()
    assert np.array_equal(on_device["logits"].cpu().numpy(), got["logits"])
    for name, value in expected.items():
        err = np.linalg.norm(got[name].astype(np.float32) - value) / np.linalg.norm(value)
        assert err < 2e-2, (name, err)
    step = {"input_ids": ids[:, -1:], **{k.replace("_out", ""): v for k, v in got.items() if "_state_out" in k}}
    dec_ref = onnxruntime_session(onnx_path.with_name("model.decode.onnx"))
    want = dec_ref.run(["logits"], step)[0]
    have = TrtEngineRunner(plan.with_name("model.decode.plan"), plugins=PLUGINS).run(step)["logits"]
    assert np.linalg.norm(have - want) / np.linalg.norm(want) < 2e-2


def test_polygraphy_runner_runs_the_session(engines):
    pytest.importorskip("polygraphy")
    from mq_deploy.deploy.polygraphy_runner import SessionRunner
    from mq_deploy.trt.session import TensorRTSession
    _, plan, _ = engines
    runner = SessionRunner(lambda: TensorRTSession(plan, PLUGINS, decode=False), name="mq-trt")
    with runner:
        out = runner.infer({"input_ids": np.ones((1, 5), dtype=np.int64)})
    assert runner.name == "mq-trt" and out["logits"].shape == (1, 5, 64)


@pytest.fixture(scope="module")
def quantized_engine(tmp_path_factory):
    """MambaQuant W8A8, FP16 QDQ graph with SelectiveScan + HadamardTransform nodes; profile up to
    2048 tokens (at 1024 tokens and d_inner 96 the chunked scan runs 16 chunks)."""
    from mq_deploy.export import export_onnx
    from mq_deploy.models import MambaConfig, MambaLM
    from mq_deploy.models.init import init_mamba_weights
    from mq_deploy.models.loading import save_model
    from mq_deploy.quant.artifact import save_quantized
    from mq_deploy.quant.config import QuantConfig
    from mq_deploy.quant.quantize import quantize
    from mq_deploy.trt.builder import build_engine
    root = tmp_path_factory.mktemp("trt_gpu_quantized")
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=48, num_hidden_layers=2, state_size=16,
                                                   time_step_rank=12, tokenizer="bytes")), seed=4).eval()
    save_model(model, root / "fp")
    calib = torch.randint(0, 256, (8, 256), generator=torch.Generator().manual_seed(0))
    save_quantized(quantize(model, "mambaquant", calib, QuantConfig(), progress=False), root / "q",
                   source_dir=root / "fp")
    onnx_path = export_onnx(root / "q", root / "onnx" / "model.onnx", batch_max=2, seq_max=2048).onnx_path
    result = build_engine(onnx_path, root / "engine" / "model.plan", plugins=PLUGINS, progress=False)
    return onnx_path, root / "engine" / "model.plan", result


def test_quantized_multichunk_engine_validates_against_onnx_runtime(quantized_engine):
    from mq_deploy.trt.plugin_layers import plugin_nodes_of
    from mq_deploy.validate.validation import validate_export
    onnx_path, plan, result = quantized_engine
    layers = result["engines"]["prefill"]["plugin_layers"]
    assert sorted(m["op"] for m in layers) == sorted(n.op_type for n in plugin_nodes_of(onnx_path))
    assert {m["op"] for m in layers} == {"SelectiveScan", "HadamardTransform"}
    report = validate_export(onnx_path, engine=plan, references=["onnxruntime"], samples=2, seq_len=1024, plugins=PLUGINS)
    assert report["passed"], report
