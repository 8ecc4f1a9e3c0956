"""Plain Keras layers: one handler per class name, SourceLayer -> HGQ2 build spec; and the helpers the QKeras
handlers build on (a QKeras layer is its Keras layer plus quantizers).

A handler reads the saved config and weights and returns a spec from ``converters.hgq``; it raises
``LayerProblem`` for anything it cannot convert. It never touches TensorFlow. A float layer stays float (HGQ2
dummy quantizers) or gets the float policy's formats when the model is quantized (``converters.hgq.policy``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer
from hgqbridge.numerics import finite

from ..hgq.composite_specs import ChainSpec
from ..hgq.specs import FloatActivationSpec, IdentitySpec, InputSpec, MergeSpec, MoveSpec, Spec, WeightLayerSpec
from .registry import LAYERS

KB = ('kernel', 'bias')
EXACT = 'converted exactly'
FLOAT = 'float: kept float (HGQ2 dummy quantizers), or quantized by the float policy (--bits, --calibration)'
MOVE = 'exact: moves values only (a quantizer before it moves into the next layer)'

#: Keras activation names a float model may use; they stay float (dummy) or become QSoftmax / QUnaryFunctionLUT.
#: 'hard_sigmoid' is absent on purpose: Keras 2 (0.2x + 0.5) and Keras 3 (relu6(x + 3) / 6) define it differently.
KERAS_ACTIVATIONS = (
    'linear',
    'relu',
    'softmax',
    'sigmoid',
    'tanh',
    'swish',
    'silu',
    'gelu',
    'elu',
    'selu',
    'softplus',
    'softsign',
    'exponential',
    'relu6',
    'mish',
    'hard_silu',
    'hard_swish',
    'leaky_relu',
)
#: Float activations a dense or convolution layer can carry itself (exact on fixed-point values).
DENSE_ACTIVATIONS = ('linear', 'relu')

LAYERS.refuse(
    'Lambda', 'a Lambda layer holds Python bytecode, which hgqbridge never executes', 'rewrite the layer with supported layers'
)
for _name in ('LSTM', 'GRU', 'SimpleRNN', 'Bidirectional', 'ConvLSTM2D'):
    LAYERS.refuse(
        _name,
        'float recurrent Keras layers are not converted (HGQ2 recurrent layers quantize their state every step)',
        'use QKeras QSimpleRNN, or unroll the recurrence into Dense layers',
    )


# ---- helpers shared with the QKeras handlers -------------------------------------------------------------------------


def channels_last(layer: SourceLayer) -> None:
    if layer.config.get('data_format', 'channels_last') not in (None, 'channels_last'):
        raise LayerProblem(f'data_format={layer.config["data_format"]!r} is not converted', 'save the model channels_last')


def padding(layer: SourceLayer) -> str:
    value = layer.config.get('padding', 'valid')
    if value not in ('valid', 'same'):
        raise LayerProblem(f'padding={value!r} is not converted', "use 'valid' or 'same'")
    return value


def ints(value: object, what: str) -> tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise LayerProblem(f'{what} must be non-negative integers', 're-save the model', received=value)
    return values


def positive_int(layer: SourceLayer, key: str) -> int:
    value = layer.config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LayerProblem(f'{key} must be a positive integer', 're-save the model', received=value)
    return value


def kernel_and_bias(layer: SourceLayer, units: int, kernel_rank: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The saved kernel (of rank ``kernel_rank``, ``units`` outputs) and bias (None without use_bias), checked."""
    kernel, bias = layer.weight('kernel'), layer.weight('bias')
    use_bias = bool(layer.config.get('use_bias', True))
    if kernel is None or (use_bias and bias is None):
        raise LayerProblem('the weights file has no kernel/bias for this layer', 'pass the weights saved with this model')
    if kernel.ndim != kernel_rank or kernel.shape[-1] != units or (use_bias and bias is not None and bias.shape != (units,)):
        raise LayerProblem(
            f'weights do not fit {units} outputs',
            'pass the weights saved with this model',
            received=(kernel.shape, None if bias is None else bias.shape),
        )
    finite('the weights', kernel, bias)
    return kernel, bias if use_bias else None


