"""A QDQ graph against its fake-quant torch model, with the INT8 activation codes made equal.

Why two steps: a last-ulp difference in front of a QuantizeLinear (ONNX Runtime's MatMul sums in
another order than torch's) can move a value across a rounding tie, so one code differs by one, and
the difference travels through the scan and the later layers. On the trained demo model that alone
gives ~2e-2 relative logits error in an FP32 graph, although the graph computes the same function.
So a QDQ graph is checked as

1. codes: ONNX Runtime runs with every activation QuantizeLinear output exposed; torch recomputes
   each code from its own input to the same quantizer. Reported: how many differ, by how much
   (a correct graph: at most 1) and how far from a rounding tie the differing values were
   (FP32 graph: a few 1e-5 of a step, i.e. last-ulp ties; FP16 graph: up to the FP16 rounding
   of the input);
2. aligned logits: torch runs again with each quantizer emitting ONNX Runtime's codes · scale.
   What is left is the graph's arithmetic alone, held to the FP tolerances. The states the graph
   returns (conv and SSM, per layer) are compared the same way, so a state that diverged only
   because flipped codes upstream were amplified is told from one the graph computes wrongly.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from ..deploy.contract import HADAMARD_QUANTIZE_OP, is_state_output, state_names
from ..deploy.onnxruntime_session import onnxruntime_session
from ..metrics import logits_error, next_token_nll
from ..quant.config import input_point_of
from ..quant.modules import StaticActivationQuantizer
from .qdq import linear_of_activation_quantize


def torch_logits(torch_model, input_ids: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch_model(input_ids).double().numpy()


def compare_onnx_with_torch(onnx_path, torch_model, input_ids: torch.Tensor) -> dict:
    """Logits error of ONNX Runtime (CPU) against `torch_model` on the same token ids [b, L]."""
    session = onnxruntime_session(onnx_path)
    ours = session.run(["logits"], {"input_ids": input_ids.numpy().astype(np.int64)})[0]
    return logits_error(ours, torch_logits(torch_model, input_ids))


def _quantizer_at(model: torch.nn.Module, point: str) -> StaticActivationQuantizer:
    module = model.get_submodule(point)
    found = [m for m in module.modules() if isinstance(m, StaticActivationQuantizer)]
    if len(found) != 1:
        raise ValueError(f"{point} holds {len(found)} static activation quantizers, expected 1 "
                         "(is this the fake-quant model the graph was exported from?)")
    return found[0]


def activation_quantize_outputs(model: onnx.ModelProto) -> dict[str, str]:
    """{activation point: QuantizeLinear (or fused HadamardQuantize) output name} of an exported QDQ graph."""
    out = {}
    for node in model.graph.node:
        quantizes = node.op_type in ("QuantizeLinear", HADAMARD_QUANTIZE_OP)
        linear = linear_of_activation_quantize(node.name) if quantizes else None
        if linear is not None:
            out[input_point_of(linear)] = node.output[0]
    return out


def run_with_codes(onnx_path, input_ids: np.ndarray, states: dict | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """ONNX Runtime logits and {point: INT8 codes} from one run of the graph; the graph's state
    outputs ({name: value}) go into `states` when given."""
    model = onnx.load(str(onnx_path))
    codes_of = activation_quantize_outputs(model)
    for name in codes_of.values():
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT8, None))
    state_outputs = [o.name for o in model.graph.output if is_state_output(o.name)]
    session = onnxruntime_session(model.SerializeToString())
    names = ["logits", *codes_of.values(), *state_outputs]
    values = session.run(names, {"input_ids": np.asarray(input_ids, np.int64)})
    length = np.asarray(input_ids).shape[1]
    codes = {}
    for point, value in zip(codes_of, values[1:]):
        # a conv input is quantized as the padded window [b, D, K-1+L]; torch sees x [b, L, D]
        codes[point] = value[:, :, -length:].transpose(0, 2, 1) if point.endswith(".conv_input") else value
    if states is not None:
        states.update(zip(state_outputs, values[1 + len(codes_of):]))
    return values[0], codes


class _CodeStats:
    def __init__(self):
        self.compared = self.differing = 0
        self.max_code_difference = 0.0
        self.max_distance_from_tie = 0.0          # in quantization steps, over the differing codes
        self.per_point = {}                       # point -> the same three figures, in forward order

    def add(self, point: str, ratio: torch.Tensor, own: torch.Tensor, given: torch.Tensor):
        differs = own != given
        n = int(differs.sum())
        self.compared += own.numel()
        self.differing += n
        mine = self.per_point.setdefault(point, {"differing": 0, "max_code_difference": 0.0,
                                                 "max_distance_from_tie": 0.0})
        if n:
            code_difference = float((own - given).abs().max())
            frac = ratio.abs() - ratio.abs().floor()
            distance = float((frac - 0.5).abs()[differs].max())
            self.max_code_difference = max(self.max_code_difference, code_difference)
            self.max_distance_from_tie = max(self.max_distance_from_tie, distance)
            mine["differing"] += n
            mine["max_code_difference"] = max(mine["max_code_difference"], code_difference)
            mine["max_distance_from_tie"] = max(mine["max_distance_from_tie"], distance)

    def as_dict(self) -> dict:
        return {"compared": self.compared, "differing": self.differing,
                "fraction": self.differing / max(self.compared, 1),
                "max_code_difference": self.max_code_difference,
                "max_distance_from_tie": self.max_distance_from_tie,
                "per_point": {p: v for p, v in self.per_point.items() if v["differing"]}}


def torch_logits_and_states(torch_model, input_ids: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits and {graph state output name: value} of a language model's forward."""
    with torch.no_grad():
        logits, state = torch_model(input_ids, return_state=True)
    states = {}
    for i, (conv, ssm) in enumerate(zip(state.conv, state.ssm)):
        names = state_names(i)
        states[names["conv_out"]], states[names["ssm_out"]] = conv.double().numpy(), ssm.double().numpy()
    return logits.double().numpy(), states


