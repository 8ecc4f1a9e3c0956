"""The QKeras quantizer grammar (no eval) and the exact mapping, checked against outputs of real QKeras 0.9.0."""

from __future__ import annotations

import numpy as np
import pytest

from hgqbridge.converters.qkeras.quantizers import (
    FloatActivation,
    QuantizedBits,
    QuantizedRelu,
    parse_quantizer,
    parse_string,
)
from hgqbridge.errors import LayerProblem, QuantizerSyntaxError
from hgqbridge.fixed import FixedFormat

from ...conftest import QKERAS

with np.load(QKERAS / 'quantizers.npz') as _g:
    QKERAS_OUT = dict(_g)
CASES = sorted(k for k in QKERAS_OUT if k != 'x')
#: Cases that are one fixed-point format (plus an affine); the others (leaky, use_sigmoid) need two steps.
ONE_FORMAT = [c for c in CASES if parse_quantizer(c).two_step() is None]


@pytest.mark.parametrize(
    'text, expected',
    [
        ('quantized_bits(6,0,alpha=1)', ('quantized_bits', [6, 0], {'alpha': 1})),
        ('quantized_bits( 8 , 3 , 1 , alpha = 1.0 )', ('quantized_bits', [8, 3, 1], {'alpha': 1.0})),
        ("quantized_bits(4, 0, alpha='auto_po2')", ('quantized_bits', [4, 0], {'alpha': 'auto_po2'})),
        ('quantized_relu(6)', ('quantized_relu', [6], {})),
        ('quantized_relu(4,-1)', ('quantized_relu', [4, -1], {})),
        ('quantized_bits(8,0,keep_negative=False)', ('quantized_bits', [8, 0], {'keep_negative': False})),
        ('relu', ('relu', [], {})),
        ('quantized_tanh()', ('quantized_tanh', [], {})),
    ],
)
def test_parse_string(text: str, expected: tuple) -> None:
    assert parse_string(text) == expected


@pytest.mark.parametrize(
    'text',
    [
        'quantized_bits(6,0',  # unbalanced
        'quantized_bits6,0)',
        'quantized_bits((6),0)',  # nested
        'quantized_bits(alpha=1, 6)',  # positional after keyword
        'quantized_bits(6, alpha=auto)',  # unquoted string (QKeras would turn it into 'ut')
        '__import__("os").system("true")',  # nothing is ever evaluated
        'quantized_bits(6;0)',
        '',
        '(6)',
    ],
)
def test_parse_string_rejects(text: str) -> None:
    with pytest.raises(QuantizerSyntaxError):
        parse_string(text)


def test_parse_dict_and_string_agree() -> None:
    saved = {
        'class_name': 'quantized_bits',
        'config': {
            'bits': 6,
            'integer': 0,
            'symmetric': 0,
            'alpha': 1,
            'keep_negative': True,
            'use_stochastic_rounding': False,
            'qnoise_factor': 1.0,
        },
    }
    assert parse_quantizer(saved) == parse_quantizer('quantized_bits(6,0,alpha=1)')
    assert parse_quantizer('relu') == FloatActivation('relu')
    assert parse_quantizer(None) is None


