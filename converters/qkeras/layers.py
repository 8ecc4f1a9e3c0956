"""QKeras layer handlers: one function per source class name, SourceLayer → HGQ2 build spec.

A handler reads the saved config and weights and returns a spec from ``converters.hgq.build``; it raises
``LayerProblem`` for anything it cannot convert exactly. It never touches TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FormatArray
from hgqbridge.graph import SourceLayer
from hgqbridge.registry import Registry

from ..hgq.blocks import ChainSpec
from ..hgq.build import FloatActivationSpec, IdentitySpec, InputSpec, MergeSpec, MoveSpec, QuantizeSpec, Spec, WeightLayerSpec
from .quantizers import FloatActivation, parse_quantizer, weight_plan

Handler = Callable[[SourceLayer], Spec]
LAYERS: Registry[Handler] = Registry('Keras/QKeras layer')

#: Float activations a dense layer can carry itself (exact on fixed-point values).
DENSE_ACTIVATIONS = ('linear', 'relu')

for _name, _why in {
    'QLSTM': 'HGQ2 has no LSTM layer',
    'Lambda': 'a Lambda layer holds Python bytecode, which hgqbridge never executes',
}.items():
    LAYERS.refuse(_name, _why, 'rewrite the layer with supported layers')
for _name in ('LSTM', 'GRU', 'SimpleRNN', 'Bidirectional', 'ConvLSTM2D'):
    LAYERS.refuse(_name, 'float recurrent Keras layers are not converted (HGQ2 recurrent layers quantize their state every step)',
                  'use QKeras QSimpleRNN, or unroll the recurrence into Dense layers')
LAYERS.refuse('QBidirectional', 'bidirectional recurrent layers are not converted', 'use a single-direction QSimpleRNN')
LAYERS.refuse('QAdaptiveActivation', 'its integer bits follow running statistics, so the saved model does not fix its quantizer',
              'freeze it: replace it by QActivation(quantized_bits(...)) with the bits it has learned')


def _activation_spec(activation: object, layer: SourceLayer) -> Spec:
    q = parse_quantizer(activation, 'activation')
    if q is None:
        return IdentitySpec('linear activation')
    if isinstance(q, FloatActivation):
        if q.name == 'linear':
            return IdentitySpec('linear activation')
        return FloatActivationSpec(q.name)
    two_step = getattr(q, 'two_step', None)
    if two_step is not None and (spec := two_step()) is not None:
        return spec
    return QuantizeSpec(*q.activation_plan())


@LAYERS.register('InputLayer')
def input_layer(layer: SourceLayer) -> Spec:
    shape = layer.config.get('batch_input_shape') or layer.config.get('batch_shape')
    if not isinstance(shape, list) or len(shape) < 2 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise LayerProblem(f'the input shape must be static, got {shape!r}', 'give the model a fixed input shape')
    return InputSpec(tuple(shape))


#: Keras activation names a float model may use; they stay float (dummy) or become QSoftmax / QUnaryFunctionLUT.
#: 'hard_sigmoid' is absent on purpose: Keras 2 (0.2x + 0.5) and Keras 3 (relu6(x + 3) / 6) define it differently.
KERAS_ACTIVATIONS = ('linear', 'relu', 'softmax', 'sigmoid', 'tanh', 'swish', 'silu', 'gelu', 'elu', 'selu', 'softplus', 'softsign',
                     'exponential', 'relu6', 'mish', 'hard_silu', 'hard_swish', 'leaky_relu')


def keras_activation(name: object, layer: SourceLayer) -> Spec:
    """A Keras (not QKeras) activation name: removed (linear), or a float activation spec."""
    if not isinstance(name, str) or name not in KERAS_ACTIVATIONS:
        why = ' (Keras 2 and Keras 3 define it differently)' if name == 'hard_sigmoid' else ''
        raise LayerProblem(f'Keras activation {name!r} is not converted{why}', f'use one of {", ".join(KERAS_ACTIVATIONS)}')
    return IdentitySpec('linear activation') if name == 'linear' else FloatActivationSpec(name)


@LAYERS.register('QActivation', 'Activation')
def activation(layer: SourceLayer) -> Spec:
    if layer.class_name == 'Activation':
        return keras_activation(layer.config.get('activation'), layer)
    return _activation_spec(layer.config.get('activation'), layer)


@LAYERS.register('Softmax')
def softmax(layer: SourceLayer) -> Spec:
    """A float softmax: kept float, or HGQ2 QSoftmax when a float model is quantized."""
    axis = layer.config.get('axis', -1)
    if axis not in (-1, [-1]):
        raise LayerProblem(f'softmax over axis {axis!r} is not converted', 'use the last axis')
    return FloatActivationSpec('softmax')


@LAYERS.register('Dropout')
def dropout(layer: SourceLayer) -> Spec:
    return IdentitySpec('Dropout does nothing at inference')


def _channels_last(layer: SourceLayer) -> None:
    if layer.config.get('data_format', 'channels_last') not in (None, 'channels_last'):
        raise LayerProblem(f'data_format={layer.config["data_format"]!r} is not converted', 'save the model channels_last')


def _padding(layer: SourceLayer) -> str:
    padding = layer.config.get('padding', 'valid')
    if padding not in ('valid', 'same'):
        raise LayerProblem(f'padding={padding!r} is not converted', "use 'valid' or 'same'")
    return padding


def _ints(value: object, what: str) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise LayerProblem(f'{what} must be non-negative integers, got {value!r}', 're-save the model')
    return values


@LAYERS.register('Flatten')
def flatten(layer: SourceLayer) -> Spec:
    _channels_last(layer)
    return MoveSpec('Flatten')


@LAYERS.register('Reshape')
def reshape(layer: SourceLayer) -> Spec:
    shape = layer.config.get('target_shape')
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and (d > 0 or d == -1) for d in shape):
        raise LayerProblem(f'target_shape must be a list of positive integers, got {shape!r}', 're-save the model')
    return MoveSpec('Reshape', (('target_shape', tuple(shape)),))


@LAYERS.register('MaxPooling1D', 'MaxPooling2D')
def max_pooling(layer: SourceLayer) -> Spec:
    _channels_last(layer)
    cfg = layer.config
    padding = _padding(layer)
    strides = cfg.get('strides') or cfg.get('pool_size')
    args = (('pool_size', _ints(cfg.get('pool_size', 2), 'pool_size')), ('strides', _ints(strides, 'strides')), ('padding', padding))
    return MoveSpec(layer.class_name, args)


@LAYERS.register('ZeroPadding1D', 'ZeroPadding2D')
def zero_padding(layer: SourceLayer) -> Spec:
    _channels_last(layer)
    padding = layer.config.get('padding', 1)
    if isinstance(padding, list) and padding and isinstance(padding[0], list):
        nested: tuple = tuple(_ints(p, 'padding') for p in padding)
    else:
        flat = _ints(padding, 'padding')
        nested = flat * 2 if len(flat) == 1 and layer.class_name == 'ZeroPadding1D' else flat  # Keras: an int pads both sides
    return MoveSpec(layer.class_name, (('padding', nested),))


@LAYERS.register('Add', 'Subtract', 'Multiply', 'Concatenate')
def merge(layer: SourceLayer) -> Spec:
    n = len(layer.inbound)
    if n < 2 or (layer.class_name == 'Subtract' and n != 2):
        raise LayerProblem(f'{layer.class_name} needs {"exactly" if layer.class_name == "Subtract" else "at least"} two inputs, got {n}', 're-save the model')
    if layer.class_name != 'Concatenate':
        return MergeSpec(layer.class_name.lower())
    axis = layer.config.get('axis', -1)
    if not isinstance(axis, int):
        raise LayerProblem(f'axis must be an integer, got {axis!r}', 're-save the model')
    return MergeSpec('concatenate', axis)


def _weights(layer: SourceLayer, units: int, kernel_rank: int) -> tuple[np.ndarray, np.ndarray | None]:
    kernel, bias = layer.weight('kernel'), layer.weight('bias')
    use_bias = bool(layer.config.get('use_bias', True))
    if kernel is None or (use_bias and bias is None):
        raise LayerProblem('the weights file has no kernel/bias for this layer', 'pass the weights saved with this model')
    if kernel.ndim != kernel_rank or kernel.shape[-1] != units or (use_bias and bias is not None and bias.shape != (units,)):
        shapes = (kernel.shape, None if bias is None else bias.shape)
        raise LayerProblem(f'weights of shape {shapes} do not fit {units} outputs', 'pass the weights saved with this model')
    for arr in (kernel, bias):
        if arr is not None and not np.all(np.isfinite(arr)):
            raise LayerProblem('the weights contain NaN or Inf', 're-train or re-save the model')
    return kernel, bias if use_bias else None


def _weight_layer(layer: SourceLayer, kind: str, args: dict, units: int, kernel_rank: int) -> Spec:
    kernel, bias = _weights(layer, units, kernel_rank)
    return weight_spec(layer, kind, args, kernel, bias)


def weight_spec(
    layer: SourceLayer, kind: str, args: dict, kernel: np.ndarray, bias: np.ndarray | None,
    position: str = 'kernel', kernel_shape: tuple[int, ...] | None = None, activation: bool = True,
) -> Spec:
    """The HGQ2 weight layer for a source layer: its ``{position}_quantizer`` applied to ``kernel`` (then reshaped
    to ``kernel_shape``, e.g. a depthwise kernel as a grouped convolution's), ``bias_quantizer`` to ``bias``, and
    the source's ``activation=`` (a quantizer, or relu/linear) unless ``activation`` is False."""
    if args.get('kernel_size') is not None:  # Keras allocates the config's kernel shape before any weight is assigned
        shape = kernel_shape or kernel.shape
        size = tuple(args['kernel_size'])
        want = size * (len(shape) - 2) if len(size) == 1 else size
        if want != tuple(shape[: len(shape) - 2]):
            raise LayerProblem(f'kernel_size {size} does not match the saved kernel of shape {kernel.shape}', 'pass the weights saved with this model')
    kq = parse_quantizer(layer.config.get(f'{position}_quantizer'), position)
    bq = parse_quantizer(layer.config.get('bias_quantizer'), 'bias')
    kernel, kernel_fmt = weight_plan(kq, kernel, position)
    if kernel_shape is not None:
        kernel = kernel.reshape(kernel_shape)
        kernel_fmt = FormatArray.covering(kernel) if isinstance(kernel_fmt, FormatArray) else kernel_fmt
    bias, bias_fmt = weight_plan(bq, bias, 'bias') if bias is not None else (None, None)
    act_value = layer.config.get('activation', 'linear') if activation else None
    if act_value is not None and not layer.class_name.startswith('Q') and isinstance(act_value, str):
        act = FloatActivation(act_value)  # a Keras layer: a Keras activation name, checked below
    else:
        act = parse_quantizer(act_value, 'activation') if activation else None
    out_fmt, out_affine, float_act = None, None, 'linear'
    if isinstance(act, FloatActivation) and act.name not in DENSE_ACTIVATIONS:
        rounded = any(q is not None and q.float_rounded(pos) for q, pos in ((kq, position), (bq, 'bias')))
        linear = WeightLayerSpec(kind, args, kernel, bias, kernel_fmt, bias_fmt, 'linear', None, None, rounded)
        return ChainSpec(linear, keras_activation(act.name, layer))
    if isinstance(act, FloatActivation):
        float_act = act.name
    elif act is not None and (two_step := getattr(act, 'two_step', lambda: None)()) is not None:
        rounded = any(q is not None and q.float_rounded(pos) for q, pos in ((kq, position), (bq, 'bias')))
        return ChainSpec(WeightLayerSpec(kind, args, kernel, bias, kernel_fmt, bias_fmt, 'linear', None, None, rounded), two_step)
    elif act is not None:
        out_fmt, out_affine = act.activation_plan()
    rounded = any(q is not None and q.float_rounded(pos) for q, pos in ((kq, position), (bq, 'bias')))
    return WeightLayerSpec(kind, args, kernel, bias, kernel_fmt, bias_fmt, float_act, out_fmt, out_affine, rounded)


@LAYERS.register('QDense', 'Dense')
def dense(layer: SourceLayer) -> Spec:
    units = layer.config.get('units')
    if not isinstance(units, int) or units < 1:
        raise LayerProblem(f'units must be a positive integer, got {units!r}', 're-save the model')
    return _weight_layer(layer, 'dense', {'units': units}, units, 2)


@LAYERS.register('QConv1D', 'QConv2D', 'Conv1D', 'Conv2D')
def conv(layer: SourceLayer) -> Spec:
    cfg = layer.config
    _channels_last(layer)
    rank = 2 if layer.class_name.endswith('2D') else 1
    filters = cfg.get('filters')
    if not isinstance(filters, int) or filters < 1:
        raise LayerProblem(f'filters must be a positive integer, got {filters!r}', 're-save the model')
    _padding(layer)
    if cfg.get('groups', 1) != 1:
        raise LayerProblem(f'groups={cfg.get("groups")} is not converted', 'use groups=1')
    if cfg.get('mask') is not None:
        raise LayerProblem('a QConv2D mask is not converted', 'apply the mask to the kernel and save without it')
    args = {
        'filters': filters,
        'kernel_size': _ints(cfg.get('kernel_size'), 'kernel_size'),
        'strides': _ints(cfg.get('strides', 1), 'strides'),
        'padding': cfg.get('padding', 'valid'),
        'dilation_rate': _ints(cfg.get('dilation_rate', 1), 'dilation_rate'),
    }
    return _weight_layer(layer, f'conv{rank}d', args, filters, rank + 2)


from . import conv_layers, fold, norm_pool_layers, rnn_layers  # noqa: E402,F401  (they register their handlers in LAYERS)
