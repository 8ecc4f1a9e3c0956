"""QKeras batch normalization and average pooling: one handler per class name, on the Keras helpers."""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceLayer

from ..hgq.specs import Spec
from ..keras.norm_pool import BN_ORDER, BN_STATUS, average_pool_spec, batch_norm_spec, global_pool_spec
from .quantizers import FloatActivation, parse_quantizer, weight_plan
from .registry import LAYERS

#: QBatchNormalization's default quantizers (qkeras/qnormalization.py), used when the config omits one.
QBN_DEFAULTS = {
    'beta': 'quantized_po2(5)',
    'gamma': 'quantized_relu_po2(6, 2048)',
    'mean': 'quantized_po2(5)',
    'variance': 'quantized_relu_po2(6, quadratic_approximation=True)',
}


def _statistic(layer: SourceLayer, what: str, values: np.ndarray) -> np.ndarray:
    """A batchnorm parameter as QKeras's quantizer leaves it (float32)."""
    q = parse_quantizer(layer.config.get(f'{what}_quantizer', QBN_DEFAULTS[what]))
    if q is None:
        return values.astype(np.float32)
    if isinstance(q, FloatActivation):
        raise LayerProblem(f'the {what} quantizer names a float activation ({q.name})', 'use a QKeras quantizer or None')
    q_values, fmt = weight_plan(q, values, what)
    return (fmt.quantize(q_values) if isinstance(fmt, FixedFormat) else q_values).astype(np.float32)


def _pool_activation(layer: SourceLayer) -> FixedFormat | None:
    act = parse_quantizer(layer.config.get('activation'))
    if act is None or (isinstance(act, FloatActivation) and act.name == 'linear'):
        return None
    if isinstance(act, FloatActivation):
        raise LayerProblem(
            f'activation={act.name!r} inside {layer.class_name} is not converted', 'move it to its own Activation layer'
        )
    fmt, affine = act.activation_plan()
    if affine is not None:
        raise LayerProblem(
            f'a {type(act).__name__} activation inside {layer.class_name} is not converted', 'move it to its own QActivation'
        )
    return fmt


def _average(layer: SourceLayer) -> FixedFormat | None:
    spec = layer.config.get('average_quantizer')
    q = parse_quantizer(spec) if spec is not None else None
    if q is None:
        return None
    if isinstance(q, FloatActivation):
        raise LayerProblem('average_quantizer names a float activation', 'use a quantized_bits quantizer or none', received=spec)
    return q.fixed_format('average')


@LAYERS.register('QBatchNormalization', status=BN_STATUS, weights=BN_ORDER, builds=('QBatchNormalization',), quantizes=True)
def q_batch_normalization(layer: SourceLayer) -> Spec:
    return batch_norm_spec(layer, lambda what, values: _statistic(layer, what, values))


@LAYERS.register(
    'QAveragePooling2D',
    status='exact for power-of-two areas with valid padding; else measured (float32 division); refused: an '
    'average_quantizer that does not hold 1/area (QKeras then scales the average by a factor other than 1)',
    builds=('QAveragePooling2D',),
    quantizes=True,
)
def q_average_pooling_2d(layer: SourceLayer) -> Spec:
    return average_pool_spec(layer, 2, _average(layer), _pool_activation(layer), layer.config.get('average_quantizer'))


@LAYERS.register(
    'QGlobalAveragePooling2D',
    status='exact for power-of-two areas; else measured (float32 division); refused: an average_quantizer that does '
    'not hold 1/area (QKeras then scales the average by a factor other than 1)',
    builds=('QGlobalAveragePooling2D',),
    quantizes=True,
)
def q_global_average_pooling_2d(layer: SourceLayer) -> Spec:
    return global_pool_spec(layer, 2, _average(layer), _pool_activation(layer))
