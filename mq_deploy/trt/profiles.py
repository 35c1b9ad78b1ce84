"""Optimization profiles (min/opt/max shape per input) for the engines, from manifest.json and the
user's --min/--opt/--max (trtexec syntax: `input_ids:1x1,conv_state.0:1x384x3`). Pure logic: no
TensorRT import, so every mistake is reported before a build starts.

The exported graphs have two symbolic dims, `batch` and `seqlen` (docs/export.md). A profile is a
range for each symbol; every input's shape follows from it, so the prefill and the decode graph
get the same batch range and the decode graph keeps seqlen 1 wherever the graph fixes it. User
shapes are read against the graph that has that input name (the --onnx graph first) and set the
ranges of the symbols at their positions; fixed dims must repeat the graph's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import MQDeployError


@dataclass(frozen=True)
class DimRange:
    min: int
    opt: int
    max: int


# Used when the manifest has no batch_max / seq_max (export --batch-max / --seq-max); docs/tensorrt.md.
DEFAULT_BATCH = DimRange(1, 1, 8)
DEFAULT_SEQLEN = DimRange(1, 512, 2048)
SELECTORS = ("min", "opt", "max")
EXAMPLE = "input_ids:1x1,conv_state.0:1x384x3"


@dataclass(frozen=True)
class InputProfile:
    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def parse_shape_option(text, option: str = "--shapes") -> dict[str, tuple[int, ...]]:
    """'name:1x2x3,other:4x5' -> {'name': (1, 2, 3), 'other': (4, 5)}. A dict of name -> dims passes
    through (checked). Names may be quoted as in trtexec ('input_ids':1x1)."""
    if text is None:
        return {}
    if isinstance(text, dict):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(","):
            name, sep, dims = part.strip().rpartition(":")
            name = name.strip().strip("'\"")
            if not sep or not name or not re.fullmatch(r"\d+(x\d+)*", dims.strip()):
                raise MQDeployError(f"{option} {text!r}: {part.strip()!r} is not NAME:DIMS with DIMS like 1x512; "
                                    f"write e.g. {option} {EXAMPLE}")
            items.append((name, [int(d) for d in dims.strip().split("x")]))
    shapes: dict[str, tuple[int, ...]] = {}
    for name, dims in items:
        if name in shapes:
            raise MQDeployError(f"{option} gives {name} twice; give each input once")
        dims = tuple(int(d) for d in dims)
        if any(d < 1 for d in dims):
            raise MQDeployError(f"{option} {name}:{'x'.join(map(str, dims))}: every dim must be at least 1")
        shapes[name] = dims
    return shapes


def default_ranges(manifest: dict) -> dict[str, DimRange]:
    """batch and seqlen ranges from the manifest's profile (export --batch-max/--seq-max), else the defaults."""
    profile = manifest.get("profile") or {}
    ranges = {}
    for symbol, default, key in (("batch", DEFAULT_BATCH, "batch_max"), ("seqlen", DEFAULT_SEQLEN, "seq_max")):
        top = profile.get(key) or default.max
        ranges[symbol] = DimRange(1, min(default.opt, top), top)
    return ranges


def _graph_inputs(manifest: dict, kind: str) -> list[dict]:
    return manifest["graphs"][kind]["inputs"]


def _find_input(manifest: dict, kinds: list[str], name: str) -> dict:
    for kind in kinds:
        for entry in _graph_inputs(manifest, kind):
            if entry["name"] == name:
                return entry
    known = sorted({e["name"] for kind in kinds for e in _graph_inputs(manifest, kind)})
    raise MQDeployError(f"unknown input {name!r} in the shape options; the graphs' inputs are: {', '.join(known)}")


