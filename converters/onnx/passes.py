"""Passes over an ONNX graph, each ``apply(graph) -> (graph, changed)``: constant folding (with the QONNX weight
quantizers computed on the constants they quantize), MatMul + Add fusion, and layout tracking. They run in that
order; each docstring states what it guarantees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.limits import Limits

from .graph import Node, OnnxGraph, WeightProblem
from .qonnx import bipolar_weights, quant_format, quant_values


@dataclass(frozen=True)
class FoldConstants:
    """Every node whose inputs are all constants and whose op computes shapes (``FOLDABLE``) becomes a constant;
    a ``Quant`` / ``IntQuant`` / ``BipolarQuant`` on a constant becomes the quantized constant and its exact format
    (or a ``WeightProblem`` its consumer reports). Sizes are checked against ``limits`` before numpy allocates."""

    limits: Limits = Limits()

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        consts, formats, kept = dict(g.consts), dict(g.formats), []
        for node in g.nodes:
            try:
                value = fold_constant(node, consts, g.shapes, self.limits)
            except (ValueError, IndexError, TypeError, OverflowError) as err:
                from hgqbridge.errors import SourceFileError

                raise SourceFileError(
                    'a constant subgraph cannot be evaluated', where=f'{node.name} ({node.op})', received=str(err)[:200]
                ) from None
            if value is not None:
                consts[node.outputs[0]] = value
                continue
            if node.op in ('Quant', 'IntQuant', 'BipolarQuant') and node.inputs and all(i in consts for i in node.inputs if i):
                consts[node.outputs[0]], formats[node.outputs[0]] = _quantized_constant(node, consts)
                continue
            kept.append(node)
        changed = len(kept) != len(g.nodes)
        return replace(g, nodes=kept, consts=consts, formats=formats), changed


def _quantized_constant(node: Node, consts: dict[str, np.ndarray]) -> tuple[np.ndarray, Any]:
    source = consts[node.inputs[0]]
    try:
        if node.op in ('Quant', 'IntQuant'):
            fmt = quant_format(consts, list(node.inputs), node.attrs, weight=True)
            return quant_values(source, fmt), fmt
        return bipolar_weights(source, consts[node.inputs[1]])
    except LayerProblem as err:
        return source, WeightProblem(f'its weight quantizer {node.name} ({node.op}) cannot be converted: {err.reason}', err.fix)


@dataclass(frozen=True)
class FuseMatMulAdd:
    """MatMul(x, W) followed by Add(that, b), with W and b constant and the MatMul's output read by the Add only:
    one Gemm named after the Add (the values are unchanged: Gemm computes x W + b)."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        users = g.users()
        adds = {node.inputs[0]: node for node in g.nodes if node.op == 'Add' and len(node.inputs) == 2}
        out, fused = [], set()
        for node in g.nodes:
            if node.name in fused:
                continue
            add = adds.get(node.outputs[0]) if node.op == 'MatMul' else None
            if add is not None and node.inputs[1] in g.consts and add.inputs[1] in g.consts and users.get(node.outputs[0]) == 1:
                out.append(Node('Gemm', add.name, (node.inputs[0], node.inputs[1], add.inputs[1]), add.outputs))
                fused.add(add.name)
                continue
            out.append(node)
        return replace(g, nodes=out), bool(fused)


