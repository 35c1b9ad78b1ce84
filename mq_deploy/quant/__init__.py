"""MambaQuant post-training quantization: quantizer math, observers, calibration, exact transforms,
recipes."""