@pytest.mark.parametrize(
    'spec, position, fmt',
    [
        (QuantizedBits(8, 0, alpha=1), 'kernel', FixedFormat(1, 0, 7, 'RND_CONV', 'SAT')),
        (QuantizedBits(8, 3, 1, alpha=1), 'kernel', FixedFormat(1, 3, 4, 'RND_CONV', 'SAT_SYM')),
        (QuantizedBits(8, 0, keep_negative=False, alpha=1), 'activation', FixedFormat(0, 0, 8, 'RND_CONV', 'SAT')),
        (
            QuantizedBits(8, 0, 1, keep_negative=False),
            'bias',
            FixedFormat(0, 0, 8, 'RND_CONV', 'SAT'),
        ),  # symmetric: no effect unsigned
        (QuantizedBits(4, -2), 'bias', FixedFormat(1, -2, 5, 'RND_CONV', 'SAT')),  # alpha None fine off-kernel
        (QuantizedBits(4, 6, alpha=1), 'activation', FixedFormat(1, 6, -3, 'RND_CONV', 'SAT')),
        (QuantizedRelu(6), 'activation', FixedFormat(0, 0, 6, 'RND_CONV', 'SAT')),
        (QuantizedRelu(6, 2), 'activation', FixedFormat(0, 2, 4, 'RND_CONV', 'SAT')),
        (QuantizedRelu(4, -1), 'activation', FixedFormat(0, -1, 5, 'RND_CONV', 'SAT')),
        # relu_upper_bound acts only with is_quantized_clip=False, which QKeras does not save: a reloaded QKeras
        # model ignores it, and so does the importer
        (QuantizedRelu(6, 2, relu_upper_bound=3.0), 'activation', FixedFormat(0, 2, 4, 'RND_CONV', 'SAT')),
    ],
)
def test_mapping(spec: object, position: str, fmt: FixedFormat) -> None:
    assert spec.fixed_format(position) == fmt  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    'spec, position, message',
    [
        (QuantizedBits(6, 0), 'kernel', 'auto_po2'),  # alpha=None on a kernel is auto_po2 in QKeras
        (QuantizedBits(6, 0, alpha=0.5), 'kernel', 'alpha=0.5'),
        (QuantizedBits(1, 0, alpha=1), 'activation', 'sign function'),
        (QuantizedBits(8, 0, alpha=1, qnoise_factor=0.5), 'kernel', 'qnoise_factor'),
        (QuantizedBits(0, 0, alpha=1), 'kernel', 'bits must be'),
        (QuantizedBits(10_000, 0, alpha=1), 'kernel', 'bits must be'),
        (QuantizedBits(6, 2.5, alpha=1), 'kernel', 'integer must be'),
        (QuantizedBits(6, float('nan'), alpha=1), 'kernel', 'integer must be'),
        (QuantizedBits(6, 0, alpha=float('nan')), 'kernel', 'alpha must be'),
        (QuantizedRelu(6, float('inf')), 'activation', 'integer must be'),
        (QuantizedRelu(6, 10_000), 'activation', 'integer must be'),
        (QuantizedRelu(4, 0, negative_slope=0.25), 'activation', 'two quantization steps'),
        (QuantizedRelu(4, 0, use_sigmoid=1), 'activation', 'use_sigmoid'),
    ],
)
def test_mapping_refuses(spec: object, position: str, message: str) -> None:
    with pytest.raises(LayerProblem, match=message):
        spec.fixed_format(position)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    'spec',
    [
        'bernoulli()',
        'quantized_ulaw(8)',
        'quantized_po2(4)',
        'nonsense(3)',
        'quantized_bits(6, foo=1)',
        'hard_sigmoid',
        'quantized_tanh(1)',
        'quantized_tanh(6,use_real_tanh=True)',
        'quantized_sigmoid(1)',
        'quantized_sigmoid(4,0,1)',
    ],
)
def test_unsupported_names_are_refused(spec: str) -> None:
    with pytest.raises(LayerProblem):
        parse_quantizer(spec).activation_plan()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    'name, reason', [('hard_sigmoid', 'exactly 1.0'), ('hard_tanh', 'exactly 1.0'), ('smooth_sigmoid', '0.1875')]
)
def test_hard_functions_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(LayerProblem, match=reason) as info:
        parse_quantizer(name)
    assert 'quantized_' in info.value.fix or 'quantized_bits' in info.value.fix


def test_two_step_cases_are_covered() -> None:
    assert {c for c in CASES if c not in ONE_FORMAT} == {
        'quantized_relu(4,2,negative_slope=0.25)',
        'quantized_relu(6,2,negative_slope=0.5)',
        'quantized_relu(8,3,negative_slope=0.125)',
        'quantized_relu(4,0,1)',
        'quantized_relu(6,2,1)',
        'quantized_relu(3,1,use_sigmoid=1)',
    }


@pytest.mark.parametrize(
    'spec, message',
    [
        (QuantizedRelu(4, 0, 1, 0.5), 'both'),
        (QuantizedRelu(1, 0, 1), 'rounds ties'),
        (QuantizedRelu(4, 0, negative_slope=0.3), 'power of two'),
    ],
)
def test_two_step_refuses(spec: QuantizedRelu, message: str) -> None:
    with pytest.raises(LayerProblem, match=message):
        spec.two_step()


@pytest.mark.parametrize('case', ONE_FORMAT)
def test_numpy_reference_matches_qkeras(case: str) -> None:
    """The mapped format's numpy quantizer reproduces QKeras on every 2^-12 step in [-20, 20] (every tie)."""
    fmt, affine = parse_quantizer(case).activation_plan()  # type: ignore[union-attr]
    scale, shift = affine or (1.0, 0.0)
    assert np.array_equal((fmt.quantize(QKERAS_OUT['x']) * scale + shift).astype(np.float32), QKERAS_OUT[case])


@pytest.mark.parametrize('case', CASES)
def test_hgq2_quantizer_matches_qkeras(case: str) -> None:
    """The HGQ2 layers built for the quantizer (a Quantizer, or the two-step forms) reproduce QKeras bit for bit."""
    import keras

    from hgqbridge.converters.hgq.tensors import BuildContext, Tensor, materialize
    from hgqbridge.converters.qkeras.layers import activation_spec

    ctx = BuildContext()
    inp = keras.Input((1,))
    out = materialize(activation_spec(case).build('q', [Tensor(inp, 'x')], ctx), ctx)  # type: ignore[arg-type]
    x = QKERAS_OUT['x'].reshape(-1, 1)
    got = keras.Model(inp, out.value).predict(x, batch_size=len(x), verbose=0).ravel()
    assert np.array_equal(got, QKERAS_OUT[case])


def test_hgq2_round_mode_matters() -> None:
    """The goldens can tell half-to-even from half-up: the same format with RND differs from QKeras."""
    case = 'quantized_bits(8,3,alpha=1)'
    fmt = parse_quantizer(case).fixed_format('activation')  # type: ignore[union-attr]
    wrong = FixedFormat(fmt.k, fmt.i, fmt.f, 'RND', fmt.overflow)
    assert not np.array_equal(wrong.quantize(QKERAS_OUT['x']).astype(np.float32), QKERAS_OUT[case])