@dataclass(frozen=True)
class TrackLayout:
    """Which tensors are ONNX channels-first (``'cf'``: held channels-last in the HGQ2 model) and which Transposes
    only change the layout (tf2onnx's pairs around convolutions: removed). A graph input of rank 3 or 4 is
    channels-first unless every consumer transposes it to channels-first (a channels-last Keras export)."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        layout: dict[str, str] = {}
        changes: set[str] = set()
        consumers: dict[str, list[Node]] = {}
        for node in g.nodes:
            for tensor in node.inputs:
                consumers.setdefault(tensor, []).append(node)
        for name, dims in g.inputs:
            to_cf = [
                n.op == 'Transpose' and list(n.attrs.get('perm', [])) == to_channels_first(len(dims))
                for n in consumers.get(name, [])
            ]
            layout[name] = 'same' if len(dims) not in (3, 4) or (to_cf and all(to_cf)) else 'cf'
        for node in g.nodes:
            first = next((t for t in node.inputs if t and t not in g.consts), None)
            lay = layout.get(first, 'same') if first else 'same'
            out_layout = lay
            if node.op == 'Transpose':
                perm = list(node.attrs.get('perm', []))
                if lay == 'same' and perm == to_channels_first(len(perm)):
                    out_layout = 'cf'
                    changes.add(node.outputs[0])
                elif lay == 'cf' and perm == to_channels_last(len(perm)):
                    out_layout = 'same'
                    changes.add(node.outputs[0])
            for out in node.outputs:
                layout[out] = out_layout
        return replace(g, layout=layout, layout_change=changes), bool(changes)


#: Ops that exporters use to compute shapes; folded to constants when every input is known.
FOLDABLE = (
    'Shape',
    'Gather',
    'Cast',
    'Slice',
    'Concat',
    'Unsqueeze',
    'Squeeze',
    'Mul',
    'Div',
    'Add',
    'Sub',
    'ReduceProd',
    'Identity',
)


def _folded_size(op: str, args: list[np.ndarray | None]) -> float:
    """How many values folding would produce, computed from the shapes alone (before numpy allocates them)."""
    present = [a for a in args if a is not None]
    if op in ('Mul', 'Div', 'Add', 'Sub'):
        return float(np.prod(np.broadcast_shapes(*(a.shape for a in present)), dtype=np.float64))
    if op == 'Concat':
        return float(sum(max(a.size, 1) for a in present))
    if op == 'Gather' and len(present) > 1:
        return float(present[0].size) * max(present[1].size, 1)
    return float(present[0].size) if present else 0.0


def fold_constant(node: Node, consts: dict[str, np.ndarray], shapes: dict, limits: Limits = Limits()) -> np.ndarray | None:
    """The value of a shape-computing node whose inputs are all known (Shape: a static input shape, batch 1)."""
    attrs = node.attrs
    if node.op not in FOLDABLE or len(node.outputs) != 1:
        return None
    if node.op == 'Shape':
        dims = shapes.get(node.inputs[0])
        if not dims or any(d is None for d in dims[1:]):
            return None
        return np.array([1 if d is None else d for d in dims], dtype=np.int64)
    known = [consts.get(i) if i else None for i in node.inputs]
    if not known or known[0] is None or any(a is None for a, name in zip(known, node.inputs) if name):
        return None
    args: list[Any] = known  # every input that is given is a constant now
    a = args[0]
    op = node.op
    limits.check('elements', _folded_size(op, args), f'folding the constant {node.outputs[0]!r} ({op})', node.name or op)
    if op == 'Gather':
        return np.take(a, args[1].astype(np.int64), axis=int(attrs.get('axis', 0)))
    if op == 'Cast' or op == 'Identity':
        return a
    if op == 'Slice':
        starts, ends = args[1].astype(np.int64), args[2].astype(np.int64)
        axes = args[3].astype(np.int64) if len(args) > 3 and args[3] is not None else np.arange(len(starts))
        steps = args[4].astype(np.int64) if len(args) > 4 and args[4] is not None else np.ones_like(starts)
        index = [slice(None)] * a.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            index[int(ax)] = slice(int(max(min(s, 2**62), -(2**62))), int(max(min(e, 2**62), -(2**62))), int(st))
        return a[tuple(index)]
    if op == 'Concat':
        return np.concatenate([np.atleast_1d(x) for x in args], axis=int(attrs.get('axis', 0)))
    if op in ('Unsqueeze', 'Squeeze'):
        dims = tuple(int(x) for x in (args[1] if len(args) > 1 and args[1] is not None else attrs.get('axes', [])))
        return np.expand_dims(a, dims) if op == 'Unsqueeze' else np.squeeze(a, dims or None)
    if op == 'ReduceProd':
        return np.prod(a, keepdims=bool(attrs.get('keepdims', 1)))
    b = args[1]
    return {'Mul': np.multiply, 'Div': np.floor_divide if a.dtype.kind in 'iu' else np.divide, 'Add': np.add, 'Sub': np.subtract}[
        op
    ](a, b)


def to_channels_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def to_channels_last(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]
