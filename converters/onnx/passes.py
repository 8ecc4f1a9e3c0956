"""Passes over an ONNX graph, each ``apply(graph) -> (graph, changed)``, run in the order of ``PIPELINE``:
constant folding (``fold.py``), transposes of the batch axis cancelled, QuantizeLinear / DequantizeLinear pairs
fused, MatMul + Add fused, chains of reshapes merged, layout tracking, and flattens before a dense layer that keep
the held order (``flatten.py``). Each docstring states what it guarantees; none changes what the graph computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from .flatten import FlattenIntoDense
from .fold import FoldConstants
from .graph import Node, OnnxGraph
from .layout import RESHAPES, reshape_out_shape, to_channels_first, to_channels_last, unit_reshape_compatible

#: Ops whose output has its input's shape and layout and that commute with a transpose (no axis attribute).
ELEMENTWISE = (
    'Quant',
    'IntQuant',
    'BipolarQuant',
    'QuantizeLinear',
    'DequantizeLinear',
    'Relu',
    'LeakyRelu',
    'Clip',
    'Sigmoid',
    'Tanh',
    'Selu',
    'Identity',
    'Dropout',
    'Cast',
    'Mul',
    'Add',
    'Sub',
    'Div',
)
#: Standard ops that read ONNX channels-first tensors (axis 1 is the channel axis).
CHANNELS_FIRST = ('Conv', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Resize', 'Upsample')
#: Ops that keep their input's axes (and so its layout) without caring which is the channel axis.
LAYOUT_KEEPING = ('Pad', 'Concat', 'Sum')
CHANNELS_LAST_DOMAIN = 'qonnx.custom_op.channels_last:'
__all__ = [
    'PIPELINE',
    'CancelTransposes',
    'FlattenIntoDense',
    'InferShapes',
    'FoldConstants',
    'FuseMatMulAdd',
    'FuseQDQ',
    'MergeReshapes',
    'TrackLayout',
]


def _consumers(g: OnnxGraph) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {}
    for node in g.nodes:
        for tensor in node.inputs:
            out.setdefault(tensor, []).append(node)
    return out


def _computed(node: Node, g: OnnxGraph) -> list[str]:
    return [t for t in node.inputs if t and t not in g.consts]


def _rank(g: OnnxGraph, tensor: str) -> int | None:
    if tensor in g.consts:
        return int(np.ndim(g.consts[tensor]))
    shape = g.shapes.get(tensor)
    return len(shape) if shape else None


@dataclass(frozen=True)
class InferShapes:
    """Every tensor whose shape ONNX's shape inference could not give from the file (one computed from a folded
    subgraph, e.g. torch's ``F.pad``) gets it now, by ONNX's own shape inference on the folded graph: small and
    integer constants as initializers, weights as inputs of their shape (their values are not needed), QONNX
    quantizers as the Identity they are shape-wise; qonnx's channels-last ops keep the shapes the file gives.
    Shapes already known are never changed."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        used = {t for n in g.nodes for t in n.inputs if t}
        small = {t: v for t, v in g.consts.items() if t in used and (np.asarray(v).dtype.kind in 'iub' or np.size(v) <= 64)}
        weights = [
            helper.make_tensor_value_info(t, TensorProto.FLOAT, list(np.shape(v)))
            for t, v in g.consts.items()
            if t in used and t not in small
        ]
        nodes = []
        for n in g.nodes:
            if ':' in n.op:
                continue
            if n.op in ('Quant', 'IntQuant', 'BipolarQuant', 'Trunc') or n.attrs.get('dequantized'):
                nodes.append(helper.make_node('Identity', [n.inputs[0]], [n.outputs[0]]))
            else:
                attrs = {k: v for k, v in n.attrs.items() if not isinstance(v, np.ndarray)}
                nodes.append(helper.make_node(n.op, list(n.inputs), list(n.outputs), **attrs))
        inputs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, dims) for t, dims in g.inputs] + weights
        inits = [numpy_helper.from_array(np.asarray(v), t) for t, v in small.items()]
        known = [helper.make_tensor_value_info(t, TensorProto.FLOAT, d) for t, d in g.shapes.items() if d and t not in g.consts]
        graph = helper.make_graph(nodes, 'g', inputs, [], inits, value_info=known)
        try:
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', g.opset)])
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # inference is best effort: the handlers ask for shapes they need
            return g, False
        shapes = dict(g.shapes)
        for info in inferred.graph.value_info:
            dims = [d.dim_value if d.HasField('dim_value') else None for d in info.type.tensor_type.shape.dim]
            old = shapes.get(info.name)
            if not info.type.tensor_type.HasField('shape') or info.name in g.consts:
                continue
            if not old:
                shapes[info.name] = dims
            elif len(old) == len(dims):  # a dimension unknown before is filled in; a known one stays
                shapes[info.name] = [o if o is not None else d for o, d in zip(old, dims)]
        return replace(g, shapes=shapes), shapes != g.shapes