def check_kernel_size(args: dict[str, Any], shape: tuple[int, ...], saved: tuple[int, ...], position: str = 'kernel') -> None:
    """Keras allocates the config's kernel shape before any weight is assigned: it must be the saved kernel's."""
    if args.get('kernel_size') is None:
        return
    size = tuple(args['kernel_size'])
    want = size * (len(shape) - 2) if len(size) == 1 else size
    if want != tuple(shape[: len(shape) - 2]):
        raise LayerProblem(
            f'kernel_size {size} does not match the saved {position} of shape {saved}', 'pass the weights saved with this model'
        )


def keras_activation(name: object) -> Spec:
    """A Keras (not QKeras) activation name: removed (linear), or a float activation spec."""
    if not isinstance(name, str) or name not in KERAS_ACTIVATIONS:
        why = ' (Keras 2 and Keras 3 define it differently)' if name == 'hard_sigmoid' else ''
        raise LayerProblem(f'Keras activation {name!r} is not converted{why}', f'use one of {", ".join(KERAS_ACTIVATIONS)}')
    return IdentitySpec('linear activation') if name == 'linear' else FloatActivationSpec(name)


def float_weight_spec(
    layer: SourceLayer,
    kind: str,
    args: dict,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    *,
    kernel_shape: tuple[int, ...] | None = None,
    position: str = 'kernel',
    activation: bool = True,
) -> Spec:
    """A float Keras weight layer: its ``position`` kernel (reshaped to ``kernel_shape``) and bias without formats,
    and its ``activation=`` inside (relu, linear) or as a float activation after it."""
    check_kernel_size(args, kernel_shape or kernel.shape, kernel.shape, position)
    kernel = kernel.reshape(kernel_shape) if kernel_shape is not None else kernel
    act = layer.config.get('activation', 'linear') if activation else 'linear'
    if act in DENSE_ACTIVATIONS:
        return WeightLayerSpec(kind, args, kernel, bias, None, None, str(act))
    return ChainSpec(WeightLayerSpec(kind, args, kernel, bias, None, None, 'linear'), keras_activation(act))


def conv_args(layer: SourceLayer) -> dict[str, Any]:
    """kernel_size, strides, padding, dilation_rate of a convolution (channels last, groups 1)."""
    cfg = layer.config
    channels_last(layer)
    if cfg.get('groups', 1) != 1:
        raise LayerProblem(f'groups={cfg.get("groups")} is not converted', 'use groups=1')
    return {
        'kernel_size': ints(cfg.get('kernel_size'), 'kernel_size'),
        'strides': ints(cfg.get('strides', 1), 'strides'),
        'padding': padding(layer),
        'dilation_rate': ints(cfg.get('dilation_rate', 1), 'dilation_rate'),
    }


WeightSpecMaker = Callable[..., Spec]


def dense_layer(layer: SourceLayer, make: WeightSpecMaker) -> Spec:
    units = positive_int(layer, 'units')
    kernel, bias = kernel_and_bias(layer, units, 2)
    return make(layer, 'dense', {'units': units}, kernel, bias)


def conv_layer(layer: SourceLayer, rank: int, make: WeightSpecMaker) -> Spec:
    filters = positive_int(layer, 'filters')
    if layer.config.get('mask') is not None:
        raise LayerProblem('a convolution mask is not converted', 'apply the mask to the kernel and save without it')
    args = {'filters': filters, **conv_args(layer)}
    kernel, bias = kernel_and_bias(layer, filters, rank + 2)
    return make(layer, f'conv{rank}d', args, kernel, bias)


