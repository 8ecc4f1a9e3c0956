"""One row per HGQ1 layer handler (each under both of its names, ``HGQ>X`` and ``X``): what the handler makes of a
saved layer config, by hand-computed values; what it refuses; HGQ1's arithmetic on README's measured examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hgqbridge.converters.hgq.composite_specs import AveragePoolSpec, QuantizedOutputSpec
from hgqbridge.converters.hgq.driver import parse_all
from hgqbridge.converters.hgq.specs import FloatActivationSpec, IdentitySpec, MergeSpec, MoveSpec, QuantizeSpec, WeightLayerSpec
from hgqbridge.converters.hgq1 import LAYERS
from hgqbridge.converters.hgq1.arith import bias_bits, fma32, formats_for, fused_batchnorm, grid_bits, quantize
from hgqbridge.converters.hgq1.proxy import mark_proxy_weights
from hgqbridge.converters.keras import LAYERS as KERAS
from hgqbridge.errors import LayerProblem, UnsupportedError
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.graph import SourceGraph, SourceLayer

F32 = np.float32
AUTO = {'rnd_strategy': 'auto', 'bw_clip': [-23, 23]}
ROUND = {'rnd_strategy': 'standard_round', 'bw_clip': [-23, 23]}
KERNEL = np.array([[0.3, -0.7], [1.26, 0.5], [0.0625, -2.0]], F32)
# kernel_bw 2.2 -> f = 2: floor(x * 4 + 0.5) / 4, in float32
KERNEL_Q = np.array([[0.25, -0.75], [1.25, 0.5], [0.0, -2.0]], F32)
DENSE = {
    'd/kernel:0': KERNEL,
    'd/bias:0': np.array([0.3, -0.2], F32),
    'd/kernel_bw:0': np.full((3, 2), 2.2, F32),
    'd/activation_bw:0': np.array([[1.2, 3.4]], F32),  # f = [1, 3]; bias f the same: 0.3 -> 0.5, -0.2 -> -0.25
    'beta:0': np.array(0.0, F32),
    'd/bops:0': np.array(0.0, F32),
}
DERIVED2 = {'k': np.array([[0, 0]]), 'i': np.array([[3, 2]])}
VAR4 = F32(4) - F32(1e-3)  # var + epsilon (1e-3, as HGQ1 reloads it) is exactly 4: rsqrt 0.5
BN = {
    'd/kernel:0': np.array([[1.0, 0.5]], F32),
    'd/bias:0': np.array([0.25, 0.0], F32),
    'd/kernel_bw:0': np.full((1, 2), 4.0, F32),
    'd/activation_bw:0': np.array([[2.0, 2.0]], F32),
    'd/bn_gamma:0': np.array([1.0, 2.0], F32),  # scale s = [0.5, 1.0]
    'd/bn_beta:0': np.array([0.5, -0.25], F32),
    'd/moving_mean:0': np.array([1.0, 0.5], F32),
    'd/moving_variance:0': np.array([VAR4, VAR4], F32),
}
CONV1 = {
    'd/kernel:0': np.full((3, 1, 2), 0.5, F32),
    'd/bias:0': np.array([0.3, 0.3], F32),
    'd/kernel_bw:0': np.full((3, 1, 2), 3.0, F32),
    'd/activation_bw:0': np.array([[[1.0, 0.0], [3.0, 0.0], [2.0, 5.0], [0.0, 1.0]]], F32),  # bias f [3, 5]
}
CONV2 = {
    'd/kernel:0': np.full((2, 2, 1, 1), 0.25, F32),
    'd/bias:0': np.array([0.125], F32),
    'd/kernel_bw:0': np.full((2, 2, 1, 1), 2.0, F32),
    'd/activation_bw:0': np.full((1, 3, 3, 1), 2.0, F32),
}
DERIVED_C1 = {'k': np.zeros((1, 4, 2), np.int64), 'i': np.ones((1, 4, 2), np.int64)}
DERIVED_C2 = {'k': np.zeros((1, 3, 3, 1), np.int64), 'i': np.ones((1, 3, 3, 1), np.int64)}
ACT_W = {'d/activation_bw:0': np.array([[2.4, 3.6, -0.5]], F32)}  # f = [2, 4, 0] (round half to even)
DERIVED3 = {'k': np.array([[1, 0, 1]]), 'i': np.array([[1, 2, 3]])}
POOL2 = {'pool_size': [2, 2], 'strides': [2, 2], 'padding': 'valid', 'data_format': 'channels_last'}
POOL1 = {'pool_size': [2], 'strides': [2], 'padding': 'valid', 'data_format': 'channels_last'}


def _fmt(derived: dict, f: list, rnd: str) -> FormatArray:
    return FormatArray(derived['k'], derived['i'], np.array(f), rnd, 'SAT')


def _same(a: object, b: FormatArray) -> bool:
    return (
        isinstance(a, FormatArray)
        and all(np.array_equal(getattr(a, x), getattr(b, x)) for x in 'kif')
        and (
            a.round,
            a.overflow,
        )
        == (b.round, b.overflow)
    )


def _dense(spec: object) -> bool:
    assert isinstance(spec, WeightLayerSpec) and spec.kind == 'dense' and spec.activation == 'relu'
    assert np.array_equal(spec.kernel, KERNEL_Q) and np.array_equal(spec.bias, [0.5, -0.25])
    kfmt = spec.kernel_fmt
    assert isinstance(kfmt, FormatArray) and np.array_equal(kfmt.f, np.full((3, 2), 2))
    assert np.array_equal(kfmt.k, [[0, 1], [0, 0], [0, 1]]) and np.array_equal(kfmt.i, [[-1, 0], [1, 0], [-2, 1]])  # 0: width 0
    assert isinstance(spec.bias_fmt, FormatArray) and np.array_equal(spec.bias_fmt.f, [1, 3])
    return _same(spec.out_fmt, _fmt(DERIVED2, [[1, 3]], 'RND'))  # 'auto' with a per-unit bias: rounds


def _batchnorm(spec: object) -> bool:
    """kernel * [0.5, 1], bias 0.25 - 1 * 0.5 + 0.5 = 0.25 and 0 - 0.5 * 1 - 0.25 = -0.75, all exact."""
    assert isinstance(spec, WeightLayerSpec) and np.array_equal(spec.kernel, [[0.5, 0.5]])
    return np.array_equal(spec.bias, [0.25, -0.75])


def _conv(kind: str, args: dict, bias: list, out: FormatArray | FixedFormat):
    def check(spec: object) -> bool:
        assert isinstance(spec, WeightLayerSpec) and spec.kind == kind and spec.args == args
        assert np.array_equal(spec.bias, bias)
        return spec.out_fmt == out if isinstance(out, FixedFormat) else _same(spec.out_fmt, out)

    return check


def _conv1d(spec: object) -> bool:
    """Bias widths: max over the positions per channel, [3, 5]; rnd_strategy floor: 0.3 -> 0.25 and 0.28125."""
    args = {'filters': 2, 'kernel_size': (3,), 'strides': (1,), 'padding': 'same', 'dilation_rate': (1,)}
    f = np.round(CONV1['d/activation_bw:0']).astype(int)
    return _conv('conv1d', args, [0.25, 0.28125], FormatArray(DERIVED_C1['k'], DERIVED_C1['i'], f, 'TRN', 'SAT'))(spec)


def _conv2d(spec: object) -> bool:
    """Per-element widths (1, 3, 3, 1) and rnd_strategy 'auto': the bias cannot absorb rounding, so it floors (0.125
    to 0 at f = 2); every element alike: one format."""
    args = {'filters': 1, 'kernel_size': (2, 2), 'strides': (1, 1), 'padding': 'valid', 'dilation_rate': (1, 1)}
    return _conv('conv2d', args, [0.0], FixedFormat(0, 1, 2, 'TRN', 'SAT'))(spec)


def _uncentred(spec: object) -> bool:
    """No bn_beta / moving_mean (center=False): the bias is left as it is; the kernel scaled by [0.5, 1]."""
    assert isinstance(spec, WeightLayerSpec) and np.array_equal(spec.kernel, np.array([[[0.5, 1.0]]] * 3))
    return np.array_equal(spec.bias, [0.25, 0.0])


def _unscaled(spec: object) -> bool:
    """No bn_gamma / moving_variance (scale=False): the kernel stays; mean 0, so the bias is bias + beta."""
    assert isinstance(spec, WeightLayerSpec) and np.array_equal(spec.kernel, np.ones((1, 1, 1, 2), F32))
    return np.array_equal(spec.bias, [0.75, -0.25])


def _fixed_point(spec: object) -> bool:
    """keep_negative/bits/integers [1,0,1]/[4,3,0]/[2,1,0]: kif (1,1,2), (0,1,2) and a pruned element (0,0,0)."""
    assert isinstance(spec, QuantizeSpec)
    return _same(spec.fmt, FormatArray(np.array([[1, 0, 0]]), np.array([[1, 1, 0]]), np.array([[2, 2, 0]]), 'RND', 'WRAP'))


def _proxy(kind: str):
    def check(spec: object) -> bool:
        """Weights as saved, each with the fewest fractional bits that hold it: 0.25 -> 2, 1.5 -> 1, 0 -> width 0."""
        assert isinstance(spec, WeightLayerSpec) and spec.kind == kind and isinstance(spec.kernel_fmt, FormatArray)
        kernel = spec.kernel.reshape(-1, 2)
        assert np.array_equal(kernel, [[0.25, -0.75], [1.5, 0.0]]) and np.array_equal(spec.bias, [0.375, -0.0625])
        assert np.array_equal(spec.kernel_fmt.f.reshape(-1, 2), [[2, 2], [1, 0]])
        assert np.array_equal(spec.kernel_fmt.quantize(spec.kernel), spec.kernel)
        return isinstance(spec.bias_fmt, FormatArray) and np.array_equal(spec.bias_fmt.f, [3, 4])

    return check


PK = np.array([[0.25, -0.75], [1.5, 0.0]], F32)
PROXY_W = {'d/bias:0': np.array([0.375, -0.0625], F32)}
FPQ = {
    'd/keep_negative:0': np.array([[1, 0, 1]], np.int8),
    'd/bits:0': np.array([[4, 3, 0]], np.int8),
    'd/integers:0': np.array([[2, 1, 0]], np.int8),
}
SIG = {'keep_negative': [[1, 1]], 'bits': [[12, 12]], 'int_bits': [[4, 4]]}

# (class without the HGQ> prefix, config, weights, derived integer bits, check)
ROWS = [
    ('HQuantize', {'paq_conf': AUTO}, ACT_W, DERIVED3, lambda s: _same(s.fmt, _fmt(DERIVED3, [[2, 4, 0]], 'TRN'))),
    (
        'HQuantize',
        {'paq_conf': {**ROUND, 'skip_dims': 'all'}},
        {'d/activation_bw:0': np.array([[3.0]], F32)},
        {'k': np.array([[1]]), 'i': np.array([[2]])},
        lambda s: s == QuantizeSpec(FixedFormat(1, 2, 3, 'RND', 'SAT')),  # one width: one format
    ),
    ('HDense', {'units': 2, 'activation': 'relu', 'use_bias': True, 'kq_conf': ROUND, 'paq_conf': AUTO}, DENSE, DERIVED2, _dense),
    (
        'HConv1D',
        {
            'filters': 2,
            'kernel_size': [3],
            'padding': 'same',
            'use_bias': True,
            'kq_conf': ROUND,
            'paq_conf': {'rnd_strategy': 'floor'},
        },
        CONV1,
        DERIVED_C1,
        _conv1d,
    ),
    (
        'HConv2D',
        {
            'filters': 1,
            'kernel_size': [2, 2],
            'strides': [1, 1],
            'dilation_rate': [1, 1],
            'use_bias': True,
            'kq_conf': ROUND,
            'paq_conf': AUTO,
        },
        CONV2,
        DERIVED_C2,
        _conv2d,
    ),
    ('HDenseBatchNorm', {'units': 2, 'use_bias': True, 'kq_conf': ROUND, 'paq_conf': ROUND}, BN, {**DERIVED2}, _batchnorm),
    (
        'HConv1DBatchNorm',
        {'filters': 2, 'kernel_size': [3], 'use_bias': True, 'kq_conf': ROUND, 'paq_conf': ROUND},
        {
            **{k: v for k, v in BN.items() if 'beta' not in k and 'mean' not in k},
            'd/kernel:0': np.ones((3, 1, 2), F32),
            'd/kernel_bw:0': np.full((3, 1, 2), 4.0, F32),
        },
        DERIVED2,
        _uncentred,
    ),
    (
        'HConv2DBatchNorm',
        {'filters': 2, 'kernel_size': [1, 1], 'use_bias': True, 'kq_conf': ROUND, 'paq_conf': ROUND},
        {
            **{k: v for k, v in BN.items() if 'gamma' not in k and 'variance' not in k},
            'd/moving_mean:0': np.zeros(2, F32),
            'd/kernel:0': np.ones((1, 1, 1, 2), F32),
            'd/kernel_bw:0': np.full((1, 1, 1, 2), 4.0, F32),
            'd/activation_bw:0': np.full((1, 1, 1, 2), 2.0, F32),
        },
        {'k': np.array([[[[1, 1]]]]), 'i': np.array([[[[0, 0]]]])},
        _unscaled,
    ),
    (
        'HActivation',
        {'activation': 'relu', 'paq_conf': ROUND},
        ACT_W,
        DERIVED3,
        lambda s: s.inner == FloatActivationSpec('relu') and _same(s.fmt, _fmt(DERIVED3, [[2, 4, 0]], 'RND')),
    ),
    ('HActivation', {'activation': 'linear', 'paq_conf': ROUND}, ACT_W, DERIVED3, lambda s: s.inner is None),
    ('HActivation', {'activation': 'tanh', 'paq_conf': AUTO}, ACT_W, DERIVED3, lambda s: s.inner == FloatActivationSpec('tanh')),
    (
        'HAdd',
        {'paq_conf': AUTO},
        ACT_W,
        DERIVED3,
        lambda s: (
            isinstance(s, QuantizedOutputSpec)
            and s.inner == MergeSpec('add')
            and _same(s.fmt, _fmt(DERIVED3, [[2, 4, 0]], 'TRN'))
        ),
    ),
    ('Signature', SIG, {}, {}, lambda s: isinstance(s, IdentitySpec) and 'ap_fixed<12,4,AP_TRN,AP_SAT>' in s.why),
    ('PFlatten', {}, {}, {}, lambda s: s == MoveSpec('Flatten')),
    ('PReshape', {'target_shape': [2, 3]}, {}, {}, lambda s: s == MoveSpec('Reshape', (('target_shape', (2, 3)),))),
    ('PPermute', {'dims': [2, 1]}, {}, {}, lambda s: s == MoveSpec('Permute', (('dims', (2, 1)),))),
    ('PConcatenate', {'axis': -1}, {}, {}, lambda s: s == MergeSpec('concatenate', -1)),
    ('PDropout', {'rate': 0.5}, {}, {}, lambda s: isinstance(s, IdentitySpec)),
    (
        'PMaxPooling1D',
        POOL1,
        {},
        {},
        lambda s: s == MoveSpec('MaxPooling1D', (('pool_size', (2,)), ('strides', (2,)), ('padding', 'valid'))),
    ),
    (
        'PMaxPooling2D',
        POOL2,
        {},
        {},
        lambda s: s == MoveSpec('MaxPooling2D', (('pool_size', (2, 2)), ('strides', (2, 2)), ('padding', 'valid'))),
    ),
    ('PAveragePooling1D', POOL1, {}, {}, lambda s: isinstance(s, AveragePoolSpec) and s.rank == 1 and not s.float_divide),
    ('PAveragePooling2D', POOL2, {}, {}, lambda s: isinstance(s, AveragePoolSpec) and s.rank == 2 and not s.float_divide),
    ('FixedPointQuantizer', {'RND': 'RND', 'SAT': 'WRAP', 'shape': [1, 3]}, FPQ, {}, _fixed_point),
    (
        'FixedPointQuantizer',
        {'RND': 'TRN', 'SAT': 'SAT', 'shape': []},
        {'d/keep_negative:0': np.array(0, np.int8), 'd/bits:0': np.array(6, np.int8), 'd/integers:0': np.array(2, np.int8)},
        {},
        lambda s: s == QuantizeSpec(FixedFormat(0, 2, 4, 'TRN', 'SAT')),  # the relu pattern's scalar first quantizer
    ),
]
PROXY_ROWS = [
    ('HGQ1 proxy Dense', {'units': 2, 'use_bias': True}, {**PROXY_W, 'd/kernel:0': PK}, {}, _proxy('dense')),
    (
        'HGQ1 proxy Conv1D',
        {'filters': 2, 'kernel_size': [2], 'use_bias': True},
        {**PROXY_W, 'd/kernel:0': PK[:, None]},
        {},
        _proxy('conv1d'),
    ),
    (
        'HGQ1 proxy Conv2D',
        {'filters': 2, 'kernel_size': [1, 2], 'use_bias': True},
        {**PROXY_W, 'd/kernel:0': PK[None, :, None]},
        {},
        _proxy('conv2d'),
    ),
]
CASES = [(f'{prefix}{r[0]}', *r[1:]) for r in ROWS for prefix in ('HGQ>', '')] + PROXY_ROWS


def _handle(cls: str, config: dict, weights: dict, derived: dict, inbound: list[str] | None = None) -> object:
    entry = LAYERS.entry(cls)
    assert entry is not None, f'no handler for {cls}'
    return entry.handler(SourceLayer('d', cls, config, weights, inbound or ['a', 'b'], derived))


@pytest.mark.parametrize('cls, config, weights, derived, check', CASES, ids=[f'{r[0]}-{n}' for n, r in enumerate(CASES)])
def test_handler(cls: str, config: dict, weights: dict, derived: dict, check: object) -> None:
    assert check(_handle(cls, config, weights, derived)) is True  # type: ignore[operator]


def test_every_handler_has_a_row() -> None:
    assert sorted(LAYERS.names()) == sorted({c[0] for c in CASES})
    assert sorted(n for n, _ in LAYERS.refused()) == ['HGQ>UnaryLUT', 'UnaryLUT']


@pytest.mark.parametrize(
    'cls, config, weights, derived, message',
    [
        (
            'HGQ>HDense',
            {'units': 2, 'activation': 'tanh', 'kq_conf': ROUND, 'paq_conf': ROUND},
            DENSE,
            DERIVED2,
            'only relu or linear',
        ),
        ('HGQ>HDense', {'units': 2, 'kq_conf': ROUND, 'paq_conf': ROUND}, DENSE, {}, 'not derived'),
        ('HGQ>HDense', {'units': 2, 'kq_conf': ROUND, 'paq_conf': {'rnd_strategy': 'nearest'}}, DENSE, DERIVED2, 'rnd_strategy'),
        (
            'HGQ>HDense',
            {'units': 2, 'kq_conf': ROUND, 'paq_conf': ROUND},
            {k: v for k, v in DENSE.items() if 'activation' not in k},
            DERIVED2,
            'no activation_bw',
        ),
        (
            'HGQ>HDense',
            {'units': 2, 'kq_conf': ROUND, 'paq_conf': ROUND},
            {**DENSE, 'd/kernel_bw:0': np.ones(5, F32)},
            DERIVED2,
            'kernel_bw',
        ),
        ('HGQ>HQuantize', {'paq_conf': ROUND}, {'d/activation_bw:0': np.array([[np.nan]], F32)}, {'k': [[0]], 'i': [[0]]}, 'NaN'),
        (
            'HGQ>HConv2D',
            {'filters': 1, 'kernel_size': [2, 2], 'data_format': 'channels_first'},
            CONV2,
            DERIVED_C2,
            'channels_first',
        ),
        ('HGQ>Signature', {'bits': [[8]]}, {}, {}, 'keep_negative'),
        ('HGQ>FixedPointQuantizer', {'RND': 'RND_ZERO', 'SAT': 'WRAP'}, FPQ, {}, 'RND_ZERO'),
        (
            'HGQ>FixedPointQuantizer',
            {'RND': 'RND', 'SAT': 'WRAP'},
            {**FPQ, 'd/keep_negative:0': np.array([[2, 0, 0]])},
            {},
            '0 or 1',
        ),
        ('HGQ1 proxy Dense', {'units': 2}, {**PROXY_W, 'd/kernel:0': PK + F32(1e-7)}, {}, 'not on a fixed-point grid'),
    ],
)
def test_handler_refuses(cls: str, config: dict, weights: dict, derived: dict, message: str) -> None:
    with pytest.raises(LayerProblem, match=message):
        _handle(cls, config, weights, derived)


def test_unary_lut_is_refused_with_every_other_problem() -> None:
    layers = [
        SourceLayer('in', 'InputLayer', {'batch_input_shape': [None, 3]}),
        SourceLayer('lut', 'HGQ>UnaryLUT', {}, inbound=['in']),
        SourceLayer('q', 'HGQ>FixedPointQuantizer', {'RND': 'RND_INF'}, FPQ, inbound=['lut']),
    ]
    with pytest.raises(UnsupportedError) as info:
        parse_all(SourceGraph('m', layers, ['in'], ['q'], Path('m.h5')), (KERAS, LAYERS))
    assert [p.layer for p in info.value.problems] == ['m/lut (HGQ>UnaryLUT)', 'm/q (HGQ>FixedPointQuantizer)']
    assert 'table of arbitrary values' in str(info.value)


def test_proxy_weight_layers_are_marked_only_before_quantizers() -> None:
    layers = [
        SourceLayer('in', 'InputLayer', {}),
        SourceLayer('d', 'Dense', {}, inbound=['in']),
        SourceLayer('q', 'HGQ>FixedPointQuantizer', {}, inbound=['d']),
        SourceLayer('e', 'Dense', {}, inbound=['q']),
        SourceLayer('c', 'Conv2D', {}, inbound=['q']),
        SourceLayer('q2', 'FixedPointQuantizer', {}, inbound=['c']),
    ]
    graph = mark_proxy_weights(SourceGraph('m', layers, ['in'], ['e', 'q2'], Path('m.h5')))
    assert [layer.class_name for layer in graph] == [
        'InputLayer',
        'HGQ1 proxy Dense',
        'HGQ>FixedPointQuantizer',
        'Dense',  # a model output: not followed by a quantizer, stays a float Dense
        'HGQ1 proxy Conv2D',
        'FixedPointQuantizer',
    ]
    plain = SourceGraph('m', layers[:2], ['in'], ['d'], Path('m.h5'))
    assert mark_proxy_weights(plain) is plain


# ---- HGQ1's arithmetic (fixtures/hgq1/README.md, section 3: measured with HGQ 0.2.6) -------------------------------


def test_quantizer_rounds_half_up_in_float32() -> None:
    assert np.array_equal(quantize(np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], F32), 0, 'RND'), [1, 2, 3, 0, -1, -2])
    assert np.array_equal(quantize(np.array([0.5, 1.5, -0.5, -1e-8], F32), 0, 'TRN'), [0, 1, -1, -1])
    assert quantize(np.array([0.49999997], F32), 0, 'RND')[0] == 1.0  # 0.5 - 2^-25 + 0.5 rounds to 1.0 first
    assert quantize(np.array([1 + 2**-23], F32), 23, 'RND')[0] == F32(1 + 2**-22)
    widths = np.round(np.array([2.5, 3.5, 2.49, -0.5], F32)).astype(int)
    assert np.array_equal(quantize(np.full(4, 5 / 16, F32), widths, 'RND'), [0.25, 0.3125, 0.25, 0])
    assert quantize(np.array([3e7], F32), -23, 'RND')[0] == 4 * 2**23


def test_bias_widths_are_the_maximum_over_positions() -> None:
    assert np.array_equal(bias_bits(np.array([[1, 3], [2, 0], [0, -1]], F32)), [2, 3])


def test_get_bits_exact_examples() -> None:
    """README section 5: (min, max) at f -> k, i (an element of range {0} has width 0)."""
    lo, hi, f = np.array([-1.25, 0, 0, -0.25, -1, 4]), np.array([3.5, 0, 3.5, -0.25, 7, 12]), np.array([2, 2, 2, 2, 0, -2])
    fmt = formats_for(lo, hi, f, 'RND', 'SAT')
    assert np.array_equal(fmt.k, [1, 0, 0, 1, 1, 0]) and np.array_equal(fmt.i, [2, -2, 2, -2, 3, 4])
    assert np.array_equal(fmt.k + fmt.i + fmt.f, [5, 0, 4, 1, 4, 2])
    assert np.array_equal(grid_bits(np.array([0.5, 0.75, 3.0, 0.0, -0.125, 2.0**-20, 12.0])), [1, 2, 0, 0, 3, 20, -2])


def test_fused_multiply_add_rounds_once() -> None:
    """a * b + c = 1 + 2^-24 + 2^-60 (2^36 + 1 = 4097 * 16773121): rounded once it is 1 + 2^-23; through float64 it
    lands on the tie 1 + 2^-24 first and goes to even, 1."""
    a, b, c = F32(4097 * 2.0**-30), F32(16773121 * 2.0**-30), F32(1)
    assert fma32(a, b, c) == F32(1 + 2**-23)
    assert F32(np.float64(a) * np.float64(b) + np.float64(c)) == F32(1)
    stats = {k.split('/')[1][:-2]: v for k, v in BN.items() if 'bn_' in k or 'moving' in k}
    kernel, bias = fused_batchnorm(BN['d/kernel:0'], BN['d/bias:0'], stats)
    assert np.array_equal(kernel, [[0.5, 0.5]]) and np.array_equal(bias, [0.25, -0.75])
