// Names shared by every mq_deploy plugin and the ONNX export (plugins/selective_scan/README.md).
#pragma once

namespace mq::plugin {

// Plugin namespace: equal to the ONNX node's `plugin_namespace` attribute and used in all three
// places TensorRT compares (creator getter, plugin getter, registerCreator argument).
constexpr char kPluginNamespace[] = "mq_deploy";
constexpr char kPluginVersion[] = "1";
constexpr char kSelectiveScanName[] = "SelectiveScan";
constexpr char kSsdScanName[] = "SSDScan";
constexpr char kHadamardTransformName[] = "HadamardTransform";
constexpr char kHadamardQuantizeName[] = "HadamardQuantize";

}  // namespace mq::plugin
