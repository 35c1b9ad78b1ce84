"""`mq-deploy bench`: prefill and decode latency of engines, ONNX Runtime and torch, in one table."""
