"""Constant folding, the first pass over an ONNX graph (``apply(graph) -> (graph, changed)``, as in ``passes.py``).

Exporters compute shapes, paddings and quantized weights with small subgraphs of constants (torch's ``F.pad``:
ConstantOfShape / Concat / Reshape / Slice / Transpose / Cast; Brevitas: Quant or Clip + DequantizeLinear on
initializers, Transpose of a quantized weight). Every such node is evaluated once with numpy, sizes checked
against ``Limits`` before numpy allocates anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem, SourceFileError
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.limits import Limits

from .graph import Node, OnnxGraph, WeightProblem
from .qonnx import bipolar_weights, po2_exponents, quant_format, quant_values

#: Ops that exporters use to compute shapes and constants; folded when every input is known.
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
    'Transpose',
    'Reshape',
    'ConstantOfShape',
    'Expand',
    'Range',
    'Where',
    'Equal',
    'Neg',
    'Clip',
)
#: Folded ops that only move a constant's values: its exact format (or weight problem) moves with them.
MOVERS = ('Transpose', 'Reshape', 'Unsqueeze', 'Squeeze', 'Identity', 'Cast')
#: Quantizers computed on the constants they quantize: the quantized constant and its exact format.
WEIGHT_QUANTIZERS = ('Quant', 'IntQuant', 'BipolarQuant', 'DequantizeLinear')
#: ONNX TensorProto data types a Cast folds to (float32 holds every float16 / bfloat16 value exactly).
CAST_FLOAT = {1: np.float32, 10: np.float16, 11: np.float64, 16: np.float32}
CAST_INT = (2, 3, 4, 5, 6, 7, 12, 13)


@dataclass(frozen=True)
class FoldConstants:
    """Every node whose inputs are all constants and whose op computes shapes (``FOLDABLE``) becomes a constant;
    a ``Quant`` / ``IntQuant`` / ``BipolarQuant`` / ``DequantizeLinear`` on a constant becomes the quantized
    constant and its exact format (or a ``WeightProblem`` its consumer reports). Sizes are checked against
    ``limits`` before numpy allocates."""

    limits: Limits = Limits()

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        consts, formats, kept = dict(g.consts), dict(g.formats), []
        for node in g.nodes:
            try:
                value = fold_constant(node, consts, g.shapes, self.limits)
            except (ValueError, IndexError, TypeError, OverflowError, ZeroDivisionError) as err:
                raise SourceFileError(
                    'a constant subgraph cannot be evaluated', where=f'{node.name} ({node.op})', received=str(err)[:200]
                ) from None
            if value is not None:
                consts[node.outputs[0]] = value
                if node.op in MOVERS and node.inputs[0] in formats:
                    formats[node.outputs[0]] = _moved(node, formats[node.inputs[0]], consts[node.inputs[0]].shape, value.shape)
                continue
            if node.op in WEIGHT_QUANTIZERS and node.inputs and all(i in consts for i in node.inputs if i):
                consts[node.outputs[0]], formats[node.outputs[0]] = _quantized_constant(node, consts)
                continue
            kept.append(node)
        changed = len(kept) != len(g.nodes)
        return replace(g, nodes=kept, consts=consts, formats=formats), changed


def _moved(node: Node, fmt: Any, shape: tuple[int, ...], out: tuple[int, ...]) -> Any:
    """A quantized constant's format after a folded Transpose / Reshape: per-element formats move with the values."""
    if not isinstance(fmt, FormatArray):
        return fmt
    k, i, f = (np.broadcast_to(np.asarray(a), shape) for a in (fmt.k, fmt.i, fmt.f))
    if node.op == 'Transpose':
        axes = node.attrs.get('perm') or None
        return FormatArray(np.transpose(k, axes), np.transpose(i, axes), np.transpose(f, axes), fmt.round, fmt.overflow)
    return FormatArray(k.reshape(out), i.reshape(out), f.reshape(out), fmt.round, fmt.overflow)


def _quantized_constant(node: Node, consts: dict[str, np.ndarray]) -> tuple[np.ndarray, Any]:
    source = consts[node.inputs[0]]
    try:
        if node.op in ('Quant', 'IntQuant'):
            fmt = quant_format(consts, list(node.inputs), node.attrs, weight=True)
            return quant_values(source, fmt), fmt
        if node.op == 'DequantizeLinear':
            return _dequantized(node, consts)
        return bipolar_weights(source, consts[node.inputs[1]])
    except LayerProblem as err:
        return source, WeightProblem(f'its weight quantizer {node.name} ({node.op}) cannot be converted: {err.reason}', err.fix)