@dataclass(frozen=True)
class CancelTransposes:
    """Every Transpose gets its explicit ``perm`` (ONNX's default reverses the axes). Transposes that move the
    batch axis, which a Keras model cannot do, are cancelled where the graph computes the same without them:
    ``Transpose([1, 0]) -> Gemm(transA=1)`` becomes ``Gemm(transA=0)`` on the untransposed input;
    ``Transpose([1, 0]) -> MatMul(C, .) -> Transpose([1, 0])`` becomes ``MatMul(., C^T)``; and two transposes
    that compose to the identity around single-consumer unary elementwise ops are removed (the last op writes the
    second transpose's tensor, the ops in between get new tensor names: their values are transposed)."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        nodes = []
        for node in g.nodes:
            rank = _rank(g, node.inputs[0]) if node.inputs else None
            if node.op == 'Transpose' and 'perm' not in node.attrs and rank is not None:
                node = replace(node, attrs={**node.attrs, 'perm': list(range(rank))[::-1]})
            nodes.append(node)
        g = replace(g, nodes=nodes)
        consts, changed = dict(g.consts), False
        while True:
            rewrite = next(self._rewrites(g, consts), None)
            if rewrite is None:
                break
            drop, new = rewrite
            g = replace(g, nodes=[new.get(n.name, n) for n in g.nodes if n.name not in drop or n.name in new], consts=consts)
            changed = True
        return g, changed

    def _rewrites(self, g: OnnxGraph, consts: dict) -> Iterator[tuple[set[str], dict[str, Node]]]:
        users = _consumers(g)
        outputs = set(g.outputs)

        def only(tensor: str) -> Node | None:
            found = users.get(tensor, [])
            return found[0] if len(found) == 1 and tensor not in outputs else None

        for t in g.nodes:
            if t.op != 'Transpose' or not t.inputs or t.inputs[0] in g.consts:
                continue
            p = list(t.attrs.get('perm', []))
            nxt = only(t.outputs[0])
            if nxt is None:
                continue
            if p == [1, 0] and nxt.op == 'Gemm' and nxt.inputs[0] == t.outputs[0] and nxt.attrs.get('transA', 0):
                yield {t.name}, {nxt.name: replace(nxt, inputs=(t.inputs[0], *nxt.inputs[1:]), attrs={**nxt.attrs, 'transA': 0})}
                return
            if p == [1, 0] and nxt.op == 'MatMul' and nxt.inputs[0] in g.consts and nxt.inputs[1] == t.outputs[0]:
                back = only(nxt.outputs[0])
                if back is not None and back.op == 'Transpose' and list(back.attrs.get('perm', [])) == [1, 0]:
                    name = f'{nxt.name}/transposed_weight'
                    consts[name] = np.ascontiguousarray(np.asarray(g.consts[nxt.inputs[0]]).T)
                    yield {t.name, back.name}, {nxt.name: replace(nxt, inputs=(t.inputs[0], name), outputs=back.outputs)}
                    return
            chain: list[Node] = []
            cur: Node | None = nxt
            while cur is not None and cur.op in ELEMENTWISE and len(_computed(cur, g)) == 1 and _scalar_consts(cur, g):
                chain.append(cur)
                cur = only(cur.outputs[0])
            if chain and cur is not None and cur.op == 'Transpose':
                q = list(cur.attrs.get('perm', []))
                if len(q) == len(p) and [p[a] for a in q] == list(range(len(p))):
                    yield {t.name, cur.name}, _unchained(chain, t, cur)
                    return


def _scalar_consts(node: Node, g: OnnxGraph) -> bool:
    return all(np.size(g.consts[i]) == 1 for i in node.inputs if i in g.consts)


def _unchained(chain: list[Node], first: Node, last: Node) -> dict[str, Node]:
    new, source = {}, first.inputs[0]
    for k, node in enumerate(chain):
        out = last.outputs[0] if k == len(chain) - 1 else f'{node.outputs[0]}#untransposed'
        inputs = tuple(source if i == (first.outputs[0] if k == 0 else chain[k - 1].outputs[0]) else i for i in node.inputs)
        new[node.name] = replace(node, inputs=inputs, outputs=(out, *node.outputs[1:]))
        source = out
    return new


@dataclass(frozen=True)
class FuseQDQ:
    """``QuantizeLinear(x, s, z) -> [Clip(lo, hi)] -> DequantizeLinear(., s, z)`` on a computed tensor, each
    intermediate read by the next only, becomes one ``QuantizeLinear`` node (the first's name, the last's output)
    with ``dequantized=1``, ``clip=[lo, hi]`` (or none) and ``zero_point_type`` (the integer type of ``z``;
    uint8 when absent). Pairs whose scale or zero-point differ are left alone (their handlers refuse them)."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        users, fused, drop = _consumers(g), {}, set()
        for q in g.nodes:
            if q.op != 'QuantizeLinear' or not q.inputs or q.inputs[0] in g.consts:
                continue
            nxt = users.get(q.outputs[0], [])
            clip = None
            if len(nxt) == 1 and nxt[0].op == 'Clip' and (bounds := _clip_bounds(nxt[0], g)) is not None:
                clip, mid = bounds, nxt[0]
                nxt = users.get(mid.outputs[0], [])
            dq = nxt[0] if len(nxt) == 1 and nxt[0].op == 'DequantizeLinear' else None
            if dq is None or not _same_params(q, dq, g) or {q.outputs[0]} & set(g.outputs):
                continue
            zero = q.inputs[2] if len(q.inputs) > 2 and q.inputs[2] else ''
            attrs = {**q.attrs, 'dequantized': 1, 'clip': clip, 'zero_point_type': g.dtypes.get(zero, 'uint8')}
            fused[q.name] = replace(q, outputs=dq.outputs, attrs=attrs)
            drop |= {dq.name} | ({mid.name} if clip is not None else set())
        nodes = [fused.get(n.name, n) for n in g.nodes if n.name not in drop]
        return replace(g, nodes=nodes), bool(fused)


