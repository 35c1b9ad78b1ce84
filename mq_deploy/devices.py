"""One meaning of --device everywhere (quantize, eval, validate, bench): auto, cpu, cuda, cuda:N."""

from __future__ import annotations

from .errors import MQDeployError


def torch_device(name: str | None):
    """auto (or None): a CUDA GPU when torch sees one, else the CPU; anything else as given, with
    one clear error for a name torch does not know or a GPU torch cannot see."""
    import torch
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise MQDeployError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MQDeployError(f"--device {name}: torch {torch.__version__} sees no CUDA GPU here; use --device cpu "
                            "(or auto)")
    if device.type not in ("cpu", "cuda"):
        raise MQDeployError(f"--device {name}: mq-deploy runs on cpu or cuda; use auto, cpu, cuda or cuda:N")
    return device
