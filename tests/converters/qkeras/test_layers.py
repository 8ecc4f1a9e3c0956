"""One row per QKeras layer handler: what the handler makes of a saved layer config, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hgqbridge.converters.hgq.build import DenseSpec, FlattenSpec, FloatActivationSpec, IdentitySpec, InputSpec, QuantizeSpec
from hgqbridge.converters.hgq.driver import parse_all
from hgqbridge.converters.qkeras import LAYERS

from hgqbridge.errors import LayerProblem, UnsupportedError
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph, SourceLayer

KERNEL = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
BIAS = np.array([0.1, -0.2, 0.3, 0.0], dtype=np.float32)
Q6 = {'class_name': 'quantized_bits', 'config': {'bits': 6, 'integer': 0, 'alpha': 1}}
WEIGHTS = {'d/kernel:0': KERNEL, 'd/bias:0': BIAS}

ROWS = [
    ('InputLayer', {'batch_input_shape': [None, 3]}, {}, InputSpec((None, 3))),
    ('QActivation', {'activation': 'quantized_relu(6)'}, {}, QuantizeSpec(FixedFormat(0, 0, 6))),
    ('Activation', {'activation': 'relu'}, {}, FloatActivationSpec('relu')),
    ('Dropout', {'rate': 0.2}, {}, IdentitySpec('Dropout does nothing at inference')),
    ('Flatten', {}, {}, FlattenSpec()),
    ('QDense', {'units': 4, 'kernel_quantizer': Q6, 'bias_quantizer': 'quantized_bits(8,3)', 'activation': 'quantized_relu(4,1)'}, WEIGHTS, None),
    ('Dense', {'units': 4, 'activation': 'relu'}, WEIGHTS, None),
]


@pytest.mark.parametrize('cls, config, weights, expected', ROWS, ids=[r[0] for r in ROWS])
def test_handler(cls: str, config: dict, weights: dict, expected: object) -> None:
    spec = LAYERS.get(cls)(SourceLayer('d', cls, config, weights))  # type: ignore[misc]
    if expected is not None:
        assert spec == expected
        return
    assert isinstance(spec, DenseSpec)
    assert np.array_equal(spec.kernel, KERNEL) and np.array_equal(spec.bias, BIAS)
    if cls == 'QDense':
        assert spec.kernel_fmt == FixedFormat(1, 0, 5) and spec.bias_fmt == FixedFormat(1, 3, 4)
        assert spec.out_fmt == FixedFormat(0, 1, 3) and spec.activation == 'linear'
    else:
        assert spec.kernel_fmt is None and spec.activation == 'relu'


def test_every_handler_has_a_row() -> None:
    assert sorted(LAYERS.names()) == sorted(r[0] for r in ROWS)


@pytest.mark.parametrize(
    'cls, config, weights, message',
    [
        ('InputLayer', {'batch_input_shape': [None, None]}, {}, 'static'),
        ('Activation', {'activation': 'hard_sigmoid'}, {}, 'hard_sigmoid'),
        ('Flatten', {'data_format': 'channels_first'}, {}, 'channels_first'),
        ('QDense', {'units': 4, 'kernel_quantizer': Q6}, {}, 'no kernel'),
        ('QDense', {'units': 5, 'kernel_quantizer': Q6}, WEIGHTS, 'do not fit'),
        ('QDense', {'units': 4, 'kernel_quantizer': 'quantized_bits(6,0)'}, WEIGHTS, 'auto_po2'),
        ('QDense', {'units': 4, 'activation': 'softmax'}, WEIGHTS, 'softmax'),
        ('QDense', {'units': 4}, {'d/kernel:0': KERNEL * np.nan, 'd/bias:0': BIAS}, 'NaN'),
    ],
)
def test_handler_refuses(cls: str, config: dict, weights: dict, message: str) -> None:
    with pytest.raises(LayerProblem, match=message):
        LAYERS.get(cls)(SourceLayer('d', cls, config, weights))  # type: ignore[misc]


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