def _clip_bounds(node: Node, g: OnnxGraph) -> list[float] | None:
    low = g.consts.get(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else node.attrs.get('min')
    high = g.consts.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else node.attrs.get('max')
    if any(len(node.inputs) > k and node.inputs[k] and node.inputs[k] not in g.consts for k in (1, 2)):
        return None
    return [float(np.ravel(low)[0]) if low is not None else -np.inf, float(np.ravel(high)[0]) if high is not None else np.inf]


def _same_params(q: Node, dq: Node, g: OnnxGraph) -> bool:
    def value(node: Node, k: int) -> np.ndarray | None:
        return g.consts.get(node.inputs[k]) if len(node.inputs) > k and node.inputs[k] else np.zeros(())

    pairs = [(value(q, k), value(dq, k)) for k in (1, 2)]
    return all(a is not None and b is not None and np.array_equal(np.ravel(a), np.ravel(b)) for a, b in pairs)


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
class MergeReshapes:
    """Every Reshape / Unsqueeze / Squeeze / Flatten output gets its static shape (batch symbolic) in
    ``graph.shapes`` when its constant inputs fix it; and such a node whose input is another one's output, read
    by it alone, replaces both by one Reshape to its shape (tf2onnx's ``Unsqueeze`` + ``Reshape`` around a
    1-D pooling), so that no intermediate tensor needs a layout of its own."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        shapes, consts = dict(g.shapes), dict(g.consts)
        producer = {o: n for n in g.nodes for o in n.outputs}
        users, drop = _consumers(g), set()
        new: dict[str, Node] = {}
        for node in g.nodes:
            if node.op not in RESHAPES or not node.inputs or node.inputs[0] in g.consts:
                continue
            source = new.get(producer[node.inputs[0]].name, producer[node.inputs[0]]) if node.inputs[0] in producer else None
            in_shape = shapes.get(node.inputs[0])
            out = reshape_out_shape(node, in_shape, consts) if in_shape else None
            if out is not None:
                shapes[node.outputs[0]] = out
            merge = source is not None and source.op in RESHAPES and len(users.get(node.inputs[0], [])) == 1
            if merge and out is not None and node.inputs[0] not in g.outputs and source is not None:
                target = f'{node.name}/merged_shape'
                consts[target] = np.array([-1 if d is None else d for d in out], dtype=np.int64)
                new[node.name] = Node('Reshape', node.name, (source.inputs[0], target), node.outputs, {}, node.domain)
                drop.add(source.name)
        nodes = [new.get(n.name, n) for n in g.nodes if n.name not in drop]
        return replace(g, nodes=nodes, shapes=shapes, consts=consts), bool(drop)


@dataclass(frozen=True)
class TrackLayout:
    """Which tensors are ONNX channels-first (``'cf'``: held channels-last in the HGQ2 model) and which Transposes
    only change the layout (tf2onnx's pairs around convolutions: removed). A graph input of rank 3 or 4 is
    channels-first when the first ops that care about its axes (looking through elementwise ops) are standard
    convolutions, poolings, batch normalizations or resizes, or transposes to channels-last; otherwise (a
    channels-last Keras export, qonnx's channels-last ops, no such op) it is held as it is. A reshape that only
    inserts or removes unit axes takes the layout its consumers want when that keeps the held order of the
    values, else its input's, else either that does (its handler refuses it when none does)."""

    def apply(self, g: OnnxGraph) -> tuple[OnnxGraph, bool]:
        users = _consumers(g)
        layout: dict[str, str] = {}
        changes: set[str] = set()
        for name, dims in g.inputs:
            votes = _votes(g, name, users, len(dims), False, set())
            layout[name] = 'cf' if len(dims) in (3, 4) and 'cf' in votes else 'same'
        for node in g.nodes:
            first = next(iter(_computed(node, g)), None)
            lay = layout.get(first, 'same') if first else 'same'
            out_shape = g.shapes.get(node.outputs[0]) if node.outputs else None
            out_layout = lay
            if node.op == 'Transpose':
                perm = list(node.attrs.get('perm', []))
                if lay == 'same' and perm == to_channels_first(len(perm)):
                    out_layout = 'cf'
                    changes.add(node.outputs[0])
                elif lay == 'cf' and perm == to_channels_last(len(perm)):
                    out_layout = 'same'
                    changes.add(node.outputs[0])
            elif node.op in RESHAPES and first and g.shapes.get(first) and out_shape:
                wanted = _votes(g, node.outputs[0], users, len(out_shape), False, set())
                order = [*(['cf'] if 'cf' in wanted else []), *(['same'] if 'same' in wanted else []), lay, 'cf', 'same']
                fits = [c for c in order if unit_reshape_compatible(g.shapes[first], lay, out_shape, c)]
                out_layout = fits[0] if fits else lay
            if out_shape is not None and len(out_shape) not in (3, 4):
                out_layout = 'same'
            for out in node.outputs:
                layout[out] = out_layout
        return replace(g, layout=layout, layout_change=changes), bool(changes)


def _votes(g: OnnxGraph, tensor: str, users: dict[str, list[Node]], rank: int, flip: bool, seen: set[str]) -> set[str]:
    """What the first axis-sensitive readers of ``tensor`` say its layout is ('cf' or 'same'), looking through
    elementwise ops (and, for rank 3, through a [0, 2, 1] transpose, which flips the answer)."""
    votes: set[str] = set()
    for node in users.get(tensor, []):
        if node.name in seen:
            continue
        seen.add(node.name)
        perm = list(node.attrs.get('perm', [])) if node.op == 'Transpose' else []
        if node.op in ELEMENTWISE or node.op in LAYOUT_KEEPING:
            votes |= _votes(g, node.outputs[0], users, rank, flip, seen)
        elif node.op == 'Transpose' and rank == 3 and perm == [0, 2, 1]:
            votes |= _votes(g, node.outputs[0], users, rank, not flip, seen)
        elif perm and perm == to_channels_first(rank):
            votes.add('cf' if flip else 'same')
        elif perm and perm == to_channels_last(rank):
            votes.add('same' if flip else 'cf')
        elif node.op.startswith(CHANNELS_LAST_DOMAIN):
            votes.add('cf' if flip else 'same')
        elif node.op in CHANNELS_FIRST:
            votes.add('same' if flip else 'cf')
    return votes


#: The passes every ONNX graph goes through, in order (FoldConstants gets the reader's limits).
PIPELINE = (InferShapes, CancelTransposes, FuseQDQ, FuseMatMulAdd, MergeReshapes, TrackLayout, FlattenIntoDense)
