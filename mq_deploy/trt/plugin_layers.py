"""Did every mq_deploy node (SelectiveScan, SSDScan, HadamardTransform, HadamardQuantize) become our
plugin? The builder hands the parser the graph without its local functions (parser_input.py), so a node cannot
be inlined from one; but a graph parsed another way (a user's own script, Polygraphy, an edited file) can still carry
them, and a library that registers the same op names can take the nodes. Either way the engine
still builds, only slow or wrong. plugins/selective_scan/README.md makes that an error.

`check_plugin_layers` is pure (layer descriptions in, matches out); `network_layers` is the thin
TensorRT side and `plugin_nodes_of` the ONNX side."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import MQDeployError
from ..deploy.contract import DOMAIN, PLUGIN_OPS
from .plugin_library import PLUGIN_ENV, PLUGIN_LIBRARY

PLUGIN_LAYER_TYPE = "PLUGIN_V3"       # trt.LayerType.PLUGIN_V3.name
SHOWN = 6                             # node names listed in an error before "and N more"


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str                          # trt.LayerType member name, e.g. "PLUGIN_V3", "LOOP_OUTPUT"
    plugin_name: str | None = None     # None: not a plugin layer, or not readable from Python (TensorRT < 10.4)
    plugin_namespace: str | None = None


@dataclass(frozen=True)
class PluginNode:
    name: str
    op_type: str
    version: str
    namespace: str


def _named_after(layer_name: str, node_name: str) -> bool:
    """The ONNX parser names a node's layer after the node, adding `_<n>` on a clash
    (onnx-tensorrt ImporterContext::registerLayer / generateUniqueName)."""
    return layer_name == node_name or re.fullmatch(re.escape(node_name) + r"_\d+", layer_name) is not None


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def check_plugin_layers(layers: list[LayerInfo], nodes: list[PluginNode], graph: str = "the graph") -> list[dict]:
    """Match every plugin node to a PLUGIN_V3 layer named after it (and, where TensorRT exposes it,
    carrying the node's plugin name and namespace). Returns the matches; raises one MQDeployError
    listing the nodes that were inlined or taken by another library's plugin."""
    plugin_layers = [layer for layer in layers if layer.type == PLUGIN_LAYER_TYPE]
    matches, inlined, foreign = [], [], []
    for node in nodes:
        layer = next((lay for lay in plugin_layers if _named_after(lay.name, node.name)), None)
        if layer is None:
            inlined.append(node.name)
        elif layer.plugin_name is not None and (layer.plugin_name, layer.plugin_namespace) != (node.op_type, node.namespace):
            foreign.append(f"{node.name} -> {layer.plugin_name} (namespace {layer.plugin_namespace!r})")
        else:
            matches.append({"node": node.name, "op": node.op_type, "layer": layer.name,
                            "plugin": layer.plugin_name or f"{node.op_type} (matched by layer name)"})
    if inlined:
        ops = sorted({n.op_type for n in nodes if n.name in inlined})
        raise MQDeployError(
            f"{len(inlined)} of {len(nodes)} {'/'.join(ops)} nodes of {graph} were inlined from their ONNX local "
            f"function instead of becoming mq_deploy plugin layers: {_listing(inlined)}. Fix: load {PLUGIN_LIBRARY} "
            f"built for this TensorRT (--plugins PATH or {PLUGIN_ENV}) and keep the nodes' plugin_version/"
            f"plugin_namespace attributes (mq-deploy check verifies them); a parser given the file itself "
            f"may prefer the local functions: hand it the graph without them, as mq-deploy build does "
            f"(mq_deploy.trt.parser_input.parser_model_bytes)")
    if foreign:
        raise MQDeployError(
            f"{len(foreign)} plugin nodes of {graph} became another library's plugin: {_listing(foreign)}. Fix: "
            f"load only {PLUGIN_LIBRARY} for these ops, or re-export so the nodes carry plugin_namespace='{DOMAIN}'")
    return matches


def plugin_nodes_from_manifest(entry: dict) -> list[PluginNode] | None:
    """The plugin nodes export recorded for a graph (manifest `plugin_nodes`), or None for a manifest
    written before that field existed. Lets `build` run where only TensorRT is installed."""
    nodes = entry.get("plugin_nodes")
    if not isinstance(nodes, list):
        return None
    return [PluginNode(n["name"], n["op"], str(n["version"]), n["namespace"]) for n in nodes]


def plugin_nodes_of(onnx_path) -> list[PluginNode]:
    """The mq_deploy plugin nodes of an ONNX file's main graph (weights are not loaded)."""
    try:
        import onnx
    except ImportError:
        raise MQDeployError(f"{onnx_path} is not the file its manifest.json describes, so its plugin nodes must be "
                            "read from the graph, which needs the onnx package: pip install -e '.[onnx]' (or "
                            "re-export)") from None
    model = onnx.load(str(Path(onnx_path)), load_external_data=False)
    nodes = []
    for node in model.graph.node:
        if node.domain != DOMAIN or node.op_type not in PLUGIN_OPS:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if not node.name:
            raise MQDeployError(f"{onnx_path} has an unnamed {node.op_type} node, so its plugin layer cannot be "
                                "checked; re-export the model with mq-deploy export")
        nodes.append(PluginNode(node.name, node.op_type, _text(attrs.get("plugin_version", b"1")),
                                _text(attrs.get("plugin_namespace", b""))))
    return nodes


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def network_layers(trt, network) -> list[LayerInfo]:
    """Describe a parsed trt.INetworkDefinition's layers for `check_plugin_layers`."""
    layers = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        name, kind = layer.name, layer.type.name
        plugin_name = plugin_namespace = None
        if layer.type == trt.LayerType.PLUGIN_V3:
            plugin_name, plugin_namespace = _plugin_identity(trt, layer)
        layers.append(LayerInfo(name, kind, plugin_name, plugin_namespace))
    return layers


def _plugin_identity(trt, layer) -> tuple[str | None, str | None]:
    """(name, namespace) of an IPluginV3Layer's plugin, or (None, None) where Python cannot see it.
    get_layer returns the ILayer base class; like Polygraphy (backend/trt/util.py) we re-class it to
    reach IPluginV3Layer.plugin. IPluginV3.get_capability_interface returns the IPluginV3OneCore view
    of a C++ plugin from TensorRT 10.4; before that the binding is a stub returning None, and the
    check falls back to the layer name alone."""
    try:
        layer.__class__ = trt.IPluginV3Layer
        core = layer.plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
        if core is None:
            return None, None
        return core.plugin_name, core.plugin_namespace
    except (AttributeError, TypeError, RuntimeError):
        return None, None
