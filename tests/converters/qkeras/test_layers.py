"""One row per QKeras layer handler: what the handler makes of a saved layer config, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hgqbridge.converters.hgq.build import (
    FloatActivationSpec,
    IdentitySpec,
    InputSpec,
    MergeSpec,
    MoveSpec,
    QuantizeSpec,
    WeightLayerSpec,
)
from hgqbridge.converters.hgq.driver import parse_all
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

ROWS = [
    ('InputLayer', {'batch_input_shape': [None, 3]}, {}, InputSpec((None, 3))),
    ('QActivation', {'activation': 'quantized_relu(6)'}, {}, QuantizeSpec(FixedFormat(0, 0, 6))),
    ('QActivation', {'activation': 'quantized_sigmoid(4)'}, {}, QuantizeSpec(FixedFormat(1, 0, 3), (0.5, 0.5))),
    ('Activation', {'activation': 'relu'}, {}, FloatActivationSpec('relu')),
    ('Dropout', {'rate': 0.2}, {}, IdentitySpec('Dropout does nothing at inference')),
    ('Flatten', {}, {}, MoveSpec('Flatten')),
    ('Reshape', {'target_shape': [2, 3]}, {}, MoveSpec('Reshape', (('target_shape', (2, 3)),))),
    ('MaxPooling1D', {'pool_size': [2], 'strides': None}, {}, MoveSpec('MaxPooling1D', (('pool_size', (2,)), ('strides', (2,)), ('padding', 'valid')))),
    ('MaxPooling2D', {'pool_size': [2, 2], 'strides': [1, 1], 'padding': 'same'}, {},
     MoveSpec('MaxPooling2D', (('pool_size', (2, 2)), ('strides', (1, 1)), ('padding', 'same')))),
    ('ZeroPadding1D', {'padding': [1, 2]}, {}, MoveSpec('ZeroPadding1D', (('padding', (1, 2)),))),
    ('ZeroPadding2D', {'padding': [[0, 1], [1, 0]]}, {}, MoveSpec('ZeroPadding2D', (('padding', ((0, 1), (1, 0))),))),
    ('Add', {}, {}, MergeSpec('add')),
    ('Concatenate', {'axis': -1}, {}, MergeSpec('concatenate', -1)),
    ('QDense', {'units': 4, 'kernel_quantizer': Q6, 'bias_quantizer': 'quantized_bits(8,3)', 'activation': 'quantized_relu(4,1)'}, WEIGHTS, 'dense'),
    ('Dense', {'units': 4, 'activation': 'relu'}, WEIGHTS, 'dense'),
    ('QConv1D', CONV_CFG, CONV1, 'conv1d'),
    ('QConv2D', {**CONV_CFG, 'kernel_size': [3, 3], 'strides': [1, 1]}, CONV2, 'conv2d'),
    ('Conv1D', {'filters': 4, 'kernel_size': [3]}, CONV1, 'conv1d'),
    ('Conv2D', {'filters': 4, 'kernel_size': [3, 3]}, CONV2, 'conv2d'),
]


@pytest.mark.parametrize('cls, config, weights, expected', ROWS, ids=[f'{r[0]}-{n}' for n, r in enumerate(ROWS)])
def test_handler(cls: str, config: dict, weights: dict, expected: object) -> None:
    inbound = ['a', 'b'] if cls in ('Add', 'Concatenate') else ['a']
    spec = LAYERS.get(cls)(SourceLayer('d', cls, config, weights, inbound))  # type: ignore[misc]
    if not isinstance(expected, str):
        assert spec == expected
        return
    assert isinstance(spec, WeightLayerSpec) and spec.kind == expected
    assert np.array_equal(spec.kernel, weights['d/kernel:0']) and np.array_equal(spec.bias, BIAS)
    if cls == 'QDense':
        assert spec.kernel_fmt == FixedFormat(1, 0, 5) and spec.bias_fmt == FixedFormat(1, 3, 4)
        assert spec.out_fmt == FixedFormat(0, 1, 3) and spec.activation == 'linear'
    elif cls.startswith('Q'):
        assert spec.kernel_fmt == FixedFormat(1, 0, 5) and spec.args['padding'] == 'same'
    else:
        assert spec.kernel_fmt is None


def test_every_handler_has_a_row() -> None:
    assert sorted(LAYERS.names()) == sorted({r[0] for r in ROWS})


@pytest.mark.parametrize(
    'cls, config, weights, message',
    [
        ('InputLayer', {'batch_input_shape': [None, None]}, {}, 'static'),
        ('Activation', {'activation': 'hard_sigmoid'}, {}, 'hard_sigmoid'),
        ('Flatten', {'data_format': 'channels_first'}, {}, 'channels_first'),
        ('QDense', {'units': 4, 'kernel_quantizer': Q6}, {}, 'no kernel'),
        ('QDense', {'units': 5, 'kernel_quantizer': Q6}, WEIGHTS, 'do not fit'),
        ('QDense', {'units': 4, 'kernel_quantizer': "quantized_bits(6,0,alpha='best')"}, WEIGHTS, 'unknown alpha'),
        ('QDense', {'units': 4, 'activation': 'softmax'}, WEIGHTS, 'softmax'),
        ('QDense', {'units': 4}, {'d/kernel:0': KERNEL * np.nan, 'd/bias:0': BIAS}, 'NaN'),
        ('QConv2D', {**CONV_CFG, 'kernel_size': [3, 3], 'groups': 2}, CONV2, 'groups'),
        ('QConv1D', {**CONV_CFG, 'padding': 'causal'}, CONV1, 'causal'),
        ('QConv2D', {**CONV_CFG, 'kernel_size': [3, 3], 'data_format': 'channels_first'}, CONV2, 'channels_first'),
        ('QConv1D', CONV_CFG, CONV2, 'do not fit'),
        ('Reshape', {'target_shape': 'abc'}, {}, 'target_shape'),
        ('Concatenate', {'axis': 'x'}, {}, 'axis'),
    ],
)
def test_handler_refuses(cls: str, config: dict, weights: dict, message: str) -> None:
    with pytest.raises(LayerProblem, match=message):
        LAYERS.get(cls)(SourceLayer('d', cls, config, weights, ['a', 'b']))  # type: ignore[misc]


def test_auto_po2_kernel_is_precomputed_exactly() -> None:
    """alpha=None on a kernel is auto_po2: the weights arrive quantized, with per-channel formats holding them."""
    spec = LAYERS.get('QDense')(SourceLayer('d', 'QDense', {'units': 4, 'kernel_quantizer': 'quantized_bits(4,0)'}, WEIGHTS))
    assert not np.array_equal(spec.kernel, KERNEL)
    assert np.array_equal(spec.kernel_fmt.quantize(spec.kernel), spec.kernel)
    steps = spec.kernel / 2.0 ** -spec.kernel_fmt.f
    assert np.array_equal(steps, np.round(steps)) and np.abs(steps).max() <= 7  # 4-bit symmetric codes


def test_all_problems_are_collected() -> None:
    layers = [
        SourceLayer('in', 'InputLayer', {'batch_input_shape': [None, 3]}),
        SourceLayer('lam', 'Lambda', {}, inbound=['in']),
        SourceLayer('mystery', 'MyCustomLayer', {}, inbound=['lam']),
        SourceLayer('q', 'QActivation', {'activation': 'bernoulli()'}, inbound=['mystery']),
    ]
    graph = SourceGraph('m', layers, ['in'], ['q'], Path('m.h5'), 'qkeras')
    with pytest.raises(UnsupportedError) as info:
        parse_all(graph, LAYERS)
    text = str(info.value)
    assert [p.layer for p in info.value.problems] == ['m/lam (Lambda)', 'm/mystery (MyCustomLayer)', 'm/q (QActivation)']
    assert 'bytecode' in text and "'MyCustomLayer' is not supported" in text and 'random numbers at inference' in text
