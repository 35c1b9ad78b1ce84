"""Names of the custom ops in an exported graph (DESIGN.md §3.2), importable without onnx: trt/
reads them on a machine that has only TensorRT."""

DOMAIN = "mq_deploy"
DOMAIN_VERSION = 1
SCAN_OP = "SelectiveScan"
HADAMARD_OP = "HadamardTransform"
PLUGIN_OPS = (SCAN_OP, HADAMARD_OP)
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "mq_deploy"
