"""What an export reads: an FP checkpoint or a quantized artifact, reduced to the weights, the
quantization parameters and the online transforms (no torch model is traced)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import MQDeployError
from ..models import MambaLM
from ..models.checkpoints import load_checkpoint
from ..quant.artifact import directory_hash, is_quantized_artifact, load_quantized, quant_config_of, read_quant_meta
from ..quant.config import QuantConfig, input_point_of
from ..quant.quantizer import QuantSpec


@dataclass
class ExportSource:
    model: MambaLM                          # FP weights (transformed, before rounding, for an artifact)
    path: Path
    sha256: str
    recipe: str | None = None               # None: an FP checkpoint
    quant_config: QuantConfig | None = None
    weight_specs: dict[str, QuantSpec] = field(default_factory=dict)     # linear name -> spec
    activation_scales: dict[str, float] = field(default_factory=dict)    # point name -> per-tensor scale
    hadamard_signs: dict[str, torch.Tensor] = field(default_factory=dict)  # point name -> ±1 signs
    online_matrices: dict[str, torch.Tensor] = field(default_factory=dict)  # point name -> [n, n] (x·M)
    channel_scales: dict[str, torch.Tensor] = field(default_factory=dict)   # point name -> [n] (x·diag(s))

    @property
    def config(self):
        return self.model.config

    @property
    def quantized(self) -> bool:
        return bool(self.weight_specs)

    def input_point(self, linear: str) -> str:
        return input_point_of(linear)

    def fusable_quantizers(self) -> list[str]:
        """The quantized out_proj linears whose input passes an online Hadamard and then a static INT8
        quantizer: what `export --fuse-quantize` emits as HadamardQuantize nodes."""
        return sorted(linear for linear in self.weight_specs
                      if linear.endswith("out_proj") and self.input_point(linear) in self.hadamard_signs
                      and self.activation_scales.get(self.input_point(linear)) is not None)


def _check_exportable(path: Path, config: QuantConfig, meta: dict) -> None:
    blocker = config.export_blocker()
    if blocker is not None:
        raise MQDeployError(f"{path} cannot be exported: {blocker}")
    for point, info in meta["activations"].items():
        if info.get("dynamic") or not info.get("symmetric", False) or info.get("zero_point", 0) != 0:
            raise MQDeployError(f"{path}: activation {point} is not static symmetric per-tensor INT8, which is "
                                "all TensorRT's explicit quantization runs; re-quantize with `--mode deploy`")
    for point, info in meta["online_transforms"].items():
        exportable = ((info["kind"] == "hadamard" and point.endswith(".out_proj_input"))
                      or (info["kind"] == "matrix" and point == "lm_head_input")
                      or (info["kind"] == "scale" and point.endswith((".x_proj_input", ".x_proj_input_b"))))
        if not exportable:
            raise MQDeployError(f"{path}: online transform {info['kind']!r} at {point} has no ONNX form; "
                                "only Hadamard rotations before out_proj, channel scales before x_proj and the "
                                "exit matrix before a tied lm_head are exportable")


def load_export_source(path) -> ExportSource:
    """Read a model directory or quantized artifact; every problem is one MQDeployError."""
    path = Path(path)
    if not path.exists():
        raise MQDeployError(f"{path} does not exist; pass a model directory or a quantized artifact "
                            "made by `mq-deploy quantize`")
    if not is_quantized_artifact(path):
        return ExportSource(load_checkpoint(path).model, path, directory_hash(path))
    meta = read_quant_meta(path)            # unknown format version / recipe raise here
    config = quant_config_of(meta, path)
    _check_exportable(path, config, meta)
    qm = load_quantized(path, with_quantizers=False)
    online = {point: qm.model.get_submodule(point) for point in qm.online_transforms}
    return ExportSource(
        model=qm.model, path=path, sha256=directory_hash(path), recipe=meta["recipe"], quant_config=config,
        weight_specs={name: QuantSpec(**spec) for name, spec in meta["weights"].items()},
        activation_scales={point: float(info["scale"]) for point, info in meta["activations"].items()},
        hadamard_signs={p: m.signs.detach().clone() for p, m in online.items() if qm.online_transforms[p] == "hadamard"},
        online_matrices={p: m.matrix.detach().clone() for p, m in online.items() if qm.online_transforms[p] == "matrix"},
        channel_scales={p: m.scale.detach().clone() for p, m in online.items() if qm.online_transforms[p] == "scale"})