def _dequantized(node: Node, consts: dict[str, np.ndarray]) -> tuple[np.ndarray, FixedFormat]:
    """DequantizeLinear of integer codes: ``(q - zero_point) * scale`` in float32, as onnxruntime computes it;
    with a power-of-two scale and a zero zero-point the values have an exact format (the narrowest holding them)."""
    codes, scale = consts[node.inputs[0]], consts[node.inputs[1]]
    zero = consts[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else np.zeros(())
    if np.any(zero != 0):
        raise LayerProblem(
            f'a non-zero zero-point ({np.ravel(zero)[:4]}) is not a fixed-point format', 'use zero zero-points (symmetric)'
        )
    po2_exponents(scale)
    axis = int(node.attrs.get('axis', 1))
    s = np.asarray(scale, np.float32)
    if s.size > 1:
        s = s.reshape([-1 if a == axis % codes.ndim else 1 for a in range(codes.ndim)])
    values = (codes.astype(np.float32) * s).astype(np.float32)
    return values, FixedFormat.covering(values, max_f=64, round='RND_CONV')


def _folded_size(op: str, args: list[np.ndarray | None]) -> float:
    """How many values folding would produce, computed from the shapes alone (before numpy allocates them)."""
    present = [a for a in args if a is not None]
    if op in ('Mul', 'Div', 'Add', 'Sub', 'Where', 'Equal'):
        return float(np.prod(np.broadcast_shapes(*(a.shape for a in present)), dtype=np.float64))
    if op == 'Concat':
        return float(sum(max(a.size, 1) for a in present))
    if op == 'Gather' and len(present) > 1:
        return float(present[0].size) * max(present[1].size, 1)
    if op == 'ConstantOfShape':
        return float(np.prod(np.maximum(present[0].astype(np.float64), 0)))
    if op == 'Expand':
        return float(np.prod(np.broadcast_shapes(present[0].shape, tuple(int(d) for d in present[1].ravel())), dtype=np.float64))
    if op == 'Range':
        start, limit, delta = (float(np.ravel(a)[0]) for a in present[:3])
        if delta == 0:
            raise ValueError('Range with delta 0')
        return max(np.ceil((limit - start) / delta), 0.0)
    return float(present[0].size) if present else 0.0


def fold_constant(node: Node, consts: dict[str, np.ndarray], shapes: dict, limits: Limits = Limits()) -> np.ndarray | None:
    """The value of a shape-computing node whose inputs are all known (Shape: a static input shape, batch 1)."""
    if node.op not in FOLDABLE or len(node.outputs) != 1:
        return None
    if node.op == 'Shape':
        dims = shapes.get(node.inputs[0]) if node.inputs[0] not in consts else list(consts[node.inputs[0]].shape)
        if not dims or any(d is None for d in dims[1:]):
            return None
        return np.array([1 if d is None else d for d in dims], dtype=np.int64)
    known = [consts.get(i) if i else None for i in node.inputs]
    if not known or known[0] is None or any(a is None for a, name in zip(known, node.inputs) if name):
        return None
    args: list[Any] = known  # every input that is given is a constant now
    limits.check('elements', _folded_size(node.op, args), f'folding the constant {node.outputs[0]!r} ({node.op})', node.name)
    return _evaluate(node.op, node.attrs, args)


def _evaluate(op: str, attrs: dict[str, Any], args: list[Any]) -> np.ndarray:
    a = args[0]
    if op == 'Gather':
        return np.take(a, args[1].astype(np.int64), axis=int(attrs.get('axis', 0)))
    if op == 'Identity':
        return a
    if op == 'Cast':
        to = int(attrs.get('to', 1))
        if to in CAST_FLOAT:
            return np.asarray(a).astype(CAST_FLOAT[to]).astype(np.float32)
        return np.asarray(a).astype(np.int64) if to in CAST_INT else np.asarray(a).astype(bool)
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
    if op == 'Transpose':
        return np.transpose(a, attrs.get('perm') or None)
    if op == 'Reshape':
        target = [int(d) for d in args[1].ravel()]
        allowzero = int(attrs.get('allowzero', 0))
        return a.reshape([a.shape[k] if d == 0 and not allowzero else d for k, d in enumerate(target)])
    if op == 'ConstantOfShape':
        fill = np.asarray(attrs['value']).ravel()[0] if 'value' in attrs else np.float32(0)
        return np.full([int(d) for d in a.ravel()], fill)
    if op == 'Expand':
        return a * np.ones([int(d) for d in args[1].ravel()], dtype=a.dtype)
    if op == 'Range':
        return np.arange(a.ravel()[0], args[1].ravel()[0], args[2].ravel()[0])
    if op == 'Where':
        return np.where(a.astype(bool), args[1], args[2])
    if op == 'Neg':
        return -a
    if op == 'Clip':
        low = args[1] if len(args) > 1 and args[1] is not None else attrs.get('min')
        high = args[2] if len(args) > 2 and args[2] is not None else attrs.get('max')
        return np.clip(a, low, high)
    b = args[1]
    if op == 'Equal':
        return np.equal(a, b)
    return {'Mul': np.multiply, 'Div': np.floor_divide if a.dtype.kind in 'iu' else np.divide, 'Add': np.add, 'Sub': np.subtract}[
        op
    ](a, b)
