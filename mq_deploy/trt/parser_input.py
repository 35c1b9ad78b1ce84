"""What TensorRT's ONNX parser is given: the exported graph without its model-local functions.

Each mq_deploy node (SelectiveScan, SSDScan, HadamardTransform, HadamardQuantize) carries a local
function (standard ops) so ONNX Runtime can run the file as is. TensorRT's parser must instead turn
the node into our plugin, and which it picks depends on the version (onnx-tensorrt ModelImporter parseNode):
- 10.0-10.6: a local function always wins over a registered plugin, so the plugin is never used;
- later: a node with a `plugin_namespace` attribute (ours always has one) goes to the plugin
  registry first, the local function only when no creator matches.
With the functions removed, every version has one way left: the FallbackPluginImporter, i.e. our
plugin, or a parse error naming the node. The file on disk keeps its functions.

Why not the parser flag ENABLE_PLUGIN_OVERRIDE (10.15+): it routes *every* node whose op_type
matches a registered creator to that plugin, including ONNX `Split` nodes to the deprecated
`Split` plugin that `init_libnvinfer_plugins` registers in 10.15/10.16, whose creator returns no
field names; the parser's loadFields then dereferences them (a crash or "could not create the
plugin"). So the builder sets no parser flag and never initializes TensorRT's own plugins.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MQDeployError

PLUGIN_DOMAIN = "mq_deploy"


def parser_model_bytes(onnx_path) -> bytes:
    """The serialized ModelProto to hand to `OnnxParser.parse(bytes, path)`: the file's graph,
    initializers and external-data references unchanged (the weights are not loaded; the parser
    resolves them next to `path`), minus the local functions of the mq_deploy domain."""
    try:
        import onnx
    except ImportError:
        raise MQDeployError("building an engine reads the ONNX graph with the onnx package: "
                            "pip install -e '.[trt]'") from None
    model = onnx.load(str(Path(onnx_path)), load_external_data=False)
    kept = [f for f in model.functions if f.domain != PLUGIN_DOMAIN]
    del model.functions[:]
    model.functions.extend(kept)
    return model.SerializeToString()
