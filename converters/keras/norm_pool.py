"""Keras batch normalization and average pooling, and the helpers their QKeras forms build on."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceLayer
from hgqbridge.numerics import finite, reciprocal_exact

from ..hgq.composite_specs import AveragePoolSpec, BatchNormSpec
from ..hgq.specs import Spec
from .layers import channels_last, pooling_args
from .registry import LAYERS

BN_STATUS = (
    "HGQ2 QBatchNormalization with the source's exact float32 scale and offset; bit-exact when the scale is a power of two, "
    'else measured (the source rounds x*scale in float32)'
)
POOL_STATUS = 'exact for power-of-two areas with valid padding; else measured (float32 division)'
GLOBAL_STATUS = 'exact for power-of-two areas; else measured (float32 division)'
#: The statistics and their weight names.
BN_WEIGHTS = {'beta': 'beta', 'gamma': 'gamma', 'mean': 'moving_mean', 'variance': 'moving_variance'}
BN_ORDER = ('gamma', 'beta', 'moving_mean', 'moving_variance')

Quantize = Callable[[str, np.ndarray], np.ndarray]  # (statistic, values) -> the values as the source uses them


def batch_norm_spec(layer: SourceLayer, quantize: Quantize | None = None) -> Spec:
    """A batch normalization from its saved statistics (``quantize``: QKeras's quantizers on them)."""
    cfg = layer.config
    axis = cfg.get('axis', -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise LayerProblem(
            'an axis other than one integer is not converted', 'normalize the last (channels) axis', received=cfg.get('axis')
        )
    for flag in ('renorm', 'virtual_batch_size', 'adjustment'):
        if cfg.get(flag):
            raise LayerProblem(f'{flag}={cfg[flag]!r} is not converted', f'save the model without {flag}')
    params: dict[str, np.ndarray | None] = {}
    for what, weight in BN_WEIGHTS.items():
        present = {'gamma': cfg.get('scale', True), 'beta': cfg.get('center', True)}.get(what, True)
        values = layer.weight(weight) if present else None
        if present and (values is None or values.ndim != 1):
            raise LayerProblem(f'the weights file has no 1-D {weight} for this layer', 'pass the weights saved with this model')
        finite(weight, values)
        params[what] = None if values is None else (quantize(what, values) if quantize else values.astype(np.float32))
    sizes = {v.shape for v in params.values() if v is not None}
    if len(sizes) != 1:
        raise LayerProblem(
            'batchnorm parameters of different shapes', 'pass the weights saved with this model', received=sorted(sizes)
        )
    epsilon = cfg.get('epsilon', 1e-3)
    if not isinstance(epsilon, (int, float)) or not epsilon >= 0:
        raise LayerProblem('epsilon must be a non-negative number', 're-save the model', received=epsilon)
    mean, variance = params['mean'], params['variance']
    if mean is None or variance is None:  # (never: both are always read above)
        raise LayerProblem('the moving statistics are missing', 'pass the weights saved with this model')
    if np.any(variance.astype(np.float64) + float(epsilon) <= 0):
        raise LayerProblem(
            f'{int(np.sum(variance + epsilon <= 0))} channel(s) have moving_variance + epsilon <= 0, which makes the scale NaN '
            'or infinite',
            're-train or re-save the model (a variance is never negative)',
        )
    return BatchNormSpec(params['gamma'], params['beta'], mean, variance, float(epsilon), axis)


def average_exactness(area: int, average: FixedFormat | None, spec: object) -> str:
    """Why the source's division by ``area`` rounds ('' when exact); a QKeras ``average`` quantizer that does not hold
    ``1/area`` is refused (QKeras 0.9.0 computes ``avg(x) * area * Q(1/area)``)."""
    if average is not None:
        held = reciprocal_exact(average.quantize, area)
        if held * area != 1.0:
            raise LayerProblem(
                f'average_quantizer {average} rounds 1/{area} to {held}, so QKeras scales the average by a factor that is not 1',
                'give average_quantizer enough fractional bits to hold 1/pool_area, or none',
            )
    return f'a pool area of {area} is not a power of two: the source divides in float32' if area & (area - 1) else ''


def average_pool_spec(
    layer: SourceLayer, rank: int, average: FixedFormat | None = None, out_fmt: FixedFormat | None = None, spec: object = None
) -> Spec:
    args = pooling_args(layer, rank)
    pool, padding = dict(args)['pool_size'], dict(args)['padding']
    why = average_exactness(int(np.prod(pool)), average, spec)
    if padding == 'same' and not why:
        why = "'same' padding: border windows divide by their valid count in float32"
    return AveragePoolSpec(rank, args, False, why, out_fmt)


def global_pool_spec(
    layer: SourceLayer, rank: int, average: FixedFormat | None = None, out_fmt: FixedFormat | None = None
) -> Spec:
    channels_last(layer)
    if layer.config.get('keepdims'):
        raise LayerProblem('keepdims=True is not converted', 'use keepdims=False and a Reshape')
    return AveragePoolSpec(rank, (), True, '', out_fmt, average)


@LAYERS.register('BatchNormalization', status=BN_STATUS, weights=BN_ORDER, builds=('QBatchNormalization',))
def batch_normalization(layer: SourceLayer) -> Spec:
    return batch_norm_spec(layer)


@LAYERS.register('AveragePooling1D', status=POOL_STATUS, builds=('QAveragePooling1D',))
def average_pooling_1d(layer: SourceLayer) -> Spec:
    return average_pool_spec(layer, 1)


@LAYERS.register('AveragePooling2D', status=POOL_STATUS, builds=('QAveragePooling2D',))
def average_pooling_2d(layer: SourceLayer) -> Spec:
    return average_pool_spec(layer, 2)


@LAYERS.register('GlobalAveragePooling1D', status=GLOBAL_STATUS, builds=('QGlobalAveragePooling1D',))
def global_average_pooling_1d(layer: SourceLayer) -> Spec:
    return global_pool_spec(layer, 1)


@LAYERS.register('GlobalAveragePooling2D', status=GLOBAL_STATUS, builds=('QGlobalAveragePooling2D',))
def global_average_pooling_2d(layer: SourceLayer) -> Spec:
    return global_pool_spec(layer, 2)