def _aligned_logits(torch_model, input_ids: torch.Tensor, codes: dict[str, np.ndarray], stats: _CodeStats,
                    with_states: bool = False):
    def hook_for(point: str, given: torch.Tensor):
        def hook(quantizer, inputs, output):
            x, spec = inputs[0].double(), quantizer.spec
            ratio = x / quantizer.scale
            own = torch.clamp(torch.round(ratio) + quantizer.zero_point, spec.qmin, spec.qmax)
            stats.add(point, ratio, own, given)
            return ((given - quantizer.zero_point) * quantizer.scale).to(output.dtype)
        return hook

    handles = []
    try:
        for point, values in codes.items():
            given = torch.from_numpy(values.astype(np.float64))
            handles.append(_quantizer_at(torch_model, point).register_forward_hook(hook_for(point, given)))
        return torch_logits_and_states(torch_model, input_ids) if with_states else torch_logits(torch_model, input_ids)
    finally:
        for handle in handles:
            handle.remove()


def aligned_torch_logits(torch_model, input_ids: torch.Tensor, codes: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """Logits of the fake-quant torch model with each quantizer emitting the given codes (those of
    run_with_codes), and the code comparison (_CodeStats.as_dict)."""
    stats = _CodeStats()
    return _aligned_logits(torch_model, input_ids, codes, stats), stats.as_dict()


def relative_error(ours, ref) -> float:
    """max |ours - ref| / max |ref| in float64."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-300))


def compare_qdq_graph(onnx_path, torch_model, input_ids: torch.Tensor) -> dict:
    """ONNX Runtime on a QDQ graph vs the fake-quant torch model it came from: plain logits error,
    the code comparison, logits error with the codes aligned, the relative error of every state
    output with the codes aligned ("aligned_states", {name: error}; empty for a graph without
    states), and next-token NLL of both."""
    graph_states: dict[str, np.ndarray] = {}
    ours, codes = run_with_codes(onnx_path, input_ids.numpy(), graph_states)
    if not codes:
        raise ValueError(f"{onnx_path} has no activation QuantizeLinear nodes; use compare_onnx_with_torch")
    plain_ref = torch_logits(torch_model, input_ids)
    stats = _CodeStats()
    if graph_states:
        aligned_ref, torch_states = _aligned_logits(torch_model, input_ids, codes, stats, with_states=True)
    else:
        aligned_ref, torch_states = _aligned_logits(torch_model, input_ids, codes, stats), {}
    return {"plain": logits_error(ours, plain_ref), "codes": stats.as_dict(),
            "aligned": logits_error(ours, aligned_ref),
            "aligned_states": {name: relative_error(value, torch_states[name]) for name, value in graph_states.items()},
            "nll": {"onnx": next_token_nll(ours, input_ids.numpy()),
                    "torch": next_token_nll(plain_ref, input_ids.numpy())}}
