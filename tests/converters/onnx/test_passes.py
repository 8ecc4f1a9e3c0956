"""The ONNX passes, each ``apply(graph) -> (graph, changed)``, on hand-made graphs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hgqbridge.converters.onnx.flatten import held_order
from hgqbridge.converters.onnx.graph import Node, OnnxGraph, WeightProblem
from hgqbridge.converters.onnx.passes import FlattenIntoDense, FoldConstants, FuseMatMulAdd, TrackLayout
from hgqbridge.errors import LimitError
from hgqbridge.fixed import FixedFormat
from hgqbridge.limits import Limits


def _g(nodes: list[Node], consts: dict | None = None, shapes: dict | None = None, inputs: list | None = None) -> OnnxGraph:
    return OnnxGraph(
        'g', nodes, inputs or [('x', [1, 3, 4, 4])], [nodes[-1].outputs[0]], dict(consts or {}), {}, dict(shapes or {})
    )


def test_fold_constants_computes_shape_chains() -> None:
    nodes = [
        Node('Shape', 's', ('x',), ('shape',)),
        Node('Gather', 'g', ('shape', 'zero'), ('n',), {'axis': 0}),
        Node('Concat', 'c', ('n', 'minus1'), ('target',), {'axis': 0}),
        Node('Reshape', 'r', ('x', 'target'), ('y',)),
    ]
    g = _g(nodes, {'zero': np.array(0), 'minus1': np.array([-1])}, {'x': [None, 3, 4, 4]})
    folded, changed = FoldConstants().apply(g)
    assert changed and [n.op for n in folded.nodes] == ['Reshape'] and folded.consts['target'].tolist() == [1, -1]
    assert [n.op for n in g.nodes] == ['Shape', 'Gather', 'Concat', 'Reshape']  # pure


def test_fold_constants_checks_the_size_before_allocating() -> None:
    g = _g(
        [Node('Mul', 'm', ('a', 'b'), ('c',))], {'a': np.ones((1 << 12, 1), np.float32), 'b': np.ones((1, 1 << 12), np.float32)}
    )
    with pytest.raises(LimitError, match='elements'):
        FoldConstants(Limits(elements=1 << 20)).apply(g)


def test_a_weight_quantizer_becomes_a_format_or_a_problem_for_its_consumer() -> None:
    consts = {
        'w': np.array([[0.3, -0.6]], np.float32),
        's': np.float32(0.25),
        'z': np.float32(0),
        'b': np.float32(4),
        'z1': np.float32(1),
    }
    good = _g(
        [Node('Quant', 'q', ('w', 's', 'z', 'b'), ('wq',), {'signed': 1}), Node('MatMul', 'mm', ('x', 'wq'), ('y',))], consts
    )
    folded, _ = FoldConstants().apply(good)
    assert folded.formats['wq'] == FixedFormat(1, 1, 2) and folded.consts['wq'].tolist() == [[0.25, -0.5]]
    bad = _g(
        [Node('Quant', 'q', ('w', 's', 'z1', 'b'), ('wq',), {'signed': 1}), Node('MatMul', 'mm', ('x', 'wq'), ('y',))], consts
    )
    problem = FoldConstants().apply(bad)[0].formats['wq']
    assert isinstance(problem, WeightProblem) and 'zero-point' in problem.reason


def test_matmul_add_becomes_gemm() -> None:
    nodes = [Node('MatMul', 'mm', ('x', 'w'), ('h',)), Node('Add', 'add', ('h', 'b'), ('y',))]
    fused, changed = FuseMatMulAdd().apply(_g(nodes, {'w': np.ones((4, 2)), 'b': np.ones(2)}, inputs=[('x', [1, 4])]))
    assert changed and [(n.op, n.name, n.inputs) for n in fused.nodes] == [('Gemm', 'add', ('x', 'w', 'b'))]


def test_layouts_follow_transposes() -> None:
    nodes = [
        Node('Transpose', 't1', ('x',), ('xcf',), {'perm': [0, 3, 1, 2]}),
        Node('Conv', 'c', ('xcf', 'w'), ('h',)),
        Node('Transpose', 't2', ('h',), ('y',), {'perm': [0, 2, 3, 1]}),
    ]
    tracked, changed = TrackLayout().apply(_g(nodes, {'w': np.ones((2, 3, 1, 1))}, inputs=[('x', [1, 4, 4, 3])]))
    assert changed and tracked.layout['x'] == 'same' and tracked.layout['xcf'] == 'cf' and tracked.layout['h'] == 'cf'
    assert tracked.layout['y'] == 'same' and tracked.layout_change == {'xcf', 'y'}
    plain, _ = TrackLayout().apply(_g([Node('Conv', 'c', ('x', 'w'), ('y',))], {'w': np.ones((2, 3, 1, 1))}))
    assert plain.layout['x'] == 'cf'  # an NCHW input with no transpose: ONNX's own layout


def test_a_flatten_before_a_dense_layer_keeps_the_held_order_and_reorders_the_weight_rows() -> None:
    """ONNX flattens (C, H, W) = (2, 1, 3) as c, h, w; held (1, 3, 2) flattens as h, w, c: row p of the new
    weight is ONNX row order[p]; a Relu in between is passed through; a second reader of the flatten stops it."""
    w = np.arange(12, dtype=np.float32).reshape(6, 2)
    nodes = [
        Node('Flatten', 'f', ('x',), ('flat',), {'axis': 1}),
        Node('Relu', 'r', ('flat',), ('h',)),
        Node('Gemm', 'd', ('h', 'w'), ('y',)),
    ]
    shapes = {'x': [None, 2, 1, 3], 'flat': [None, 6]}
    g = _g(nodes, {'w': w}, shapes, inputs=[('x', [None, 2, 1, 3])])
    out, changed = FlattenIntoDense().apply(replace(g, layout={'x': 'cf'}))  # (as after a Conv)
    assert held_order([2, 1, 3]).tolist() == [0, 3, 1, 4, 2, 5]
    assert changed and out.nodes[0].attrs['held_order'] == 1 and out.nodes[2].inputs[1] == 'd/rows_in_held_order'
    assert out.consts['d/rows_in_held_order'].tolist() == w[[0, 3, 1, 4, 2, 5]].tolist()
    shared = _g([*nodes, Node('Relu', 'r2', ('flat',), ('z',))], {'w': w}, shapes, inputs=[('x', [None, 2, 1, 3])])
    assert not FlattenIntoDense().apply(replace(shared, layout={'x': 'cf'}))[1]
    assert not FlattenIntoDense().apply(g)[1]  # held as ONNX has it: nothing to reorder