def resolve_ranges(manifest: dict, kinds: list[str], min_shapes=None, opt_shapes=None,
                   max_shapes=None) -> dict[str, DimRange]:
    """Symbol ranges (batch, seqlen) for the graphs `kinds` (the --onnx graph first): the manifest's
    defaults overridden by the user's --min/--opt/--max. Raises one MQDeployError per mistake."""
    given = {sel: parse_shape_option(text, f"--{sel}")
             for sel, text in zip(SELECTORS, (min_shapes, opt_shapes, max_shapes))}
    from_user: dict[str, dict[str, tuple[int, str]]] = {}    # symbol -> selector -> (value, input name)
    for sel, shapes in given.items():
        for name, dims in shapes.items():
            entry = _find_input(manifest, kinds, name)
            graph_shape = entry["shape"]
            if len(dims) != len(graph_shape):
                raise MQDeployError(f"--{sel} {name}:{'x'.join(map(str, dims))} has {len(dims)} dims but {name} is "
                                    f"[{', '.join(map(str, graph_shape))}]; give {len(graph_shape)} dims")
            for axis, (value, dim) in enumerate(zip(dims, graph_shape)):
                if isinstance(dim, int):
                    if value != dim:
                        raise MQDeployError(f"--{sel} {name}: dim {axis} is fixed at {dim} in the graph, not {value}; "
                                            f"write {dim} there")
                    continue
                seen = from_user.setdefault(dim, {}).get(sel)
                if seen is not None and seen[0] != value:
                    raise MQDeployError(f"--{sel} gives {dim} = {seen[0]} for {seen[1]} but {value} for {name}; "
                                        f"every input must agree on {dim}")
                from_user[dim][sel] = (value, name)
    ranges = default_ranges(manifest)
    for symbol, values in from_user.items():
        base = ranges.get(symbol)
        if base is None:
            if len(values) < 3:
                raise MQDeployError(f"dim {symbol!r} has no default range; give it in all of --min, --opt and --max")
            base = DimRange(*(values[sel][0] for sel in SELECTORS))
        lo = values["min"][0] if "min" in values else base.min
        hi = values["max"][0] if "max" in values else max(base.max, lo)
        mid = values["opt"][0] if "opt" in values else clamp(base.opt, lo, hi)
        if not lo <= mid <= hi:
            raise MQDeployError(f"{symbol} needs min <= opt <= max, got min {lo}, opt {mid}, max {hi} (from "
                                f"--min/--opt/--max, else the defaults {base.min}/{base.opt}/{base.max}); "
                                "fix the shape options")
        ranges[symbol] = DimRange(lo, mid, hi)
    return ranges


def clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(value, hi))


def graph_profile(manifest: dict, kind: str, ranges: dict[str, DimRange]) -> list[InputProfile]:
    """The min/opt/max shape of every input of graph `kind` under the symbol ranges."""
    profile = []
    for entry in _graph_inputs(manifest, kind):
        shapes = []
        for sel in SELECTORS:
            dims = []
            for dim in entry["shape"]:
                if isinstance(dim, int):
                    dims.append(dim)
                elif dim in ranges:
                    dims.append(getattr(ranges[dim], sel))
                else:
                    raise MQDeployError(f"input {entry['name']} of the {kind} graph has a dim {dim!r} without a range; "
                                        f"give it with --min/--opt/--max")
            shapes.append(tuple(dims))
        profile.append(InputProfile(entry["name"], *shapes))
    return profile


def build_profiles(manifest: dict, kinds: list[str], min_shapes=None, opt_shapes=None,
                   max_shapes=None) -> dict[str, list[InputProfile]]:
    """One profile per graph kind ('prefill', 'decode'), all from the same symbol ranges."""
    ranges = resolve_ranges(manifest, kinds, min_shapes, opt_shapes, max_shapes)
    return {kind: graph_profile(manifest, kind, ranges) for kind in kinds}


def format_profile(profile: list[InputProfile]) -> str:
    """'input_ids 1x1 / 1x512 / 8x2048' (the first input: the one a user sizes)."""
    if not profile:
        return "static shapes"
    p = profile[0]
    return f"{p.name} " + " / ".join("x".join(map(str, s)) for s in (p.min, p.opt, p.max))