def merge(layer: SourceLayer, op: str, exactly_two: bool = False) -> Spec:
    n = len(layer.inbound)
    if n < 2 or (exactly_two and n != 2):
        raise LayerProblem(
            f'{layer.class_name} needs {"exactly" if exactly_two else "at least"} two inputs', 're-save the model', received=n
        )
    return MergeSpec(op)


def pooling_args(layer: SourceLayer, rank: int) -> tuple[tuple[str, Any], ...]:
    channels_last(layer)
    cfg = layer.config
    pool = ints(cfg.get('pool_size', 2), 'pool_size')
    pool = pool * rank if len(pool) == 1 else pool
    return (('pool_size', pool), ('strides', ints(cfg.get('strides') or pool, 'strides')), ('padding', padding(layer)))


# ---- handlers ------------------------------------------------------------------------------------------------------------


@LAYERS.register('InputLayer', status=EXACT, builds=('InputLayer',))
def input_layer(layer: SourceLayer) -> Spec:
    shape = layer.config.get('batch_input_shape') or layer.config.get('batch_shape')
    if not isinstance(shape, list) or len(shape) < 2 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise LayerProblem('the input shape must be static', 'give the model a fixed input shape', received=shape)
    return InputSpec(tuple(shape))


@LAYERS.register(
    'Activation',
    status='relu exact; linear removed; others float, or QSoftmax / QUnaryFunctionLUT when quantized',
    builds=('ReLU', 'Activation', 'QSoftmax', 'QUnaryFunctionLUT'),
)
def activation(layer: SourceLayer) -> Spec:
    return keras_activation(layer.config.get('activation'))


@LAYERS.register(
    'Softmax',
    status='a float softmax: kept float, or HGQ2 QSoftmax when a float model is quantized',
    builds=('Activation', 'QSoftmax'),
)
def softmax(layer: SourceLayer) -> Spec:
    axis = layer.config.get('axis', -1)
    if axis not in (-1, [-1]):
        raise LayerProblem(f'softmax over axis {axis!r} is not converted', 'use the last axis')
    return FloatActivationSpec('softmax')


@LAYERS.register(
    'ReLU',
    status='exact: max(x, 0) (max_value, negative_slope and threshold other than the defaults are not converted)',
    builds=('ReLU',),
)
def relu(layer: SourceLayer) -> Spec:
    cfg = layer.config
    if cfg.get('max_value') is not None or cfg.get('negative_slope', 0) or cfg.get('threshold', 0):
        raise LayerProblem(
            'a ReLU with max_value, negative_slope or threshold is not converted',
            'use a plain ReLU',
            received={k: cfg.get(k) for k in ('max_value', 'negative_slope', 'threshold')},
        )
    return FloatActivationSpec('relu')


@LAYERS.register('Dropout', status='exact: removed (nothing at inference)')
def dropout(layer: SourceLayer) -> Spec:
    return IdentitySpec('Dropout does nothing at inference')


@LAYERS.register('Flatten', status=MOVE, builds=('Flatten',))
def flatten(layer: SourceLayer) -> Spec:
    channels_last(layer)
    return MoveSpec('Flatten')


@LAYERS.register('Reshape', status=MOVE, builds=('Reshape',))
def reshape(layer: SourceLayer) -> Spec:
    shape = layer.config.get('target_shape')
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and (d > 0 or d == -1) for d in shape):
        raise LayerProblem('target_shape must be a list of positive integers', 're-save the model', received=shape)
    return MoveSpec('Reshape', (('target_shape', tuple(shape)),))


@LAYERS.register('Permute', status=MOVE, builds=('Permute',))
def permute(layer: SourceLayer) -> Spec:
    dims = layer.config.get('dims')
    if not isinstance(dims, (list, tuple)) or sorted(dims) != list(range(1, len(dims) + 1)):
        raise LayerProblem('dims must be a permutation of 1..rank', 're-save the model', received=dims)
    return MoveSpec('Permute', (('dims', tuple(dims)),))


def _max_pooling(layer: SourceLayer, rank: int) -> Spec:
    return MoveSpec(f'MaxPooling{rank}D', pooling_args(layer, rank))


