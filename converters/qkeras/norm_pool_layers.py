"""QKeras (and Keras) batch normalization and average pooling: one handler per source class name."""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceLayer

from ..hgq.blocks import AveragePoolSpec, BatchNormSpec
from ..hgq.build import Spec
from .layers import LAYERS, _channels_last, _ints, _padding
from .quantizers import FloatActivation, parse_quantizer, weight_plan

#: QBatchNormalization's default quantizers (qkeras/qnormalization.py), used when the config omits one.
QBN_DEFAULTS = {
    'beta': 'quantized_po2(5)',
    'gamma': 'quantized_relu_po2(6, 2048)',
    'mean': 'quantized_po2(5)',
    'variance': 'quantized_relu_po2(6, quadratic_approximation=True)',
}
WEIGHT_NAMES = {'beta': 'beta', 'gamma': 'gamma', 'mean': 'moving_mean', 'variance': 'moving_variance'}


def _quantized(layer: SourceLayer, what: str, values: np.ndarray) -> np.ndarray:
    """A batchnorm parameter as QKeras's quantizer leaves it (float32); unquantized in plain Keras."""
    if layer.class_name != 'QBatchNormalization':
        return values.astype(np.float32)
    q = parse_quantizer(layer.config.get(f'{what}_quantizer', QBN_DEFAULTS[what]), what)
    if q is None:
        return values.astype(np.float32)
    if isinstance(q, FloatActivation):
        raise LayerProblem(f'the {what} quantizer names a float activation ({q.name})', 'use a QKeras quantizer or None')
    q_values, fmt = weight_plan(q, values, what)
    return (fmt.quantize(q_values) if isinstance(fmt, FixedFormat) else q_values).astype(np.float32)


@LAYERS.register('QBatchNormalization', 'BatchNormalization')
def batch_normalization(layer: SourceLayer) -> Spec:
    """HGQ2 QBatchNormalization with the source's exact float32 scale and offset; bit-exact when the scale is a power of two, else measured (the source rounds x*scale in float32)."""
    cfg = layer.config
    axis = cfg.get('axis', -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise LayerProblem(f'axis={cfg.get("axis")!r} is not converted', 'normalize the last (channels) axis')
    for flag in ('renorm', 'virtual_batch_size', 'adjustment'):
        if cfg.get(flag):
            raise LayerProblem(f'{flag}={cfg[flag]!r} is not converted', f'save the model without {flag}')
    params = {}
    for what, weight in WEIGHT_NAMES.items():
        present = {'gamma': cfg.get('scale', True), 'beta': cfg.get('center', True)}.get(what, True)
        values = layer.weight(weight) if present else None
        if present and (values is None or values.ndim != 1):
            raise LayerProblem(f'the weights file has no 1-D {weight} for this layer', 'pass the weights saved with this model')
        if values is not None and not np.all(np.isfinite(values)):
            raise LayerProblem(f'{weight} contains NaN or Inf', 're-train or re-save the model')
        params[what] = None if values is None else _quantized(layer, what, values)
    sizes = {v.shape for v in params.values() if v is not None}
    if len(sizes) != 1:
        raise LayerProblem(f'batchnorm parameters of different shapes {sorted(sizes)}', 'pass the weights saved with this model')
    epsilon = cfg.get('epsilon', 1e-3)
    if not isinstance(epsilon, (int, float)) or not epsilon >= 0:
        raise LayerProblem(f'epsilon must be a non-negative number, got {epsilon!r}', 're-save the model')
    if np.any(params['variance'].astype(np.float64) + float(epsilon) <= 0):
        raise LayerProblem(f'{int(np.sum(params["variance"] + epsilon <= 0))} channel(s) have moving_variance + epsilon <= 0, which '
                           'makes the scale NaN or infinite', 're-train or re-save the model (a variance is never negative)')
    return BatchNormSpec(params['gamma'], params['beta'], params['mean'], params['variance'], float(epsilon), axis)


def _pool_activation(layer: SourceLayer) -> FixedFormat | None:
    act = parse_quantizer(layer.config.get('activation'), 'activation')
    if act is None or (isinstance(act, FloatActivation) and act.name == 'linear'):
        return None
    if isinstance(act, FloatActivation):
        raise LayerProblem(f'activation={act.name!r} inside {layer.class_name} is not converted', 'move it to its own Activation layer')
    fmt, affine = act.activation_plan()
    if affine is not None:
        raise LayerProblem(f'a {type(act).__name__} activation inside {layer.class_name} is not converted', 'move it to its own QActivation')
    return fmt


def _average_quantizer(layer: SourceLayer, area: int) -> str:
    """QKeras 0.9.0 computes ``avg(x) * area * Q(1 / area)``: refused unless Q keeps 1/area exact. Returns why
    the source's float32 division rounds ('' when it is exact)."""
    spec = layer.config.get('average_quantizer')
    q = parse_quantizer(spec, 'average') if spec is not None else None
    if q is not None:
        fmt = q.fixed_format('average')
        if float(fmt.quantize(np.array([1.0 / area]))[0]) * area != 1.0:
            raise LayerProblem(
                f'average_quantizer {spec!r} rounds 1/{area} to {float(fmt.quantize(np.array([1.0 / area]))[0])}, so QKeras scales '
                'the average by a factor that is not 1', 'give average_quantizer enough fractional bits to hold 1/pool_area, or none')
    if area & (area - 1):
        return f'a pool area of {area} is not a power of two: the source divides in float32'
    return ''


@LAYERS.register('QAveragePooling2D', 'AveragePooling1D', 'AveragePooling2D')
def average_pooling(layer: SourceLayer) -> Spec:
    """exact for power-of-two areas with valid padding (QKeras average_quantizer must hold 1/area); else measured (float32 division)."""
    _channels_last(layer)
    cfg = layer.config
    padding = _padding(layer)
    pool = _ints(cfg.get('pool_size', 2), 'pool_size')
    rank = 1 if layer.class_name.endswith('1D') else 2
    pool = pool * rank if len(pool) == 1 else pool
    why = _average_quantizer(layer, int(np.prod(pool)))
    if padding == 'same' and not why:
        why = "'same' padding: border windows divide by their valid count in float32"
    args = (('pool_size', pool), ('strides', _ints(cfg.get('strides') or pool, 'strides')), ('padding', padding))
    return AveragePoolSpec(layer.class_name.removeprefix('Q'), args, why, _pool_activation(layer))


@LAYERS.register('QGlobalAveragePooling2D', 'GlobalAveragePooling1D', 'GlobalAveragePooling2D')
def global_average_pooling(layer: SourceLayer) -> Spec:
    """exact for power-of-two areas (average_quantizer must hold 1/area); else measured (float32 division)."""
    _channels_last(layer)
    if layer.config.get('keepdims'):
        raise LayerProblem('keepdims=True is not converted', 'use keepdims=False and a Reshape')
    spec = layer.config.get('average_quantizer')
    average = parse_quantizer(spec, 'average').fixed_format('average') if spec is not None else None
    return AveragePoolSpec(layer.class_name.removeprefix('Q'), (), '', _pool_activation(layer), average)
