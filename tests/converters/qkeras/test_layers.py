"""One row per QKeras layer handler: what the handler makes of a saved layer config, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hgqbridge.converters.hgq.composite_specs import AveragePoolSpec, BatchNormSpec, SeparableSpec, SimpleRNNSpec
from hgqbridge.converters.hgq.driver import parse_all
from hgqbridge.converters.hgq.specs import QuantizeSpec, WeightLayerSpec
from hgqbridge.converters.keras import LAYERS as KERAS
from hgqbridge.converters.qkeras import LAYERS
from hgqbridge.errors import LayerProblem, UnsupportedError
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph, SourceLayer

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


RNN_CFG = {'units': 4, 'activation': 'quantized_tanh(6)', 'kernel_quantizer': Q6, 'recurrent_quantizer': Q6, 'bias_quantizer': Q6}
RNN_W = {'d/cell/kernel:0': KERNEL, 'd/cell/recurrent_kernel:0': np.eye(4, dtype=np.float32) / 2, 'd/cell/bias:0': BIAS}


def _handle(cls: str, config: dict, weights: dict, inbound: list[str] | None = None) -> object:
    entry = LAYERS.entry(cls)
    assert entry is not None, f'no handler for {cls}'
    return entry.handler(SourceLayer('d', cls, config, weights, inbound or ['a']))


def _quantized(kind: str, weights: dict, out: FixedFormat | None):
    def test(spec: object) -> bool:
        assert isinstance(spec, WeightLayerSpec) and spec.kind == kind and spec.kernel_fmt == FixedFormat(1, 0, 5)
        assert np.array_equal(spec.kernel, weights['d/kernel:0']) and np.array_equal(spec.bias, BIAS)
        assert spec.out_fmt == out and spec.activation == 'linear'
        return True

    return test


ROWS = [
    ('QActivation', {'activation': 'quantized_relu(6)'}, {}, lambda s: s == QuantizeSpec(FixedFormat(0, 0, 6), None, 2.0**18)),
    ('QActivation', {'activation': 'quantized_sigmoid(4)'}, {}, lambda s: s == QuantizeSpec(FixedFormat(1, 0, 3), (0.5, 0.5))),
    (
        'QDense',
        {'units': 4, 'kernel_quantizer': Q6, 'bias_quantizer': 'quantized_bits(8,3)', 'activation': 'quantized_relu(4,1)'},
        WEIGHTS,
        lambda s: _quantized('dense', WEIGHTS, FixedFormat(0, 1, 3))(s) and s.bias_fmt == FixedFormat(1, 3, 4),
    ),
    ('QConv1D', CONV_CFG, CONV1, lambda s: _quantized('conv1d', CONV1, None)(s) and s.args['padding'] == 'same'),
    ('QConv2D', {**CONV_CFG, 'kernel_size': [3, 3], 'strides': [1, 1]}, CONV2, lambda s: _quantized('conv2d', CONV2, None)(s)),
    ('QDepthwiseConv2D', DW_CFG, {'d/depthwise_kernel:0': DW, 'd/bias:0': B4}, _grouped),
    (
        'QSeparableConv2D',
        {'filters': 3, 'kernel_size': [3, 3], 'depthwise_quantizer': Q6, 'pointwise_quantizer': Q6, 'bias_quantizer': Q6},
        {'d/depthwise_kernel:0': DW, 'd/pointwise_kernel:0': PW2, 'd/bias:0': B3},
        _separable(2),
    ),
    (
        'QSeparableConv1D',
        {'filters': 3, 'kernel_size': [3], 'depthwise_quantizer': Q6, 'pointwise_quantizer': Q6},
        {'d/depthwise_kernel:0': DW1, 'd/pointwise_kernel:0': PW2[0], 'd/bias:0': B3},
        _separable(1),
    ),
    (
        'QConv2DBatchnorm',
        {'filters': 3, 'kernel_size': [3, 3], 'epsilon': 0.0},
        {'d/kernel:0': KC, 'd/bias:0': B3, **{k.replace('d/', 'd/batchnorm/'): v for k, v in BN.items()}},
        _folded,
    ),
    (
        'QDepthwiseConv2DBatchnorm',
        {**DW_CFG, 'epsilon': 0.0, 'depthwise_quantizer': None, 'bias_quantizer': None},
        {
            'd/depthwise_kernel:0': DW,
            'd/bias:0': B4,
            'd/gamma:0': B4 * 0 + 1,
            'd/beta:0': B4 * 0,
            'd/moving_mean:0': B4 * 0,
            'd/moving_variance:0': B4 * 0 + 1,
        },
        lambda s: np.array_equal(s.kernel, DW.reshape(3, 3, 1, 4)) and np.array_equal(s.bias, B4),
    ),
    ('QBatchNormalization', {'axis': -1, 'epsilon': 0.001}, BN, _batchnorm(True)),
    ('QAveragePooling2D', {'pool_size': [2, 2], 'average_quantizer': 'quantized_bits(8,0,alpha=1)'}, {}, _pool(2, False, '')),
    ('QGlobalAveragePooling2D', {'average_quantizer': 'quantized_bits(8,0,alpha=1)'}, {}, _pool(2, True, '')),
    (
        'QSimpleRNN',
        {**RNN_CFG, 'state_quantizer': 'quantized_bits(8,2,alpha=1)'},
        RNN_W,
        lambda s: (
            isinstance(s, SimpleRNNSpec)
            and s.activation_fmt == FixedFormat(1, 0, 5)
            and s.state_fmt is None
            and s.kernel_fmt == FixedFormat(1, 0, 5)
        ),
    ),
]


@pytest.mark.parametrize('cls, config, weights, check', ROWS, ids=[f'{r[0]}-{n}' for n, r in enumerate(ROWS)])
def test_handler(cls: str, config: dict, weights: dict, check: object) -> None:
    assert check(_handle(cls, config, weights)) is True  # type: ignore[operator]


def test_every_handler_has_a_row() -> None:
    assert sorted(LAYERS.names()) == sorted({r[0] for r in ROWS})


@pytest.mark.parametrize(
    'cls, config, weights, message',
    [
        ('QDense', {'units': 4, 'kernel_quantizer': Q6}, {}, 'no kernel'),
        ('QDense', {'units': 5, 'kernel_quantizer': Q6}, WEIGHTS, 'do not fit'),
        ('QDense', {'units': 4, 'kernel_quantizer': "quantized_bits(6,0,alpha='best')"}, WEIGHTS, 'unknown alpha'),
        ('QDense', {'units': 4, 'activation': 'sigmoid'}, WEIGHTS, 'sigmoid'),
        ('QDense', {'units': 4}, {'d/kernel:0': KERNEL * np.nan, 'd/bias:0': BIAS}, 'NaN'),
        ('QConv2D', {**CONV_CFG, 'kernel_size': [3, 3], 'groups': 2}, CONV2, 'groups'),
        ('QConv1D', {**CONV_CFG, 'padding': 'causal'}, CONV1, 'causal'),
        ('QConv2D', {**CONV_CFG, 'kernel_size': [3, 3], 'data_format': 'channels_first'}, CONV2, 'channels_first'),
        ('QConv2D', {**CONV_CFG, 'kernel_size': [3, 3], 'mask': [[1]]}, CONV2, 'mask'),
        ('QConv1D', CONV_CFG, CONV2, 'do not fit'),
        ('QDense', {'units': 4, 'kernel_quantizer': "quantized_bits(1,0,alpha='auto')"}, WEIGHTS, 'zero levels'),
        ('QActivation', {'activation': 'binary()'}, {}, 'comparison'),
        ('QActivation', {'activation': 'ternary()'}, {}, 'comparisons'),
        ('QActivation', {'activation': 'quantized_relu_po2(4)'}, {}, 'never to 0'),
        ('QActivation', {'activation': 'quantized_bits(1,0,alpha=1)'}, {}, 'sign function'),
        ('QDense', {'units': 4, 'kernel_quantizer': "ternary(alpha='auto',threshold=0.3)"}, WEIGHTS, 'takes no threshold'),
        ('QDense', {'units': 4, 'kernel_quantizer': 'quantized_relu_po2(4,negative_slope=0.3)'}, WEIGHTS, 'power of two'),
        ('QAveragePooling2D', {'pool_size': [3, 3], 'average_quantizer': 'quantized_bits(4,0,alpha=1)'}, {}, 'rounds 1/9'),
        (
            'QSeparableConv2D',
            {'filters': 5, 'kernel_size': [3, 3]},
            {'d/depthwise_kernel:0': DW, 'd/pointwise_kernel:0': PW2},
            'pointwise kernel',
        ),
        ('QConv2DBatchnorm', {'filters': 3, 'kernel_size': [3, 3]}, {'d/kernel:0': KC}, 'moving_mean'),
        ('QBatchNormalization', {'axis': -1}, {k: v for k, v in BN.items() if 'gamma' not in k}, 'gamma'),
        ('QSimpleRNN', {**RNN_CFG, 'state_quantizer': 'quantized_bits(4,0,alpha=1)'}, RNN_W, 'enable_sq'),
        ('QSimpleRNN', {**RNN_CFG, 'activation': 'tanh'}, RNN_W, 'tanh'),
        ('QSimpleRNN', {**RNN_CFG, 'stateful': True}, RNN_W, 'stateful'),
        ('QSimpleRNN', RNN_CFG, {k: v for k, v in RNN_W.items() if 'recurrent' not in k}, 'recurrent_kernel'),
    ],
)
def test_handler_refuses(cls: str, config: dict, weights: dict, message: str) -> None:
    with pytest.raises(LayerProblem, match=message):
        _handle(cls, config, weights, ['a', 'b'])


def test_auto_po2_kernel_is_precomputed_exactly() -> None:
    """alpha=None on a kernel is auto_po2: the weights arrive quantized, with per-channel formats holding them."""
    spec = _handle('QDense', {'units': 4, 'kernel_quantizer': 'quantized_bits(4,0)'}, WEIGHTS)
    assert not np.array_equal(spec.kernel, KERNEL)
    assert np.array_equal(spec.kernel_fmt.quantize(spec.kernel), spec.kernel)
    steps = spec.kernel / 2.0**-spec.kernel_fmt.f
    assert np.array_equal(steps, np.round(steps)) and np.abs(steps).max() <= 7  # 4-bit symmetric codes


def test_all_problems_are_collected() -> None:
    layers = [
        SourceLayer('in', 'InputLayer', {'batch_input_shape': [None, 3]}),
        SourceLayer('lam', 'Lambda', {}, inbound=['in']),
        SourceLayer('mystery', 'MyCustomLayer', {}, inbound=['lam']),
        SourceLayer('q', 'QActivation', {'activation': 'bernoulli()'}, inbound=['mystery']),
    ]
    graph = SourceGraph('m', layers, ['in'], ['q'], Path('m.h5'))
    with pytest.raises(UnsupportedError) as info:
        parse_all(graph, (KERAS, LAYERS))
    text = str(info.value)
    assert [p.layer for p in info.value.problems] == ['m/lam (Lambda)', 'm/mystery (MyCustomLayer)', 'm/q (QActivation)']
    assert 'bytecode' in text and "'MyCustomLayer' is not supported" in text and 'random numbers at inference' in text
