"""The last pass over an ONNX graph (``apply(graph) -> (graph, changed)``, as in ``passes.py``): a flatten of a
channels-first tensor that feeds a dense layer needs no Permute.

ONNX flattens (N, C, H, W) in the order c, h, w; the HGQ2 model holds the tensor as (N, H, W, C), so a plain
Flatten gives the order h, w, c, and the converted model would need a Permute back first (which da4ml and hls4ml
cannot deploy). When the flattened values reach only the weight rows of a Gemm / MatMul, reordering those rows
instead computes the same products: row ``p`` of the new weight is row ``order[p]`` of the old one, where held
position ``p`` holds ONNX position ``order[p]``. Only the order of the terms of each sum changes: float graphs stay
within float32 rounding, quantized ones (whose sums of fixed-point products are exact in float32) stay bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hgqbridge.fixed import FormatArray

from .graph import Node, OnnxGraph

#: Ops between the flatten and the dense layer that act on each value alone (their constants must be scalars).
VALUEWISE = (
    'Quant',
    'IntQuant',
    'BipolarQuant',
    'QuantizeLinear',
    'Relu',
    'LeakyRelu',
    'Clip',
    'Sigmoid',
    'Tanh',
    'Selu',
    'Identity',
    'Dropout',
    'Cast',
)


def held_order(shape: list[int]) -> np.ndarray:
    """For a channels-first shape (C, *spatial) held channels-last: the ONNX flat index of each held flat index."""
    rank = len(shape)
    return np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape).transpose(*range(1, rank), 0).ravel()


@dataclass(frozen=True)
class FlattenIntoDense:
    """A Flatten (axis 1) or flattening Reshape of a ``'cf'`` tensor whose output reaches, through single-consumer
    value-wise ops with scalar constants and no graph output on the way, only the data input of a Gemm (transA 0)
    or MatMul with a constant 2-D weight: the flatten gets ``held_order=1`` (its handler flattens the held tensor
    as it is) and the dense layer reads a copy of its weight with the rows reordered (``<node>/rows_in_held_order``),
    its exact per-element format reordered with it."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        users: dict[str, list[Node]] = {}
        for node in g.nodes:
            for tensor in node.inputs:
                users.setdefault(tensor, []).append(node)
        consts, formats, new = dict(g.consts), dict(g.formats), {}
        for node in g.nodes:
            shape = g.shapes.get(node.inputs[0]) if node.inputs else None
            out = g.shapes.get(node.outputs[0])
            if not self._flattens(node, g, shape, out) or shape is None:
                continue
            dense = self._dense_after(node.outputs[0], g, users)
            if dense is None or dense.name in new:
                continue
            weight = dense.inputs[1]
            axis = 1 if dense.op == 'Gemm' and dense.attrs.get('transB', 0) else 0
            value = np.asarray(consts[weight])
            order = held_order([int(d or 0) for d in shape[1:]])  # (every size is known: _flattens)
            if value.ndim != 2 or value.shape[axis] != order.size:
                continue
            name = f'{dense.name}/rows_in_held_order'
            consts[name] = np.take(value, order, axis=axis)
            fmt = formats.get(weight)
            if isinstance(fmt, FormatArray):
                k, i, f = (np.take(np.broadcast_to(np.asarray(a), value.shape), order, axis=axis) for a in (fmt.k, fmt.i, fmt.f))
                fmt = FormatArray(k, i, f, fmt.round, fmt.overflow)
            if fmt is not None:
                formats[name] = fmt
            new[dense.name] = replace(dense, inputs=(dense.inputs[0], name, *dense.inputs[2:]))
            new[node.name] = replace(node, attrs={**node.attrs, 'held_order': 1})
        nodes = [new.get(n.name, n) for n in g.nodes]
        return replace(g, nodes=nodes, consts=consts, formats=formats), bool(new)

    @staticmethod
    def _flattens(node: Node, g: OnnxGraph, shape: list | None, out: list | None) -> bool:
        if node.op not in ('Flatten', 'Reshape') or (node.op == 'Flatten' and int(node.attrs.get('axis', 1)) != 1):
            return False
        if not shape or len(shape) not in (3, 4) or None in shape[1:] or g.layout.get(node.inputs[0]) != 'cf':
            return False
        return out is not None and len(out) == 2 and out[1] == int(np.prod(shape[1:], dtype=np.int64))

    @staticmethod
    def _dense_after(tensor: str, g: OnnxGraph, users: dict[str, list[Node]]) -> Node | None:
        outputs = set(g.outputs)
        while True:
            found = users.get(tensor, [])
            if len(found) != 1 or tensor in outputs:
                return None
            node = found[0]
            if node.op in ('Gemm', 'MatMul') and node.inputs[0] == tensor and len(node.inputs) > 1:
                plain = node.op == 'MatMul' or not node.attrs.get('transA', 0)
                return node if plain and node.inputs[1] in g.consts else None
            scalars = all(np.size(g.consts[i]) == 1 for i in node.inputs if i in g.consts)
            computed = [i for i in node.inputs if i and i not in g.consts]
            if node.op not in VALUEWISE or computed != [tensor] or not scalars:
                return None
            tensor = node.outputs[0]
