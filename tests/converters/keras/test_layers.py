"""One row per plain Keras layer handler: what the handler makes of a saved layer config, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from hgqbridge.converters.hgq.composite_specs import AveragePoolSpec, BatchNormSpec, ChainSpec, SeparableSpec
from hgqbridge.converters.hgq.specs import FloatActivationSpec, IdentitySpec, InputSpec, MergeSpec, MoveSpec, WeightLayerSpec
from hgqbridge.converters.keras import LAYERS
from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceLayer

KERNEL = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
BIAS = np.array([0.1, -0.2, 0.3, 0.0], dtype=np.float32)
Q6 = {'class_name': 'quantized_bits', 'config': {'bits': 6, 'integer': 0, 'alpha': 1}}
WEIGHTS = {'d/kernel:0': KERNEL, 'd/bias:0': BIAS}
CONV1 = {'d/kernel:0': np.ones((3, 2, 4), np.float32) / 4, 'd/bias:0': BIAS}
CONV2 = {'d/kernel:0': np.ones((3, 3, 2, 4), np.float32) / 4, 'd/bias:0': BIAS}
CONV_CFG = {'filters': 4, 'kernel_size': [3], 'strides': [1], 'padding': 'same', 'kernel_quantizer': Q6, 'bias_quantizer': Q6}

DW = np.linspace(-1, 1, 3 * 3 * 2 * 2, dtype=np.float32).reshape(3, 3, 2, 2)
DW1 = DW[0]  # (3, 2, 2): a 1-D depthwise kernel
PW2 = np.linspace(-0.5, 0.5, 4 * 3, dtype=np.float32).reshape(1, 1, 4, 3)
B3, B4 = np.array([0.5, -0.25, 0.125], np.float32), np.array([0.5, -0.25, 0.125, 1.0], np.float32)
BN = {
    'd/gamma:0': np.array([1.0, 0.5, 2.0], np.float32),
    'd/beta:0': B3,
    'd/moving_mean:0': np.array([0.25, 0.0, -0.5], np.float32),
    'd/moving_variance:0': np.array([1.0, 4.0, 0.25], np.float32),
}
KC = CONV2['d/kernel:0'][..., :3]
DW_CFG = {'kernel_size': [3, 3], 'depth_multiplier': 2, 'padding': 'same', 'depthwise_quantizer': Q6, 'bias_quantizer': Q6}


def _grouped(spec: object) -> bool:
    """A depthwise kernel (3, 3, C=2, dm=2) becomes a grouped convolution: groups=2, 4 filters, kernel (3, 3, 1, 4)."""
    assert isinstance(spec, WeightLayerSpec) and spec.kind == 'conv2d' and spec.args['groups'] == 2 and spec.args['filters'] == 4
    assert np.array_equal(spec.kernel, DW.reshape(3, 3, 1, 4)) and spec.kernel_fmt == FixedFormat(1, 0, 5)
    return True


def _separable(rank: int):
    def test(spec: object) -> bool:
        assert isinstance(spec, SeparableSpec) and spec.depthwise.bias is None and spec.depthwise.args['groups'] == 2
        assert spec.pointwise.args == {'filters': 3, 'kernel_size': (1,) * rank} and np.array_equal(spec.pointwise.bias, B3)
        assert spec.depthwise.kernel.shape == (*(3,) * rank, 1, 4)
        return True

    return test


def _folded(spec: object) -> bool:
    """kernel * gamma / sqrt(var + eps), bias (b - mean) * inv + beta, with eps 0 here so the values are exact."""
    inv = np.array([1.0, 0.25, 4.0], np.float32)
    assert isinstance(spec, WeightLayerSpec) and np.array_equal(spec.kernel, KC * inv)
    assert np.array_equal(spec.bias, (B3 - BN['d/moving_mean:0']) * inv + B3)
    return True


def _batchnorm(quantized: bool):
    def test(spec: object) -> bool:
        assert isinstance(spec, BatchNormSpec) and spec.epsilon == 0.001
        scale, offset = spec.scale_offset()
        assert np.array_equal(scale, (np.float32(1) / np.sqrt(spec.variance + np.float32(0.001))) * spec.gamma)
        if quantized:  # the defaults: power-of-two mean and beta (quantized_po2(5)), so 0 becomes 2^-8
            assert spec.mean[1] == 2.0**-8 and np.array_equal(spec.beta, B3)
        else:
            assert np.array_equal(spec.mean, BN['d/moving_mean:0'])
        return True

    return test


def _pool(rank: int, global_pool: bool, why: str):
    def test(spec: object) -> bool:
        assert isinstance(spec, AveragePoolSpec) and (spec.rank, spec.global_pool) == (rank, global_pool)
        assert why in spec.float_divide if why else not spec.float_divide
        return True

    return test


def _handle(cls: str, config: dict, weights: dict, inbound: list[str]) -> object:
    entry = LAYERS.entry(cls)
    assert entry is not None, f'no handler for {cls}'
    return entry.handler(SourceLayer('d', cls, config, weights, inbound))


def _float_weights(kind: str, weights: dict):
    def test(spec: object) -> bool:
        assert isinstance(spec, WeightLayerSpec) and spec.kind == kind and spec.kernel_fmt is None and spec.bias_fmt is None
        assert np.array_equal(spec.kernel, weights['d/kernel:0']) and np.array_equal(spec.bias, BIAS)
        return True

    return test


ROWS = [
    ('InputLayer', {'batch_input_shape': [None, 3]}, {}, lambda s: s == InputSpec((None, 3))),
    ('Activation', {'activation': 'relu'}, {}, lambda s: s == FloatActivationSpec('relu')),
    ('Softmax', {'axis': -1}, {}, lambda s: s == FloatActivationSpec('softmax')),
    ('Dropout', {'rate': 0.2}, {}, lambda s: s == IdentitySpec('Dropout does nothing at inference')),
    ('ReLU', {'max_value': None, 'negative_slope': 0.0, 'threshold': 0.0}, {}, lambda s: s == FloatActivationSpec('relu')),
    ('Flatten', {}, {}, lambda s: s == MoveSpec('Flatten')),
    ('Permute', {'dims': [2, 1]}, {}, lambda s: s == MoveSpec('Permute', (('dims', (2, 1)),))),
    ('Reshape', {'target_shape': [2, 3]}, {}, lambda s: s == MoveSpec('Reshape', (('target_shape', (2, 3)),))),
    (
        'MaxPooling1D',
        {'pool_size': [2], 'strides': None},
        {},
        lambda s: s == MoveSpec('MaxPooling1D', (('pool_size', (2,)), ('strides', (2,)), ('padding', 'valid'))),
    ),
    (
        'MaxPooling2D',
        {'pool_size': [2, 2], 'strides': [1, 1], 'padding': 'same'},
        {},
        lambda s: s == MoveSpec('MaxPooling2D', (('pool_size', (2, 2)), ('strides', (1, 1)), ('padding', 'same'))),
    ),
    ('ZeroPadding1D', {'padding': [1, 2]}, {}, lambda s: s == MoveSpec('ZeroPadding1D', (('padding', (1, 2)),))),
    (
        'ZeroPadding2D',
        {'padding': [[0, 1], [1, 0]]},
        {},
        lambda s: s == MoveSpec('ZeroPadding2D', (('padding', ((0, 1), (1, 0))),)),
    ),
    ('Add', {}, {}, lambda s: s == MergeSpec('add')),
    ('Subtract', {}, {}, lambda s: s == MergeSpec('subtract')),
    ('Multiply', {}, {}, lambda s: s == MergeSpec('multiply')),
    ('Maximum', {}, {}, lambda s: s == MergeSpec('maximum')),
    ('Minimum', {}, {}, lambda s: s == MergeSpec('minimum')),
    ('Average', {}, {}, lambda s: s == MergeSpec('average')),
    ('Concatenate', {'axis': -1}, {}, lambda s: s == MergeSpec('concatenate', -1)),
    ('Dense', {'units': 4, 'activation': 'relu'}, WEIGHTS, _float_weights('dense', WEIGHTS)),
    ('Conv1D', {'filters': 4, 'kernel_size': [3]}, CONV1, _float_weights('conv1d', CONV1)),
    ('Conv2D', {'filters': 4, 'kernel_size': [3, 3]}, CONV2, _float_weights('conv2d', CONV2)),
    (
        'DepthwiseConv2D',
        {**DW_CFG, 'depthwise_quantizer': None, 'use_bias': False},
        {'d/depthwise_kernel:0': DW},
        lambda s: s.kernel_fmt is None and s.bias is None and s.args['groups'] == 2,
    ),
    (
        'SeparableConv2D',
        {'filters': 3, 'kernel_size': [3, 3]},
        {'d/depthwise_kernel:0': DW, 'd/pointwise_kernel:0': PW2, 'd/bias:0': B3},
        _separable(2),
    ),
    (
        'SeparableConv1D',
        {'filters': 3, 'kernel_size': [3]},
        {'d/depthwise_kernel:0': DW1, 'd/pointwise_kernel:0': PW2[0], 'd/bias:0': B3},
        _separable(1),
    ),
    ('BatchNormalization', {'axis': [1], 'epsilon': 0.001}, BN, _batchnorm(False)),
    ('AveragePooling2D', {'pool_size': [3, 3]}, {}, _pool(2, False, 'area of 9')),
    ('AveragePooling1D', {'pool_size': [2], 'padding': 'same'}, {}, _pool(1, False, "'same' padding")),
    ('GlobalAveragePooling2D', {}, {}, _pool(2, True, '')),
    ('GlobalAveragePooling1D', {}, {}, _pool(1, True, '')),
]


@pytest.mark.parametrize('cls, config, weights, check', ROWS, ids=[f'{r[0]}-{n}' for n, r in enumerate(ROWS)])
def test_handler(cls: str, config: dict, weights: dict, check: object) -> None:
    inbound = ['a', 'b'] if cls in ('Add', 'Subtract', 'Multiply', 'Maximum', 'Minimum', 'Average', 'Concatenate') else ['a']
    assert check(_handle(cls, config, weights, inbound)) is True  # type: ignore[operator]


def test_every_handler_has_a_row() -> None:
    assert sorted(LAYERS.names()) == sorted({r[0] for r in ROWS})


def test_a_float_activation_inside_a_dense_layer_follows_it() -> None:
    spec = _handle('Dense', {'units': 4, 'activation': 'tanh'}, WEIGHTS, ['a'])
    assert isinstance(spec, ChainSpec) and spec.second == FloatActivationSpec('tanh') and spec.first.activation == 'linear'


@pytest.mark.parametrize(
    'cls, config, weights, message',
    [
        ('InputLayer', {'batch_input_shape': [None, None]}, {}, 'static'),
        ('Activation', {'activation': 'hard_sigmoid'}, {}, 'define it differently'),
        ('Flatten', {'data_format': 'channels_first'}, {}, 'channels_first'),
        ('Reshape', {'target_shape': 'abc'}, {}, 'target_shape'),
        ('ReLU', {'max_value': 6.0}, {}, 'max_value'),
        ('Permute', {'dims': [1, 1]}, {}, 'permutation'),
        ('Concatenate', {'axis': 'x'}, {}, 'axis'),
        ('Subtract', {}, {}, 'exactly two'),
        ('Average', {}, {}, 'divides their sum by 3'),
        ('GlobalAveragePooling2D', {'keepdims': True}, {}, 'keepdims'),
        ('Dense', {'units': 4, 'activation': 'mystery'}, WEIGHTS, 'mystery'),
        ('Dense', {'units': 4}, {'d/kernel:0': KERNEL * np.nan, 'd/bias:0': BIAS}, 'NaN'),
        ('Conv2D', {'filters': 4, 'kernel_size': [5, 5]}, CONV2, 'does not match the saved kernel'),
        ('Softmax', {'axis': 1}, {}, 'axis'),
        ('BatchNormalization', {'axis': -1}, {**BN, 'd/moving_variance:0': -BN['d/moving_variance:0']}, 'variance'),
    ],
)
def test_handler_refuses(cls: str, config: dict, weights: dict, message: str) -> None:
    with pytest.raises(LayerProblem, match=message):
        _handle(cls, config, weights, ['a', 'b', 'c'] if cls != 'Subtract' else ['a', 'b', 'c'])
