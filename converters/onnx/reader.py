"""Read ONNX / QONNX files with the onnx package alone: protobuf parsing and numpy, nothing executed.

Before anything is read, the model is refused if a tensor's data lives in another file, a node belongs to a
domain whose ops are not known (never read as the standard op of the same name), or the model defines local
functions. Known domains: the standard one, QONNX's (``Quant``, ``IntQuant``, ``BipolarQuant``, ``Trunc``) and
qonnx's channels-last ops (``qonnx.custom_op.channels_last``: ``Conv``, ``MaxPool``, ``BatchNormalization``,
whose op names become ``qonnx.custom_op.channels_last:<op>`` so that nothing mistakes them for the standard ops).
Then the graph becomes an ``OnnxGraph`` (``graph.py``), the passes of ``passes.py`` fold constants (computing
QONNX / QCDQ weight quantizers on the constants they quantize), cancel batch transposes, fuse QuantizeLinear /
DequantizeLinear and MatMul + Add, merge reshapes and track layouts, and ``source_graph`` makes the
``SourceGraph`` whose layers are the ONNX nodes (class name = op type). Constants a node reads become its weights
(``<node>/in<k>:0`` for input k) with their exact format in ``config['formats']``. ONNX is channels-first (NCW,
NCHW); the HGQ2 model is channels-last, so inputs of rank 3 and 4 that convolutions read channels-first are
declared (N, W, C) / (N, H, W, C) and the report says how to feed them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.datafiles import regular_file
from hgqbridge.errors import SourceFileError
from hgqbridge.graph import SourceGraph, SourceLayer, topological
from hgqbridge.limits import Limits

from .graph import Node, OnnxGraph
from .passes import PIPELINE, FoldConstants

QONNX_DOMAINS = ('qonnx.custom_op.general', 'finn.custom_op.general', 'onnx.brevitas', 'qonnx')
STANDARD_DOMAINS = ('', 'ai.onnx')
QONNX_OPS = ('Quant', 'IntQuant', 'BipolarQuant', 'Trunc')
#: Other domains whose ops are read, each with the ops the handlers know (an op is named ``<domain>:<op>``).
DOMAIN_OPS = {'qonnx.custom_op.channels_last': ('Conv', 'MaxPool', 'BatchNormalization')}


def _array(value: np.ndarray) -> np.ndarray:
    """Initializer values: floating point as float32, integers (shapes, indices) kept as int64."""
    return value.astype(np.int64) if value.dtype.kind in 'iub' else value.astype(np.float32)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import TensorProto, helper, numpy_helper

    out = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        out[attr.name] = (
            value.decode('utf-8', 'replace')
            if isinstance(value, bytes)
            else [v.decode('utf-8', 'replace') if isinstance(v, bytes) else v for v in value]
            if isinstance(value, (list, tuple))
            else _array(numpy_helper.to_array(value))
            if isinstance(value, TensorProto)
            else value
        )
    return out


def op_name(domain: str, op_type: str) -> str:
    """The op a node is read as: its op type in the standard and QONNX domains, ``<domain>:<op>`` elsewhere."""
    return op_type if domain in STANDARD_DOMAINS + QONNX_DOMAINS else f'{domain}:{op_type}'


def _load(path: Path, limits: Limits) -> Any:
    import onnx

    regular_file(path, 'ONNX file', SourceFileError)
    limits.check('weight_bytes', path.stat().st_size, 'the ONNX file', str(path))
    try:
        model = onnx.load(str(path), load_external_data=False)
    except RecursionError:
        raise SourceFileError('the ONNX graph is nested too deeply to read', where=str(path)) from None
    except Exception as err:  # google.protobuf DecodeError and friends: a corrupted file
        raise SourceFileError(
            'the file is not a readable ONNX model',
            where=str(path),
            received=f'{type(err).__name__}: {str(err)[:200]}',
            fix='export the model again (torch.onnx.export, tf2onnx, qonnx)',
        ) from None
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
        raise SourceFileError(
            'the ONNX file refers to tensor data stored in other files, which hgqbridge never reads',
            where=str(path),
            received='; '.join(found[:3]) + (f' and {len(found) - 3} more' if len(found) > 3 else ''),
            fix='save the model with its weights inside (onnx.save(model, path, save_as_external_data=False); torch.onnx.export '
            'with dynamo=True writes them outside unless given external_data=False)',
        )


def _refuse_unknown_domains(model: Any, path: Path) -> None:
    """Ops are standard only in the standard domain; QONNX ops only in QONNX's. A model-local function can
    redefine any op name, so a model with local functions is refused too."""
    if len(model.functions):
        names = ', '.join(f'{f.domain}:{f.name}' for f in model.functions)
        raise SourceFileError(
            'the ONNX model defines its own functions (which may redefine standard ops); they are not converted',
            where=str(path),
            received=names[:200],
            fix='export without local functions (inline them)',
        )
    bad = []
    for node in model.graph.node:
        standard = node.domain in STANDARD_DOMAINS and node.op_type not in QONNX_OPS
        qonnx = node.domain in QONNX_DOMAINS and node.op_type in QONNX_OPS
        known = node.op_type in DOMAIN_OPS.get(node.domain, ())
        if not (standard or qonnx or known):
            bad.append(f'{node.name or node.output[0]} ({node.domain or "ai.onnx"}:{node.op_type})')
    if bad:
        raise SourceFileError(
            f'{len(bad)} ONNX node(s) belong to a domain whose ops hgqbridge does not know, so they are not read as standard ops',
            where=str(path),
            received='; '.join(bad[:5]),
            fix='export with standard ONNX ops (QONNX Quant/BipolarQuant in the qonnx.custom_op.general domain, '
            'qonnx channels-last Conv/MaxPool/BatchNormalization)',
        )


def _shapes(model: Any) -> dict[str, list[int | None]]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
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
        g, _ = FoldConstants(limits).apply(_onnx_graph(model, path))
        for step in PIPELINE:
            g, _ = step().apply(g)
        return source_graph(g, path)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:
        raise SourceFileError(
            'the ONNX graph is malformed',
            where=str(path),
            received=f'{type(err).__name__}: {str(err)[:200]}',
            fix='export the model again',
        ) from None


def _onnx_graph(model: Any, path: Path) -> OnnxGraph:
    from onnx import numpy_helper

    g = model.graph
    try:
        raw = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    except Exception as err:
        raise SourceFileError('an initializer cannot be read', where=str(path), received=str(err)[:200]) from None
    consts = {name: _array(value) for name, value in raw.items()}
    dtypes = {name: str(value.dtype) for name, value in raw.items()}
    shapes = _shapes(model)
    nodes, names = [], set()
    for node in g.node:
        try:
            attrs = _attrs(node)
        except Exception as err:
            raise SourceFileError(
                'a node attribute cannot be read', where=f'{path}:{node.name or node.op_type}', received=str(err)[:200]
            ) from None
        value = next((attrs[k] for k in CONSTANT_VALUES if k in attrs), None) if node.op_type == 'Constant' else None
        if value is not None and node.domain in STANDARD_DOMAINS:
            consts[node.output[0]] = _array(np.asarray(value))
            dtypes[node.output[0]] = str(np.asarray(value).dtype)
            continue
        name = node.name or node.output[0]
        while name in names:  # node names are not required to be unique; the passes key nodes by name
            name = f'{name}_'
        names.add(name)
        nodes.append(Node(op_name(node.domain, node.op_type), name, tuple(node.input), tuple(node.output), attrs, node.domain))
    inputs = []
    for value in g.input:
        if value.name in consts:
            continue
        dims = shapes.get(value.name) or []
        if len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
            raise SourceFileError(
                'the graph input shape must be static apart from the batch', where=f'{path}:{value.name}', received=dims
            )
        inputs.append((value.name, dims))
    opset = next((int(o.version) for o in model.opset_import if o.domain in STANDARD_DOMAINS), 13)
    return OnnxGraph(
        g.name or path.stem, nodes, inputs, [v.name for v in g.output], consts, {}, shapes, dtypes=dtypes, opset=opset
    )


#: The attributes a Constant node holds its value in (sparse_value is not read: the node stays and is refused).
CONSTANT_VALUES = ('value', 'value_float', 'value_floats', 'value_int', 'value_ints')


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


#: Ops whose output is never negative; ops whose output is non-negative when every computed input is.
NON_NEGATIVE = ('Relu', 'Sigmoid')
KEEPS_SIGN = (
    'MaxPool',
    'qonnx.custom_op.channels_last:MaxPool',
    'Identity',
    'Dropout',
    'Flatten',
    'Reshape',
    'Squeeze',
    'Unsqueeze',
    'Transpose',
    'Pad',
    'Resize',
    'Upsample',
    'Concat',
)


def _nonnegative(g: OnnxGraph) -> set[str]:
    """Tensors that are never negative (a MaxPool whose ONNX pads are not Keras padding reads one exactly as
    zero padding then a valid pooling): outputs of Relu, Sigmoid, Clip with a lower bound >= 0, unsigned Quant /
    QCDQ with zero zero-point, and of sign-keeping ops whose computed inputs all are. ONNX orders nodes
    topologically, so one walk suffices."""

    def const(node: Any, k: int, attr: str, default: float) -> float:
        name = node.inputs[k] if len(node.inputs) > k else ''
        value = g.consts.get(name) if name else node.attrs.get(attr, default)
        return float(np.ravel(np.asarray(value, dtype=np.float64))[0]) if value is not None and np.size(value) else default

    out: set[str] = set()
    for node in g.nodes:
        computed = [t for t in node.inputs if t and t not in g.consts]
        zero = const(node, 2, 'zero', 0.0) == 0.0
        yes = (
            node.op in NON_NEGATIVE
            or (node.op == 'Clip' and const(node, 1, 'min', -np.inf) >= 0)
            or (node.op in ('Quant', 'IntQuant') and not node.attrs.get('signed', 1) and zero)
            or (
                node.op == 'QuantizeLinear'
                and node.attrs.get('dequantized')
                and node.attrs.get('zero_point_type') == 'uint8'
                and zero
            )
            or (node.op in KEEPS_SIGN and bool(computed) and all(t in out for t in computed))
        )
        if yes:
            out.update(node.outputs)
    return out


def source_graph(g: OnnxGraph, path: Path) -> SourceGraph:
    """The SourceGraph of a passed OnnxGraph: one layer per node, constants as weights, layouts in the configs."""
    producer: dict[str, str] = {}
    safe = _namer()
    layers: list[SourceLayer] = []
    inputs = []
    notes = []
    nonnegative = _nonnegative(g)
    for tensor, dims in g.inputs:
        cf = g.layout.get(tensor) == 'cf'
        channels_last = [dims[0], *dims[2:], dims[1]] if cf else dims
        name = safe(tensor)
        config: dict[str, Any] = {'batch_shape': [None, *channels_last[1:]], 'onnx_name': tensor, 'onnx_output': tensor}
        layers.append(SourceLayer(name, 'InputLayer', {**config, 'layout': 'cf' if cf else 'same', 'out_shape': dims}))
        if cf:
            notes.append(
                'the HGQ2 model is channels-last: feed NCHW data as x.transpose(0, 2, 3, 1) (NCW as x.transpose(0, 2, 1))'
            )
        producer[tensor] = name
        inputs.append(name)
    for node in g.nodes:
        name = safe(node.name)
        weights, const_inputs = {}, {}
        inbound = []
        for k, tensor in enumerate(node.inputs):
            if not tensor:
                continue
            if tensor in g.consts:
                weights[f'{name}/in{k}:0'] = g.consts[tensor]
                const_inputs[k] = g.formats.get(tensor)
            elif tensor in producer:
                inbound.append(producer[tensor])
            else:
                raise SourceFileError(
                    'a node reads a tensor nothing produces', where=f'{path}:{name} ({node.op})', received=tensor
                )
        computed = [t for t in node.inputs if t and t not in g.consts]
        first = computed[0] if computed else None
        config = {
            **node.attrs,
            'onnx_name': node.name,
            'onnx_output': node.outputs[0],
            'domain': node.domain,
            'formats': const_inputs,
            'rank': len(g.shapes.get(first) or []) or None if first else None,
            'out_rank': len(g.shapes.get(node.outputs[0]) or []) or None,
            'shape': g.shapes.get(first) if first else None,  # ONNX shapes (batch None), layouts: 'cf' or 'same'
            'out_shape': g.shapes.get(node.outputs[0]),
            'layout': g.layout.get(first, 'same') if first else 'same',
            'nonnegative': first in nonnegative,
            'in_layouts': [g.layout.get(t, 'same') for t in computed],
            'computed_inputs': [k for k, t in enumerate(node.inputs) if t and t not in g.consts],
            'out_layout': g.layout.get(node.outputs[0], 'same'),
            'layout_change': node.outputs[0] in g.layout_change,
        }
        layers.append(SourceLayer(name, node.op, config, weights, inbound))
        for out in node.outputs:
            producer[out] = name
    outputs = []
    for tensor in g.outputs:
        if tensor not in producer:
            raise SourceFileError('a graph output is not produced by any node', where=str(path), received=tensor)
        outputs.append(producer[tensor])
    return SourceGraph(g.name, topological(layers, str(path)), inputs, outputs, path, notes=sorted(set(notes)))
