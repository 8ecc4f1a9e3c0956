"""Read ONNX / QONNX files with the onnx package alone: protobuf parsing and numpy, nothing executed.

The graph becomes a ``SourceGraph`` whose layers are the ONNX nodes (class name = op type). Initializers
and Constant nodes become weights (``<node>/in<k>:0`` for input k). QONNX quantizers applied to weights
(``Quant`` / ``BipolarQuant`` on an initializer) are computed here, exactly as the QONNX spec defines them,
and their consumers get the quantized values with the format that holds them (``config['formats']``).
``MatMul`` followed by ``Add`` of a constant becomes one ``Gemm``. Layouts: ONNX is channels-first (NCW,
NCHW); the HGQ2 model is channels-last, so inputs of rank 3 and 4 are declared (N, W, C) / (N, H, W, C).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem, SourceFileError
from hgqbridge.graph import SourceGraph, SourceLayer
from hgqbridge.limits import Limits

from ..qkeras.reader import _check_file, _topological
from .qonnx import bipolar_weights, quant_format, quant_values

QONNX_DOMAINS = ('qonnx.custom_op.general', 'finn.custom_op.general', 'onnx.brevitas', 'qonnx')
STANDARD_DOMAINS = ('', 'ai.onnx')
QONNX_OPS = ('Quant', 'IntQuant', 'BipolarQuant', 'Trunc')


def _array(value: np.ndarray) -> np.ndarray:
    """Initializer values: floating point as float32, integers (shapes, indices) kept as int64."""
    return value.astype(np.int64) if value.dtype.kind in 'iub' else value.astype(np.float32)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        out[attr.name] = value.decode('utf-8', 'replace') if isinstance(value, bytes) else list(value) if isinstance(value, (list, tuple)) else value
    return out


def _load(path: Path, limits: Limits) -> Any:
    import onnx

    _check_file(path, 'ONNX file')
    limits.check('weight_bytes', path.stat().st_size, 'the ONNX file', str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except RecursionError:
        raise SourceFileError('the ONNX graph is nested too deeply to read', where=str(path)) from None
    except Exception as err:  # google.protobuf DecodeError and friends: a corrupted file
        raise SourceFileError('the file is not a readable ONNX model', where=str(path), received=f'{type(err).__name__}: {str(err)[:200]}',
                              fix='export the model again (torch.onnx.export, tf2onnx, qonnx)') from None
    if not model.graph.node:
        raise SourceFileError('the ONNX graph has no nodes', where=str(path))
    limits.check('layers', len(model.graph.node), 'the number of ONNX nodes', str(path))
    _refuse_outside_data(model, path)
    _refuse_unknown_domains(model, path)
    return model


def _tensors(graph: Any, where: str) -> Any:
    """Every TensorProto of a graph and its subgraphs, with where it is: initializers, sparse initializers and
    tensor attributes of nodes."""
    from onnx import AttributeProto

    for t in graph.initializer:
        yield t, f'{where}initializer {t.name}'
    for sparse in graph.sparse_initializer:
        yield sparse.values, f'{where}sparse initializer {sparse.values.name}'
        yield sparse.indices, f'{where}sparse initializer {sparse.values.name} (indices)'
    for node in graph.node:
        for attr in node.attribute:
            at = f'{where}node {node.name or node.op_type} attribute {attr.name}'
            if attr.type == AttributeProto.TENSOR:
                yield attr.t, at
            for t in attr.tensors:
                yield t, at
            if attr.type == AttributeProto.SPARSE_TENSOR:
                yield attr.sparse_tensor.values, at
                yield attr.sparse_tensor.indices, at
            for s in attr.sparse_tensors:
                yield s.values, at
                yield s.indices, at
            for sub in ([attr.g] if attr.type == AttributeProto.GRAPH else []) + list(attr.graphs):
                yield from _tensors(sub, f'{at} subgraph: ')


def _refuse_outside_data(model: Any, path: Path) -> None:
    """External data (a tensor whose bytes live in another file) is never read, wherever it is declared."""
    from onnx import TensorProto

    found = [at for t, at in _tensors(model.graph, '') if t.data_location == TensorProto.EXTERNAL or len(t.external_data)]
    if found:  # (local functions, where more tensors could hide, are refused before anything is read)
        raise SourceFileError('the ONNX file refers to tensor data stored in other files, which hgqbridge never reads', where=str(path),
                              received='; '.join(found[:3]) + (f' and {len(found) - 3} more' if len(found) > 3 else ''),
                              fix='save the model with its weights inside (onnx.save(model, path, save_as_external_data=False))')


def _refuse_unknown_domains(model: Any, path: Path) -> None:
    """Ops are standard only in the standard domain; QONNX ops only in QONNX's. A model-local function can
    redefine any op name, so a model with local functions is refused too."""
    if len(model.functions):
        names = ', '.join(f'{f.domain}:{f.name}' for f in model.functions)
        raise SourceFileError('the ONNX model defines its own functions (which may redefine standard ops); they are not converted',
                              where=str(path), received=names[:200], fix='export without local functions (inline them)')
    bad = []
    for node in model.graph.node:
        standard = node.domain in STANDARD_DOMAINS and node.op_type not in QONNX_OPS
        qonnx = node.domain in QONNX_DOMAINS and node.op_type in QONNX_OPS
        if not (standard or qonnx):
            bad.append(f'{node.name or node.output[0]} ({node.domain or "ai.onnx"}:{node.op_type})')
    if bad:
        raise SourceFileError(f'{len(bad)} ONNX node(s) belong to a domain whose ops hgqbridge does not know, so they are not read as '
                              'standard ops', where=str(path), received='; '.join(bad[:5]),
                              fix='export with standard ONNX ops (QONNX Quant/BipolarQuant in the qonnx.custom_op.general domain)')


def _shapes(model: Any) -> dict[str, list[int | None]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - shapes are a help, not a requirement (QONNX domains are unknown to onnx)
        inferred = model
    out = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        out[info.name] = [d.dim_value if d.HasField('dim_value') else None for d in dims]
    return out


def read_onnx(path: Path, limits: Limits = Limits()) -> SourceGraph:
    """The ONNX graph as a SourceGraph; anything malformed in it is one SourceFileError."""
    model = _load(path, limits)
    try:
        return _read(model, path, limits)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:
        raise SourceFileError('the ONNX graph is malformed', where=str(path), received=f'{type(err).__name__}: {str(err)[:200]}',
                              fix='export the model again') from None


def _read(model: Any, path: Path, limits: Limits) -> SourceGraph:
    from onnx import numpy_helper

    g = model.graph
    try:
        consts = {i.name: _array(numpy_helper.to_array(i)) for i in g.initializer}
    except Exception as err:  # noqa: BLE001 - a malformed tensor
        raise SourceFileError('an initializer cannot be read', where=str(path), received=str(err)[:200]) from None
    shapes = _shapes(model)
    formats: dict[str, Any] = {}  # tensor -> the exact format of a quantized weight
    nodes = []
    for node in g.node:
        attrs = _attrs(node)
        if node.op_type == 'Constant' and 'value' in attrs:
            consts[node.output[0]] = _array(numpy_helper.to_array(attrs['value']))
            continue
        try:
            value = fold_constant(node, attrs, consts, shapes, limits)
        except (ValueError, IndexError, TypeError, OverflowError) as err:
            raise SourceFileError('a constant subgraph cannot be evaluated', where=f'{path}:{node.name} ({node.op_type})', received=str(err)[:200]) from None
        if value is not None:
            consts[node.output[0]] = value
            continue
        weight_quant = node.op_type in ('Quant', 'IntQuant', 'BipolarQuant') and node.input and node.input[0] in consts
        if weight_quant and all(i in consts for i in node.input):
            name = node.name or node.output[0]
            try:
                if node.op_type in ('Quant', 'IntQuant'):
                    fmt = quant_format(consts, node.input, attrs, weight=True)
                    consts[node.output[0]] = quant_values(consts[node.input[0]], fmt)
                    formats[node.output[0]] = fmt
                else:
                    consts[node.output[0]], formats[node.output[0]] = bipolar_weights(consts[node.input[0]], consts[node.input[1]])
            except LayerProblem as err:
                raise SourceFileError(f'the weight quantizer cannot be converted: {err.reason}', where=f'{path}:{name} ({node.op_type})',
                                      fix=err.fix or 'use power-of-two scales and a zero zero-point') from None
            continue
        nodes.append((node, attrs))
    nodes = _fuse_matmul_add(nodes, consts)
    return _graph(path, g, nodes, consts, formats, shapes)


def _fuse_matmul_add(nodes: list, consts: dict) -> list:
    """MatMul(x, W) followed by Add(that, b) with W and b constant: one Gemm named after the Add."""
    from onnx import helper

    users: dict[str, int] = {}
    for node, _ in nodes:
        for i in node.input:
            users[i] = users.get(i, 0) + 1
    out, skip = [], set()
    by_input = {node.input[0]: (node, attrs) for node, attrs in nodes if node.op_type == 'Add' and len(node.input) == 2}
    for node, attrs in nodes:
        if id(node) in skip:
            continue
        add = by_input.get(node.output[0]) if node.op_type == 'MatMul' else None
        if add is not None and node.input[1] in consts and add[0].input[1] in consts and users.get(node.output[0]) == 1:
            fused = helper.make_node('Gemm', [node.input[0], node.input[1], add[0].input[1]], [add[0].output[0]], name=add[0].name or add[0].output[0])
            out.append((fused, {}))
            skip.add(id(add[0]))
            continue
        out.append((node, attrs))
    return out


def _namer() -> Callable[[str], str]:
    """Keras layer names from ONNX names ('/fc1/Gemm' -> 'fc1_Gemm'), unique."""
    used: set[str] = set()

    def name(raw: str) -> str:
        base = re.sub(r'[^A-Za-z0-9_]+', '_', raw).strip('_') or 'node'
        out, n = base, 1
        while out in used:
            out, n = f'{base}_{n}', n + 1
        used.add(out)
        return out

    return name


def _graph(path: Path, g: Any, nodes: list, consts: dict, formats: dict, shapes: dict) -> SourceGraph:
    producer: dict[str, str] = {}
    safe = _namer()
    layers: list[SourceLayer] = []
    inputs = []
    layout: dict[str, str] = {}  # tensor -> 'cf' (ONNX channels-first, held channels-last) or 'same'
    consumers: dict[str, list] = {}
    for node, attrs in nodes:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append((node, attrs))
    for value in g.input:
        if value.name in consts:
            continue
        dims = shapes.get(value.name) or []
        if len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
            raise SourceFileError('the graph input shape must be static apart from the batch', where=f'{path}:{value.name}', received=dims)
        # a channels-last input (Keras/tf2onnx) is transposed to channels-first before its first Conv: keep it as is
        to_cf = [n.op_type == 'Transpose' and list(a.get('perm', [])) == to_channels_first(len(dims)) for n, a in consumers.get(value.name, [])]
        layout[value.name] = 'same' if len(dims) not in (3, 4) or (to_cf and all(to_cf)) else 'cf'
        cl = [dims[0], *dims[2:], dims[1]] if layout[value.name] == 'cf' else dims
        name = safe(value.name)
        config = {'batch_shape': [None, *cl[1:]], 'onnx_name': value.name}
        if layout[value.name] == 'cf':
            config['channels_first_shape'] = dims
        layers.append(SourceLayer(name, 'InputLayer', config))
        producer[value.name] = name
        inputs.append(name)
    for node, attrs in nodes:
        name = safe(node.name or node.output[0])
        weights, const_inputs = {}, {}
        inbound = []
        for k, tensor in enumerate(node.input):
            if not tensor:
                continue
            if tensor in consts:
                weights[f'{name}/in{k}:0'] = consts[tensor]
                const_inputs[k] = formats.get(tensor)
            elif tensor in producer:
                inbound.append(producer[tensor])
            else:
                raise SourceFileError('a node reads a tensor nothing produces', where=f'{path}:{name} ({node.op_type})', received=tensor)
        first = next((t for t in node.input if t and t not in consts), None)
        lay = layout.get(first, 'same')
        out_layout, change = lay, False
        if node.op_type == 'Transpose':
            perm = list(attrs.get('perm', []))
            if lay == 'same' and perm == to_channels_first(len(perm)):
                out_layout, change = 'cf', True
            elif lay == 'cf' and perm == to_channels_last(len(perm)):
                out_layout, change = 'same', True
        config = {**attrs, 'onnx_name': node.name, 'domain': node.domain, 'formats': const_inputs, 'rank': len(shapes.get(first) or []) or None,
                  'out_rank': len(shapes.get(node.output[0]) or []) or None, 'layout': lay, 'layout_change': change}
        layers.append(SourceLayer(name, node.op_type, config, weights, inbound))
        for out in node.output:
            producer[out] = name
            layout[out] = out_layout
    outputs = []
    for value in g.output:
        if value.name not in producer:
            raise SourceFileError('a graph output is not produced by any node', where=str(path), received=value.name)
        outputs.append(producer[value.name])
    return SourceGraph(g.name or path.stem, _topological(layers, path), inputs, outputs, path, 'onnx')


#: Ops that exporters use to compute shapes; folded to constants when every input is known.
FOLDABLE = ('Shape', 'Gather', 'Cast', 'Slice', 'Concat', 'Unsqueeze', 'Squeeze', 'Mul', 'Div', 'Add', 'Sub', 'ReduceProd', 'Identity')


def _folded_size(op: str, args: list[np.ndarray | None], attrs: dict) -> float:
    """How many values folding would produce, computed from the shapes alone (before numpy allocates them)."""
    present = [a for a in args if a is not None]
    if op in ('Mul', 'Div', 'Add', 'Sub'):
        return float(np.prod(np.broadcast_shapes(*(a.shape for a in present)), dtype=np.float64))
    if op == 'Concat':
        return float(sum(max(a.size, 1) for a in present))
    if op == 'Gather' and len(present) > 1:
        return float(present[0].size) * max(present[1].size, 1)
    return float(present[0].size) if present else 0.0


def fold_constant(node: Any, attrs: dict, consts: dict[str, np.ndarray], shapes: dict, limits: Limits = Limits()) -> np.ndarray | None:
    """The value of a shape-computing node whose inputs are all known (Shape: a static input shape, batch 1)."""
    if node.op_type not in FOLDABLE or len(node.output) != 1:
        return None
    if node.op_type == 'Shape':
        dims = shapes.get(node.input[0])
        if not dims or any(d is None for d in dims[1:]):
            return None
        return np.array([1 if d is None else d for d in dims], dtype=np.int64)
    args = [consts.get(i) if i else None for i in node.input]
    if not args or args[0] is None or any(a is None for a, name in zip(args, node.input) if name):
        return None
    a = args[0]
    op = node.op_type
    limits.check('elements', _folded_size(op, args, attrs), f'folding the constant {node.output[0]!r} ({op})', node.name or op)
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
            index[int(ax)] = slice(int(max(min(s, 2**62), -2**62)), int(max(min(e, 2**62), -2**62)), int(st))
        return a[tuple(index)]
    if op == 'Concat':
        return np.concatenate([np.atleast_1d(x) for x in args], axis=int(attrs.get('axis', 0)))
    if op in ('Unsqueeze', 'Squeeze'):
        axes = tuple(int(x) for x in (args[1] if len(args) > 1 and args[1] is not None else attrs.get('axes', [])))
        return np.expand_dims(a, axes) if op == 'Unsqueeze' else np.squeeze(a, axes or None)
    if op == 'ReduceProd':
        return np.prod(a, keepdims=bool(attrs.get('keepdims', 1)))
    b = args[1]
    return {'Mul': np.multiply, 'Div': np.floor_divide if a.dtype.kind in 'iu' else np.divide, 'Add': np.add, 'Sub': np.subtract}[op](a, b)


def to_channels_first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def to_channels_last(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]
