"""Why a QDQ graph failed against its own fake-quant torch model: a correct graph whose INT8 codes
flipped at rounding ties (and a model that amplifies the flips), or a graph that computes something
else. The aligned-code comparison (export/aligned_codes.py) tells them apart: ONNX Runtime runs with
every activation code exposed, torch recomputes each code from its own input, and torch runs again
emitting ONNX Runtime's codes, so what is left is the graph's arithmetic alone."""

from __future__ import annotations

import numpy as np
import torch

# With the codes aligned, what a correct graph's arithmetic leaves (docs/export.md, "How a QDQ graph
# is held to the FP tolerances": FP32 graphs 4-6e-7 relative, FP16 graphs 2.4-3.4e-4), with room.
ALIGNED_LIMIT = {"fp32": 1e-4, "fp16": 2e-3}
# The same for a state output with the codes aligned: float32 SSM states and (FP16 graph) the conv
# window stored in FP16, whose rounding alone is 2^-11 relative.
STATE_LIMIT = {"fp32": 1e-4, "fp16": 2e-3}
# How far from a rounding tie a flipped code's input may sit, in steps: FP32 last-ulp ties are a few
# 1e-5 of a step. FP16 arithmetic moves values further: on a random-init mamba-130m-shaped model a
# correct FP16 graph's codes differed from the FP32 model's by up to 2 steps (its FP32 export: 6 tie
# flips in 2 M codes, aligned error 6e-7), so an FP16 graph is allowed a few steps and no tie test.
TIE_LIMIT = {"fp32": 1e-3, "fp16": 0.5}
MAX_STEPS = {"fp32": 1, "fp16": 4}


MAX_FEEDS = 4      # the comparison holds every activation code: a few batches are enough to tell


def explain_qdq_failure(onnx_path, torch_model, feeds: list[dict], precision: str,
                        failures: list[str] = ()) -> dict:
    """{"graph_correct": bool or None, "explanation": one sentence, "codes": ..., "aligned": ...} for a
    QDQ graph against the fake-quant model it was exported from, on (the first few of) the
    validation's own feeds. It explains the logits; `failures` that name a state output are said
    to lie outside it. None: the comparison itself could not run (the reason is the explanation)."""
    try:
        result = _explain(onnx_path, torch_model, feeds[:MAX_FEEDS], precision)
    except Exception as e:  # noqa: BLE001 - an explanation must never turn a verdict into a traceback
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        return {"graph_correct": None, "explanation": "could not run the aligned-code comparison: "
                + (lines[-1] if lines else type(e).__name__)}
    states = sorted({w for f in failures for w in f.replace(",", " ").split() if w.startswith(("ssm_state_out",
                                                                                                "conv_state_out"))})
    if states:
        result["explanation"] += ". " + _states_verdict(result, states, precision)
    return result


def _states_verdict(result: dict, states: list[str], precision: str) -> str:
    """Whether the aligned comparison also covers the failing state outputs: with the graph's codes
    fed to torch, a state the graph computes right agrees within the graph's float tolerance."""
    aligned = result.get("aligned_states") or {}
    errors = {name: aligned[name] for name in states if name in aligned}
    if result.get("graph_correct") and len(errors) == len(states) and max(errors.values()) <= STATE_LIMIT[precision]:
        return (f"The failing states ({', '.join(states)}) are covered too: with the codes aligned they agree to "
                f"{max(errors.values()):.2g} relative (limit {STATE_LIMIT[precision]:g}), so they diverged with the "
                "amplified flips, not through the graph")
    beyond = {n: e for n, e in errors.items() if e > STATE_LIMIT[precision]}
    detail = (f" (with the codes aligned, {', '.join(f'{n} still differs by {e:.2g}' for n, e in sorted(beyond.items())[:3])})"
              if beyond else "")
    return f"This explains the logits; the failure at {', '.join(states)} is not covered by it{detail}"


def _explain(onnx_path, torch_model, feeds: list[dict], precision: str) -> dict:
    from ..export.aligned_codes import compare_qdq_graph
    ids = torch.from_numpy(np.concatenate([f["input_ids"] for f in feeds]).astype(np.int64))
    report = compare_qdq_graph(onnx_path, torch_model, ids)
    codes, aligned = report["codes"], report["aligned"]
    ties_only = (codes["max_code_difference"] <= MAX_STEPS[precision]
                 and codes["max_distance_from_tie"] <= TIE_LIMIT[precision])
    correct = ties_only and aligned["relative"] <= ALIGNED_LIMIT[precision]
    if correct:
        how = ("at rounding ties (each by one step, at most "
               f"{codes['max_distance_from_tie']:.2g} of a step from a tie)" if precision == "fp32" else
               f"by FP16 rounding (up to {codes['max_code_difference']:g} step{'' if codes['max_code_difference'] == 1 else 's'}; an FP32 export of the same artifact "
               "tells ties from faults that small)")
        flips = (f"{codes['differing']:,} of {codes['compared']:,} INT8 codes flipped {how} and the model amplifies "
                 "them" if codes["differing"] else "no INT8 code differs")
        text = (f"graph correct; {flips}: with ONNX Runtime's codes fed to torch the "
                f"logits agree to {aligned['relative']:.2g} relative ({100 * aligned['argmax_agreement']:.2f}% "
                "argmax). The graph computes the model's function: the failure is the model's sensitivity to "
                "one-step rounding flips (random-init weights are this sensitive, trained ones rarely), and "
                "TensorRT's rounding will move it as much; recalibrate, or compare a trained checkpoint")
    elif not ties_only:
        point, where = first_point_beyond_ties(codes, precision)
        text = (f"graph differs from the model: {codes['differing']:,} of {codes['compared']:,} INT8 codes differ, "
                f"by up to {codes['max_code_difference']:g} steps (a correct {precision} graph differs by at most "
                f"{MAX_STEPS[precision]}), first at {point} ({where['differing']:,} codes, up to "
                f"{where['max_code_difference']:g} steps): look for a wrong weight, scale or operator before that "
                "point, or a graph exported from another artifact")
    else:
        text = (f"graph differs from the model (aligned error {aligned['relative']:.3g} relative; a correct "
                f"{precision} graph stays under {ALIGNED_LIMIT[precision]:g} with the codes aligned, and its "
                f"{codes['differing']:,} differing codes are tie flips): the arithmetic between two quantizers is "
                "wrong, e.g. a scan, norm or output projection that is not the model's")
    return {"graph_correct": correct, "explanation": text, "codes": codes, "aligned": aligned,
            "aligned_states": report.get("aligned_states", {})}


def first_point_beyond_ties(codes: dict, precision: str) -> tuple[str, dict]:
    """The first activation point (in forward order) whose codes differ by more than a tie flip."""
    for point, v in codes["per_point"].items():
        if v["max_code_difference"] > MAX_STEPS[precision] or v["max_distance_from_tie"] > TIE_LIMIT[precision]:
            return point, v
    raise ValueError("no point differs beyond rounding ties")


def is_qdq_graph(onnx_path) -> bool:
    """Whether the graph quantizes activations (the case the aligned comparison explains)."""
    import onnx
    from ..export.aligned_codes import activation_quantize_outputs
    return bool(activation_quantize_outputs(onnx.load(str(onnx_path), load_external_data=False)))
