"""ONNX op handlers that move values or combine tensors: reshapes, transposes, concatenation, elementwise arithmetic.

Axes are ONNX's; each handler maps them to the held (channels-last) tensor with ``layout.py``. Arithmetic with a
constant that varies only along the channels (a scalar, a per-feature vector, tf2onnx's batch normalization as
Mul + Add, torch's ``x * 2 + 1``) is a per-channel affine: an HGQ2 QBatchNormalization with exactly that float32
scale and offset (mean 0, variance 1, epsilon 0), which computes ``x * scale + offset`` as ONNX does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer

from ..hgq.composite_specs import BatchNormSpec, ChainSpec, NotedSpec
from ..hgq.specs import IdentitySpec, MergeSpec, MoveSpec, Spec
from .common import EXACT, const, held, shapes
from .layout import held_axis, held_shape, to_held, unit_reshape_compatible
from .registry import OPS

OPS.refuse('Trunc', 'QONNX Trunc (average-pool rescaling) is not converted yet', 'export the model without Trunc nodes')


HELD_ORDER = (
    "flattens the channels-last tensor as it is held (no Permute back to ONNX's order): the next dense layer's "
    'kernel rows are reordered to match'
)


def _flatten_spec(layer: SourceLayer) -> Spec:
    rank = layer.config.get('rank') or 2
    if rank <= 2:
        return IdentitySpec('already flat')
    if layer.config.get('layout') != 'cf':  # the tensor is held as ONNX has it: the orders agree
        return MoveSpec('Flatten')
    if layer.config.get('held_order'):  # passes.FlattenIntoDense reordered the next dense layer's weight rows
        return NotedSpec(MoveSpec('Flatten'), HELD_ORDER)
    dims = (rank - 1, *range(1, rank - 1))  # channels-last (N, *spatial, C) -> (N, C, *spatial)
    return ChainSpec(MoveSpec('Permute', (('dims', dims),)), MoveSpec('Flatten'))


def _reshape(layer: SourceLayer) -> Spec:
    """A reshape to (N, features) flattens in ONNX's order; one that only inserts or removes unit axes is a Keras
    Reshape of the held tensor when it keeps the held order of the values."""
    shape, out = shapes(layer)
    lay, out_lay = layer.config.get('layout', 'same'), layer.config.get('out_layout', 'same')
    if len(out) == 2 and len(shape) > 2 and out[1] is not None and None not in shape[1:] and out[1] == np.prod(shape[1:]):
        return _flatten_spec(layer)
    if not unit_reshape_compatible(shape, lay, out, out_lay):
        raise LayerProblem(
            f'{layer.class_name} from {shape[1:]} to {out[1:]} (batch first) moves values in the channels-last model',
            'reshape only to (N, features), or insert / remove axes of size 1',
        )
    target = held_shape(out_lay, out)[1:]
    if None in target:
        raise LayerProblem(f'{layer.class_name} to {out[1:]}: a size is unknown', 'export with static shapes')
    if target == held_shape(lay, shape)[1:]:
        return IdentitySpec('only changes the ONNX shape, not the held one')
    return MoveSpec('Reshape', (('target_shape', tuple(int(d or 0) for d in target)),))


@OPS.register(
    'Flatten',
    status="to (N, features): before a Gemm / MatMul a plain Flatten (the weight rows reordered), else in ONNX's order "
    '(a Permute back to channels-first when held channels-last, then Flatten); axis=0 (onnxmltools) only for batch-1 '
    'graphs, reported',
    builds=('Permute', 'Flatten'),
)
def flatten(layer: SourceLayer) -> Spec:
    axis = int(layer.config.get('axis', 1))
    if axis == 0:
        return NotedSpec(
            _flatten_spec(layer),
            'Flatten(axis=0) flattens the batch axis too: the source graph is right only for a batch of 1, and this '
            'converted layer flattens each sample (as Flatten(axis=1) does)',
        )
    if axis != 1:
        raise LayerProblem(f'Flatten(axis={axis}) moves part of a sample into the batch', 'flatten from axis 1')
    return _flatten_spec(layer)


@OPS.register(
    'Reshape',
    status='to (N, features) as Flatten does, or inserting / removing unit axes (a Reshape)',
    builds=('Permute', 'Flatten', 'Reshape'),
)
def reshape(layer: SourceLayer) -> Spec:
    return _reshape(layer)


@OPS.register('Unsqueeze', status='exact: a Keras Reshape of the held tensor (axes as attribute or input)', builds=('Reshape',))
def unsqueeze(layer: SourceLayer) -> Spec:
    return _reshape(layer)


@OPS.register('Squeeze', status='exact: a Keras Reshape of the held tensor (axes as attribute or input)', builds=('Reshape',))
def squeeze(layer: SourceLayer) -> Spec:
    return _reshape(layer)


@OPS.register(
    'Transpose', status='exact when it only changes layout (channels-last <-> channels-first around convolutions): removed'
)
def transpose(layer: SourceLayer) -> Spec:
    if not layer.config.get('layout_change'):
        raise LayerProblem(
            f'Transpose with perm {layer.config.get("perm")} moves data, not just the layout', 'export without the transpose'
        )
    return IdentitySpec('a layout change: the HGQ2 model is channels-last throughout')


def _computed_only(layer: SourceLayer) -> None:
    if len(layer.inbound) < 2 or any(k.endswith(':0') for k in layer.weights):
        raise LayerProblem(
            f'{layer.class_name} of a constant is not converted (only of computed tensors)',
            'fold the constant into the layer before',
        )
    layouts = set(layer.config.get('in_layouts') or [])
    if len(layouts) > 1 and (layer.config.get('rank') or 2) in (3, 4):
        raise LayerProblem(f'{layer.class_name} of a channels-first and a channels-last tensor', 'export one layout')


@OPS.register('Concat', status='exact on any axis but the batch (mapped to the held layout)', builds=('Concatenate',))
def concat(layer: SourceLayer) -> Spec:
    _computed_only(layer)
    rank, axis = layer.config.get('rank') or 2, int(layer.config.get('axis', 1))
    if not -rank <= axis < rank or axis % rank == 0:
        raise LayerProblem(f'Concat over axis {axis} of a rank-{rank} tensor is not converted', 'concatenate features')
    return MergeSpec('concatenate', held_axis(layer.config.get('layout', 'same'), rank, axis))


@OPS.register('Sum', status='exact: an n-ary QAdd of computed tensors', builds=('QAdd',))
def sum_(layer: SourceLayer) -> Spec:
    if len(layer.inbound) == 1 and not layer.weights:
        return IdentitySpec('a Sum of one tensor')
    _computed_only(layer)
    return MergeSpec('add')


def _channel_constant(layer: SourceLayer) -> tuple[np.ndarray, bool]:
    """The constant operand as one value per held channel, and whether it is the first operand."""
    at = next(k for k in (0, 1) if f'{layer.name}/in{k}:0' in layer.weights)
    value, _ = const(layer, at, 'the constant operand')
    rank, lay = layer.config.get('rank') or 2, layer.config.get('layout', 'same')
    channels = held(layer)[-1]
    if value.ndim > rank or channels is None:
        raise LayerProblem(f'a constant of shape {value.shape} for a rank-{rank} tensor is not converted', 're-export')
    spread = to_held(lay, rank, value.astype(np.float32))
    if any(d != 1 for d in spread.shape[:-1]) or spread.shape[-1] not in (1, channels):
        raise LayerProblem(
            f'a constant of shape {value.shape} varies along other axes than the channels',
            'use a scalar or one value per channel',
        )
    return np.broadcast_to(spread.reshape(-1), (channels,)).astype(np.float32), at == 0


def _arithmetic(layer: SourceLayer, op: str) -> Spec:
    if len(layer.config.get('computed_inputs') or []) >= 2:
        if op == 'div':
            raise LayerProblem('Div of two computed tensors is not converted (no exact division)', 'divide by constants')
        _computed_only(layer)
        return MergeSpec({'add': 'add', 'sub': 'subtract', 'mul': 'multiply'}[op])
    c, first = _channel_constant(layer)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if op == 'div' and first:
        raise LayerProblem('a constant divided by a computed tensor is not converted', 'divide by constants only')
    scale_offset: dict[str, Any] = {
        'add': (one, c),
        'sub': (-one, c) if first else (one, -c),
        'mul': (c, zero),
        'div': ((np.float32(1) / c).astype(np.float32), zero),
    }
    scale, offset = scale_offset[op]
    return BatchNormSpec(scale, offset, zero, one, 0.0)


BY_CONSTANT = 'by a per-channel (or scalar) constant, a QBatchNormalization with that scale and offset'


@OPS.register('Add', status=f'{EXACT}: QAdd of computed tensors; {BY_CONSTANT}', builds=('QAdd', 'QBatchNormalization'))
def add(layer: SourceLayer) -> Spec:
    return _arithmetic(layer, 'add')


@OPS.register('Sub', status=f'{EXACT}: QSubtract of computed tensors; {BY_CONSTANT}', builds=('QSubtract', 'QBatchNormalization'))
def sub(layer: SourceLayer) -> Spec:
    return _arithmetic(layer, 'sub')


@OPS.register(
    'Mul',
    status=f'QMultiply of computed tensors; {BY_CONSTANT} (exact for powers of two, else measured)',
    builds=('QMultiply', 'QBatchNormalization'),
)
def mul(layer: SourceLayer) -> Spec:
    return _arithmetic(layer, 'mul')


@OPS.register(
    'Div',
    status='by a per-channel (or scalar) constant: a QBatchNormalization multiplying by its float32 inverse (exact for '
    'powers of two, else measured)',
    builds=('QBatchNormalization',),
)
def div(layer: SourceLayer) -> Spec:
    return _arithmetic(layer, 'div')