@LAYERS.register('MaxPooling1D', status=MOVE, builds=('MaxPooling1D',))
def max_pooling_1d(layer: SourceLayer) -> Spec:
    return _max_pooling(layer, 1)


@LAYERS.register('MaxPooling2D', status=MOVE, builds=('MaxPooling2D',))
def max_pooling_2d(layer: SourceLayer) -> Spec:
    return _max_pooling(layer, 2)


@LAYERS.register('ZeroPadding1D', status=MOVE, builds=('ZeroPadding1D',))
def zero_padding_1d(layer: SourceLayer) -> Spec:
    channels_last(layer)
    flat = ints(layer.config.get('padding', 1), 'padding')
    return MoveSpec('ZeroPadding1D', (('padding', flat * 2 if len(flat) == 1 else flat),))  # an int pads both sides


@LAYERS.register('ZeroPadding2D', status=MOVE, builds=('ZeroPadding2D',))
def zero_padding_2d(layer: SourceLayer) -> Spec:
    channels_last(layer)
    value = layer.config.get('padding', 1)
    if isinstance(value, list) and value and isinstance(value[0], list):
        return MoveSpec('ZeroPadding2D', (('padding', tuple(ints(p, 'padding') for p in value)),))
    return MoveSpec('ZeroPadding2D', (('padding', ints(value, 'padding')),))


@LAYERS.register('Add', status=EXACT, builds=('QAdd',))
def add(layer: SourceLayer) -> Spec:
    return merge(layer, 'add')


@LAYERS.register('Subtract', status=EXACT, builds=('QSubtract',))
def subtract(layer: SourceLayer) -> Spec:
    return merge(layer, 'subtract', exactly_two=True)


@LAYERS.register('Multiply', status=EXACT, builds=('QMultiply',))
def multiply(layer: SourceLayer) -> Spec:
    return merge(layer, 'multiply')


@LAYERS.register('Maximum', status=EXACT, builds=('QMaximum',))
def maximum(layer: SourceLayer) -> Spec:
    return merge(layer, 'maximum')


@LAYERS.register('Minimum', status=EXACT, builds=('QMinimum',))
def minimum(layer: SourceLayer) -> Spec:
    return merge(layer, 'minimum')


AVERAGE_STATUS = 'exact for 2, 4, 8, ... inputs (a sum times 2^-k); other counts divide by a non-power of two: refused'


@LAYERS.register('Average', status=AVERAGE_STATUS, builds=('QAveragePow2',))
def average(layer: SourceLayer) -> Spec:
    spec = merge(layer, 'average')
    n = len(layer.inbound)
    if n & (n - 1):
        raise LayerProblem(
            f'Average of {n} inputs divides their sum by {n}, which no fixed-point format holds exactly',
            'average 2, 4, 8, ... inputs, or use Add and fold the 1/n scale into the next layer',
            received=n,
        )
    return spec


@LAYERS.register('Concatenate', status=EXACT, builds=('Concatenate',))
def concatenate(layer: SourceLayer) -> Spec:
    merge(layer, 'concatenate')
    axis = layer.config.get('axis', -1)
    if not isinstance(axis, int):
        raise LayerProblem('axis must be an integer', 're-save the model', received=axis)
    return MergeSpec('concatenate', axis)


@LAYERS.register('Dense', status=FLOAT, weights=KB, builds=('QDense',))
def dense(layer: SourceLayer) -> Spec:
    return dense_layer(layer, float_weight_spec)


@LAYERS.register('Conv1D', status=FLOAT, weights=KB, builds=('QConv1D',))
def conv1d(layer: SourceLayer) -> Spec:
    return conv_layer(layer, 1, float_weight_spec)


@LAYERS.register('Conv2D', status=FLOAT, weights=KB, builds=('QConv2D',))
def conv2d(layer: SourceLayer) -> Spec:
    return conv_layer(layer, 2, float_weight_spec)
