"""What the TensorRT builder hands the ONNX parser (mq_deploy/trt/parser_input.py): the exported
graph minus the mq_deploy local functions, so every TensorRT version's parser can only turn the
SelectiveScan / HadamardTransform nodes into our plugins; everything else byte-for-byte the same,
external data left as references for the parser to resolve next to the file."""

from __future__ import annotations

import pytest
import torch

onnx = pytest.importorskip("onnx")

from mq_deploy.export import export_onnx  # noqa: E402
from mq_deploy.models import MambaConfig, MambaLM  # noqa: E402
from mq_deploy.models.init import init_mamba_weights  # noqa: E402
from mq_deploy.models.loading import save_model  # noqa: E402
from mq_deploy.quant.artifact import save_quantized  # noqa: E402
from mq_deploy.quant.config import QuantConfig  # noqa: E402
from mq_deploy.quant.quantize import quantize  # noqa: E402
from mq_deploy.trt.parser_input import parser_model_bytes  # noqa: E402
from mq_deploy.trt.plugin_layers import plugin_nodes_of  # noqa: E402


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A QuaRot W8A8 export (SelectiveScan + HadamardTransform nodes), once self-contained and once
    with its weights in the shared external data file (the default)."""
    root = tmp_path_factory.mktemp("parser_input")
    # d_inner 96 = 12 * 8 (a Hadamard size); in_proj's 9 KB of INT8 codes go to external data
    model = init_mamba_weights(MambaLM(MambaConfig(vocab_size=256, hidden_size=48, num_hidden_layers=2,
                                                   state_size=8, time_step_rank=12)), seed=3).eval()
    save_model(model, root / "fp")
    calib = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    qm = quantize(model, "quarot", calib, QuantConfig(w_bits=8, a_bits=8), progress=False)
    save_quantized(qm, root / "q", source_dir=root / "fp")
    return {"single": export_onnx(root / "q", root / "single" / "model.onnx", external_data=False).onnx_path,
            "external": export_onnx(root / "q", root / "ext" / "model.onnx").onnx_path}


def test_parser_gets_the_graph_without_plugin_functions(exports):
    path = exports["single"]
    on_disk = onnx.load(str(path))
    assert {f.name for f in on_disk.functions} == {"SelectiveScan", "HadamardTransform"}   # ORT needs them
    given = onnx.load_from_string(parser_model_bytes(path))
    assert list(given.functions) == []
    # nothing else changed: same nodes in the same order, same weights, opsets and I/O
    assert given.graph.node == on_disk.graph.node
    assert given.graph.initializer == on_disk.graph.initializer
    assert given.opset_import == on_disk.opset_import and given.ir_version == on_disk.ir_version
    assert given.graph.input == on_disk.graph.input and given.graph.output == on_disk.graph.output
    # which nodes must become plugin layers: every SelectiveScan and HadamardTransform node, by name
    nodes = plugin_nodes_of(path)
    ops = sorted({n.op_type for n in nodes})
    assert ops == ["HadamardTransform", "SelectiveScan"] and len(nodes) == 4
    assert all(n.namespace == "mq_deploy" and n.version == "1" for n in nodes)
    assert {n.name for n in nodes} == {n.name for n in given.graph.node if n.domain == "mq_deploy"}


def test_external_data_stays_a_reference_for_the_parser(exports):
    path = exports["external"]
    data = path.with_name(path.name + ".data")
    assert data.is_file()
    given = onnx.load_from_string(parser_model_bytes(path))
    external = [t for t in given.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and all(dict((e.key, e.value) for e in t.external_data)["location"] == data.name
                            for t in external)
    assert len(parser_model_bytes(path)) < data.stat().st_size   # weights were not inlined
    assert list(given.functions) == []


def test_decode_graph_loses_its_hadamard_function_too(exports):
    decode = exports["single"].with_name("model.decode.onnx")
    on_disk, given = onnx.load(str(decode)), onnx.load_from_string(parser_model_bytes(decode))
    assert [f.name for f in on_disk.functions] == ["HadamardTransform"] and list(given.functions) == []
    assert given.graph == on_disk.graph
    assert {n.op_type for n in plugin_nodes_of(decode)} == {"HadamardTransform"}
