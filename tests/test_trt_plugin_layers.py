"""The plugin-layer assertion as a pure function: every SelectiveScan/HadamardTransform node must be a
PLUGIN_V3 layer named after it (with our plugin name and namespace where TensorRT exposes them);
a node inlined from its local function, or taken by another library's plugin, is an error."""

from __future__ import annotations

import pytest

from mq_deploy.errors import MQDeployError
from mq_deploy.trt.plugin_layers import LayerInfo, PluginNode, check_plugin_layers

SCAN = [PluginNode(f"backbone.layers.{i}.mixer.selective_scan", "SelectiveScan", "1", "mq_deploy") for i in range(2)]
HADAMARD = PluginNode("backbone.layers.0.mixer.out_proj_hadamard", "HadamardTransform", "1", "mq_deploy")


def plugin_layer(name, plugin="SelectiveScan", namespace="mq_deploy"):
    return LayerInfo(name, "PLUGIN_V3", plugin, namespace)


def inlined_body(node):
    # What the parser makes of the local function: a Loop of ordinary layers, no plugin layer.
    return [LayerInfo(f"{node}_scan_loop", "TRIP_LIMIT"), LayerInfo(f"{node}/decay", "UNARY"),
            LayerInfo(f"{node}_loop_output", "LOOP_OUTPUT")]


def test_every_node_a_plugin_layer_passes_and_reports_the_matches():
    layers = [LayerInfo("embed", "GATHER"), plugin_layer(SCAN[0].name), LayerInfo("x", "MATRIX_MULTIPLY"),
              plugin_layer(SCAN[1].name), plugin_layer(HADAMARD.name, "HadamardTransform")]
    matches = check_plugin_layers(layers, [*SCAN, HADAMARD])
    assert [m["layer"] for m in matches] == [SCAN[0].name, SCAN[1].name, HADAMARD.name]
    assert matches[2] == {"node": HADAMARD.name, "op": "HadamardTransform", "layer": HADAMARD.name,
                          "plugin": "HadamardTransform"}


def test_plugin_name_unreadable_falls_back_to_the_layer_name():
    # TensorRT < 10.4: IPluginV3.get_capability_interface is a stub, so only the layer name is known.
    matches = check_plugin_layers([plugin_layer(n.name, None, None) for n in SCAN], SCAN)
    assert all(m["plugin"] == "SelectiveScan (matched by layer name)" for m in matches)


def test_parser_unique_suffix_is_accepted_but_not_a_longer_name():
    assert check_plugin_layers([plugin_layer(SCAN[0].name + "_3")], SCAN[:1])
    with pytest.raises(MQDeployError, match="inlined"):
        check_plugin_layers([plugin_layer(SCAN[0].name + "_extra")], SCAN[:1])


def test_graph_without_plugin_nodes_needs_no_plugin_layers():
    assert check_plugin_layers([LayerInfo("embed", "GATHER")], []) == []


def test_inlined_local_functions_are_an_error_naming_nodes_and_fix():
    layers = [layer for node in SCAN for layer in inlined_body(node.name)]
    with pytest.raises(MQDeployError) as e:
        check_plugin_layers(layers, SCAN, "model.onnx")
    message = str(e.value)
    assert message.startswith("2 of 2 SelectiveScan nodes of model.onnx were inlined from their ONNX local function")
    assert SCAN[0].name in message and SCAN[1].name in message
    assert "--plugins PATH" in message and "MQ_PLUGIN_PATH" in message and "parser_model_bytes" in message
    assert "\n" not in message


def test_one_node_inlined_among_plugins_is_still_an_error():
    layers = [plugin_layer(SCAN[0].name), *inlined_body(SCAN[1].name)]
    with pytest.raises(MQDeployError, match=f"1 of 2 SelectiveScan nodes .*: {SCAN[1].name}\\. Fix"):
        check_plugin_layers(layers, SCAN)


def test_a_plugin_layer_of_the_wrong_type_does_not_count():
    layers = [LayerInfo(SCAN[0].name, "PLUGIN_V2")]       # an old-style plugin of the same name
    with pytest.raises(MQDeployError, match="inlined"):
        check_plugin_layers(layers, SCAN[:1])


def test_another_librarys_plugin_of_the_same_name_is_an_error():
    # e.g. TensorRT-LLM's SelectiveScan, registered in the empty namespace
    layers = [plugin_layer(SCAN[0].name, "SelectiveScan", ""), plugin_layer(SCAN[1].name)]
    with pytest.raises(MQDeployError, match=f"became another library's plugin: {SCAN[0].name} -> SelectiveScan "
                                            "\\(namespace ''\\)"):
        check_plugin_layers(layers, SCAN)


def test_long_lists_are_shortened():
    nodes = [PluginNode(f"scan{i}", "SelectiveScan", "1", "mq_deploy") for i in range(20)]
    with pytest.raises(MQDeployError, match="scan5 and 14 more"):
        check_plugin_layers([], nodes)


def test_ssd_scan_nodes_are_held_to_the_same_rule():
    """Mamba-2's SSDScan nodes: plugin layers pass, an inlined one is an error that names it."""
    ssd = [PluginNode(f"backbone.layers.{i}.mixer.ssd_scan", "SSDScan", "1", "mq_deploy") for i in range(2)]
    matches = check_plugin_layers([plugin_layer(n.name, "SSDScan") for n in ssd], ssd)
    assert [m["plugin"] for m in matches] == ["SSDScan", "SSDScan"]
    with pytest.raises(MQDeployError, match=f"1 of 2 SSDScan nodes .*: {ssd[1].name}"):
        check_plugin_layers([plugin_layer(ssd[0].name, "SSDScan"), *inlined_body(ssd[1].name)], ssd)
