"""mq-deploy: quantized Mamba models to TensorRT engines."""
__version__ = "0.1.0"
