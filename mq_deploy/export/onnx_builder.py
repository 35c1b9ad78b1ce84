"""A small, deterministic ONNX graph builder: nodes, initializers and typed value_info by name.

Used for the main graph and for the bodies of local functions (where constants must be Constant
nodes, since a FunctionProto has no initializers). Names are unique and stable, so two exports of
the same model are byte-identical.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..deploy.contract import DOMAIN, DOMAIN_VERSION  # noqa: F401 (imported from here by the graph modules)

OPSET = 19                 # FP16 / BF16 Q-DQ scales need opset 19; TensorRT 10 parses it
IR_VERSION = 9             # function attribute defaults (attribute_proto) need IR 9
INT4_OPSET = 21            # INT4 tensors and blocked DequantizeLinear (W4A16 graphs only: TensorRT
INT4_IR_VERSION = 10       # parses opset 21 since 10.x releases that read ModelOpt's INT4 graphs)

FLOAT_TYPES = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}
NUMPY_OF = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.INT8: np.int8,
            TensorProto.INT64: np.int64, TensorProto.BOOL: np.bool_}


class GraphBuilder:
    """Collects nodes; `constants_as_nodes=True` for function bodies (no initializers there)."""

    def __init__(self, constants_as_nodes: bool = False, prefix: str = ""):
        self.prefix = prefix            # for subgraph bodies: names stay unique across nested scopes
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.value_info: dict[str, tuple[int, list]] = {}      # name -> (elem type, shape)
        self.constants_as_nodes = constants_as_nodes
        self._used: set[str] = set()
        self._const_cache: dict[tuple, str] = {}

    def unique(self, base: str, prefixed: bool = True) -> str:
        base = self.prefix + base if prefixed else base
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def node(self, op: str, inputs: list[str], outputs=1, name: str | None = None, domain: str = "", **attrs):
        """Add a node; `outputs` is a count (names derived from the node name) or a list of names.
        Returns the output name (one output) or the list of names."""
        node_name = self.unique(name or op)
        if isinstance(outputs, int):
            outputs = [self.unique(f"{node_name}_out{i}" if outputs > 1 else f"{node_name}_out", prefixed=False)
                       for i in range(outputs)]
        else:
            self._used.update(outputs)
        self.nodes.append(helper.make_node(op, inputs, outputs, name=node_name, domain=domain or None, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def typed(self, name: str, elem_type: int, shape: list) -> str:
        """Record the type of a tensor (value_info / graph I/O); returns the name."""
        self.value_info[name] = (elem_type, list(shape))
        return name

    def const(self, array: np.ndarray, name: str) -> str:
        """A constant tensor: an initializer, or a Constant node inside a function body."""
        array = np.asarray(array)
        if self.constants_as_nodes:
            return self.node("Constant", [], name=name, value=numpy_helper.from_array(array, name))
        name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(array, name))
        self.typed(name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))
        return name

    def small(self, values, dtype=np.int64) -> str:
        """A small shared constant (axes, split sizes, scalars), created once per value."""
        array = np.asarray(values, dtype=dtype)
        label = "_".join(str(v) for v in array.ravel()[:4]).replace("-", "m").replace(".", "p")
        return self.shared(array, dtype, f"const_{label or 'empty'}")

    def shared(self, values, dtype, name: str) -> str:
        """A constant created once per value and dtype and read by every node that asks for it."""
        array = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._const_cache:
            self._const_cache[key] = self.const(array, name)
        return self._const_cache[key]

    def cast(self, x: str, to: int, name: str | None = None) -> str:
        return self.node("Cast", [x], name=name or "Cast", to=to)

    def value_infos(self, exclude: set[str]) -> list[onnx.ValueInfoProto]:
        return [helper.make_tensor_value_info(n, t, s) for n, (t, s) in sorted(self.value_info.items())
                if n not in exclude]
