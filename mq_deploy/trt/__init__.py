"""TensorRT engine building and running. `tensorrt` is imported only where it is needed."""
