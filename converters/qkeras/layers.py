"""QKeras layer handlers: one function per source class name, SourceLayer → HGQ2 build spec.

A handler reads the saved config and weights and returns a spec from ``converters.hgq.build``; it raises
``LayerProblem`` for anything it cannot convert exactly. It never touches TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer
from hgqbridge.registry import Registry

from ..hgq.build import DenseSpec, FlattenSpec, FloatActivationSpec, IdentitySpec, InputSpec, QuantizeSpec, Spec
from .quantizers import FloatActivation, parse_quantizer

Handler = Callable[[SourceLayer], Spec]
LAYERS: Registry[Handler] = Registry('QKeras layer')

#: Float activations a dense layer can carry itself (exact on fixed-point values).
DENSE_ACTIVATIONS = ('linear', 'relu')

for _name, _why in {
    'QLSTM': 'HGQ2 has no LSTM layer',
    'Lambda': 'a Lambda layer holds Python bytecode, which hgqbridge never executes',
}.items():
    LAYERS.refuse(_name, _why, 'rewrite the layer with supported layers')


def _activation_spec(activation: object, layer: SourceLayer) -> Spec:
    q = parse_quantizer(activation, 'activation')
    if q is None:
        return IdentitySpec('linear activation')
    if isinstance(q, FloatActivation):
        if q.name == 'linear':
            return IdentitySpec('linear activation')
        return FloatActivationSpec(q.name)
    return QuantizeSpec(q.fixed_format('activation'))


@LAYERS.register('InputLayer')
def input_layer(layer: SourceLayer) -> Spec:
    shape = layer.config.get('batch_input_shape') or layer.config.get('batch_shape')
    if not isinstance(shape, list) or len(shape) < 2 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise LayerProblem(f'the input shape must be static, got {shape!r}', 'give the model a fixed input shape')
    return InputSpec(tuple(shape))


@LAYERS.register('QActivation', 'Activation')
def activation(layer: SourceLayer) -> Spec:
    if layer.class_name == 'Activation':
        name = layer.config.get('activation')
        if name not in ('linear', 'relu', 'softmax'):
            raise LayerProblem(f'Keras activation {name!r} is not converted', 'use relu, linear or softmax, or a QKeras quantizer')
    return _activation_spec(layer.config.get('activation'), layer)


@LAYERS.register('Dropout')
def dropout(layer: SourceLayer) -> Spec:
    return IdentitySpec('Dropout does nothing at inference')


@LAYERS.register('Flatten')
def flatten(layer: SourceLayer) -> Spec:
    if layer.config.get('data_format') == 'channels_first':
        raise LayerProblem('Flatten with data_format="channels_first" reorders values', 'use channels_last')
    return FlattenSpec()


def _dense_weights(layer: SourceLayer) -> tuple[np.ndarray, np.ndarray | None]:
    units = layer.config.get('units')
    if not isinstance(units, int) or units < 1:
        raise LayerProblem(f'units must be a positive integer, got {units!r}', 're-save the model')
    kernel, bias = layer.weight('kernel'), layer.weight('bias')
    use_bias = bool(layer.config.get('use_bias', True))
    if kernel is None or (use_bias and bias is None):
        raise LayerProblem('the weights file has no kernel/bias for this layer', 'pass the weights saved with this model')
    if kernel.ndim != 2 or kernel.shape[1] != units or (use_bias and bias is not None and bias.shape != (units,)):
        shapes = (kernel.shape, None if bias is None else bias.shape)
        raise LayerProblem(f'weights of shape {shapes} do not fit units={units}', 'pass the weights saved with this model')
    for arr in (kernel, bias):
        if arr is not None and not np.all(np.isfinite(arr)):
            raise LayerProblem('the weights contain NaN or Inf', 're-train or re-save the model')
    return kernel, bias if use_bias else None


@LAYERS.register('QDense', 'Dense')
def dense(layer: SourceLayer) -> Spec:
    kernel, bias = _dense_weights(layer)
    kq = parse_quantizer(layer.config.get('kernel_quantizer'), 'kernel')
    bq = parse_quantizer(layer.config.get('bias_quantizer'), 'bias')
    if isinstance(kq, FloatActivation) or isinstance(bq, FloatActivation):
        raise LayerProblem('a kernel/bias quantizer names a float activation', 'use a quantized_bits quantizer')
    act = parse_quantizer(layer.config.get('activation', 'linear'), 'activation')
    out_fmt, float_act = None, 'linear'
    if isinstance(act, FloatActivation):
        if act.name not in DENSE_ACTIVATIONS:
            raise LayerProblem(f'activation={act.name!r} inside a dense layer is not converted', 'move it to its own Activation layer')
        float_act = act.name
    elif act is not None:
        out_fmt = act.fixed_format('activation')
    return DenseSpec(
        units=int(layer.config['units']),
        kernel=kernel,
        bias=bias,
        kernel_fmt=kq.fixed_format('kernel') if kq is not None else None,
        bias_fmt=bq.fixed_format('bias') if bq is not None else None,
        activation=float_act,
        out_fmt=out_fmt,
    )
