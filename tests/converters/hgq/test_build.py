"""One row per spec: the genuine HGQ2 (or Keras) layers it builds, where the source tensor is found afterwards
(refs), and how a quantizer before it travels (pending formats); and the build-time problems joining the list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hgqbridge.converters.hgq.build import build_model
from hgqbridge.converters.hgq.composite_specs import (
    AveragePoolSpec,
    BatchNormSpec,
    ChainSpec,
    ClippedQuantizeSpec,
    ClipSpec,
    LeakyQuantizeSpec,
    LeakyReluSpec,
    NotedSpec,
    PaddedSpec,
    QuantizedOutputSpec,
    SeparableSpec,
    SimpleRNNSpec,
)
from hgqbridge.converters.hgq.policy import FloatPolicy
from hgqbridge.converters.hgq.specs import (
    FloatActivationSpec,
    IdentitySpec,
    InputSpec,
    MergeSpec,
    MoveSpec,
    QuantizeSpec,
    WeightLayerSpec,
)
from hgqbridge.converters.hgq.tensors import BuildContext, Tensor, TensorRef, materialize
from hgqbridge.errors import UnsupportedError
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.graph import SourceGraph, SourceLayer

Q = FixedFormat(1, 2, 5)
K4 = np.full((4, 3), 0.25, np.float32)
B3 = np.array([0.5, -0.25, 0.0], np.float32)
C1 = np.full((3, 4, 2), 0.125, np.float32)


def dense(out_fmt: FixedFormat | None = None, affine: tuple[float, float] | None = None) -> WeightLayerSpec:
    return WeightLayerSpec('dense', {'units': 3}, K4, B3, FixedFormat(1, 0, 3), FixedFormat(1, 0, 3), 'linear', out_fmt, affine)


CONV1 = WeightLayerSpec(
    'conv1d',
    {'filters': 2, 'kernel_size': (3,), 'padding': 'valid', 'strides': (1,), 'dilation_rate': (1,)},
    C1,
    None,
    FixedFormat(1, 0, 3),
    None,
)


def _build(
    spec: object, shape: tuple[int, ...], pending: FixedFormat | None, n_inputs: int = 1, policy: FloatPolicy | None = None
):
    import keras

    ctx = BuildContext(policy=policy)
    inputs = [InputSpec((None, *shape)).build(f'x{i}', [], ctx) for i in range(n_inputs)]
    fed = [Tensor(t.value, t.source, pending=pending, pending_layer=f'{t.source}_q') if pending else t for t in inputs]
    out = materialize(spec.build('s', fed, ctx), ctx)  # type: ignore[attr-defined]
    model = keras.Model([t.value for t in inputs], out.value)
    return model, ctx, out


ROWS = [
    # spec, per-sample input shape, pending quantizer on the input, inputs, classes built, ref of 's', what is left pending
    (QuantizeSpec(Q), (4,), None, 1, ['Quantizer'], TensorRef('s'), None),
    (QuantizeSpec(FixedFormat(1, 0, 3), (0.5, 0.5)), (4,), None, 1, ['Quantizer'], TensorRef('s'), None),
    (IdentitySpec('test'), (4,), None, 1, [], TensorRef('x0', 'alias'), None),
    (FloatActivationSpec('relu'), (4,), Q, 1, ['Quantizer', 'ReLU'], TensorRef('s'), None),
    (FloatActivationSpec('softmax'), (4,), None, 1, ['Activation'], TensorRef('s'), None),
    (dense(), (4,), Q, 1, ['QDense'], TensorRef('s'), None),
    (dense(FixedFormat(0, 1, 3)), (4,), Q, 1, ['QDense', 'Quantizer'], TensorRef('s_activation'), None),
    (dense(FixedFormat(1, 0, 3), (0.5, 0.5)), (4,), Q, 1, ['QDense', 'Quantizer'], TensorRef('s_activation'), None),
    (
        WeightLayerSpec('conv1d', {'filters': 2, 'kernel_size': (3,)}, C1, None, FixedFormat(1, 0, 3), None),
        (6, 4),
        Q,
        1,
        ['QConv1D'],
        TensorRef('s'),
        None,
    ),
    (
        MoveSpec('Flatten'),
        (2, 2),
        Q,
        1,
        ['Flatten', 'Quantizer'],
        TensorRef('x0_q'),
        None,
    ),  # the moved quantizer holds flatten(q(x))
    (MergeSpec('add'), (4,), Q, 2, ['QAdd'], TensorRef('s'), None),
    (MergeSpec('concatenate'), (4,), Q, 2, ['Quantizer', 'Quantizer', 'Concatenate'], TensorRef('s'), None),
    (
        SeparableSpec(
            WeightLayerSpec(
                'conv1d',
                {'filters': 4, 'kernel_size': (3,), 'groups': 4},
                np.full((3, 1, 4), 0.5, np.float32),
                None,
                FixedFormat(1, 0, 3),
                None,
            ),
            WeightLayerSpec(
                'conv1d',
                {'filters': 2, 'kernel_size': (1,)},
                np.full((1, 4, 2), 0.5, np.float32),
                None,
                FixedFormat(1, 0, 3),
                None,
            ),
        ),
        (6, 4),
        Q,
        1,
        ['QConv1D', 'QConv1D'],
        TensorRef('s'),
        None,
    ),
    (
        BatchNormSpec(None, None, np.zeros(4, np.float32), np.ones(4, np.float32), 0.0),
        (4,),
        Q,
        1,
        ['QBatchNormalization'],
        TensorRef('s'),
        None,
    ),
    (
        AveragePoolSpec(1, (('pool_size', (2,)), ('strides', (2,)), ('padding', 'valid'))),
        (4, 3),
        Q,
        1,
        ['QAveragePooling1D'],
        TensorRef('s'),
        None,
    ),
    (AveragePoolSpec(1, (), True), (4, 3), Q, 1, ['QGlobalAveragePooling1D'], TensorRef('s'), None),
    (ClippedQuantizeSpec(FixedFormat(0, 1, 3), 1.5), (4,), None, 1, ['Quantizer', 'ReLU'], TensorRef('s'), None),
    (
        LeakyQuantizeSpec(FixedFormat(0, 1, 3), FixedFormat(1, 1, 2), 0.5),
        (4,),
        None,
        1,
        ['Quantizer', 'Quantizer', 'ReLU', 'QAdd'],
        TensorRef('s'),
        None,
    ),
    (ChainSpec(dense(), FloatActivationSpec('relu')), (4,), Q, 1, ['QDense', 'ReLU'], TensorRef('s_activation'), None),
    (
        SimpleRNNSpec(
            3,
            K4,
            np.eye(3, dtype=np.float32) / 2,
            B3,
            FixedFormat(1, 0, 3),
            FixedFormat(1, 0, 3),
            FixedFormat(1, 0, 3),
            FixedFormat(1, 0, 5),
            None,
        ),
        (5, 4),
        Q,
        1,
        ['QSimpleRNN'],
        TensorRef('s'),
        None,
    ),
    (LeakyReluSpec(0.25), (4,), Q, 1, ['Quantizer', 'LeakyReLU'], TensorRef('s'), None),
    (
        PaddedSpec(MoveSpec('ZeroPadding1D', (('padding', (1, 2)),)), CONV1),
        (5, 4),
        Q,
        1,
        ['ZeroPadding1D', 'QConv1D'],
        TensorRef('s'),
        None,
    ),
    (NotedSpec(MoveSpec('Flatten'), 'a note'), (2, 2), Q, 1, ['Flatten', 'Quantizer'], TensorRef('x0_q'), None),
    (ClipSpec(0.0, 6.0), (4,), Q, 1, ['Quantizer', 'ReLU'], TensorRef('s'), None),
    (ClipSpec(None, 1.0), (4,), Q, 1, ['Quantizer', 'ReLU'], TensorRef('s'), None),
    (ClipSpec(-1.0, 1.0), (4,), None, 1, ['Activation'], TensorRef('s'), None),
    (QuantizedOutputSpec(MergeSpec('add'), Q), (4,), Q, 2, ['QAdd', 'Quantizer'], TensorRef('s_quantizer'), None),
    (QuantizedOutputSpec(None, Q), (4,), Q, 1, ['Quantizer', 'Quantizer'], TensorRef('s_quantizer'), None),
]


@pytest.mark.parametrize(
    'spec, shape, pending, n_inputs, classes, ref, left', ROWS, ids=[f'{type(r[0]).__name__}-{n}' for n, r in enumerate(ROWS)]
)
def test_spec(
    spec: object, shape: tuple, pending: FixedFormat | None, n_inputs: int, classes: list[str], ref: TensorRef, left: object
) -> None:
    model, ctx, out = _build(spec, shape, pending, n_inputs)
    built = [type(layer).__name__ for layer in model.layers if type(layer).__name__ != 'InputLayer']
    assert built == classes
    assert ctx.refs['s'] == ref
    assert out.pending == left
    if pending is not None and 'Quantizer' not in built[:1]:  # the pending quantizer became the first layer's input quantizer
        first = next(layer for layer in model.layers if type(layer).__name__ not in ('InputLayer', 'ZeroPadding1D'))
        assert getattr(first, 'enable_iq', False) or type(first).__name__ in ('Flatten', 'ReLU', 'LeakyReLU')


def test_every_spec_class_has_a_row() -> None:
    import hgqbridge.converters.hgq.composite_specs as composite
    import hgqbridge.converters.hgq.specs as single

    classes = {
        name
        for module in (single, composite)
        for name, obj in vars(module).items()
        if isinstance(obj, type) and name.endswith('Spec') and obj.__module__ == module.__name__ and name != 'Spec'
    }
    assert classes - {type(r[0]).__name__ for r in ROWS} == {'InputSpec'}  # built by every row


def test_a_pending_quantizer_moves_past_flatten_into_the_next_iq() -> None:
    import keras

    ctx = BuildContext()
    x = InputSpec((None, 2, 2)).build('x', [], ctx)
    q = QuantizeSpec(Q).build('q', [x], ctx)
    flat = MoveSpec('Flatten').build('f', [q], ctx)
    assert flat.pending == Q and ctx.refs['q'] == TensorRef('f', 'quantized-input', Q)
    out = dense().build('d', [flat], ctx)
    assert ctx.refs['q'] == TensorRef('f', 'quantized-input', Q) and ctx.refs['f'] == TensorRef('d', 'iq')
    model = keras.Model(x.value, out.value)
    assert [type(layer).__name__ for layer in model.layers] == ['InputLayer', 'Flatten', 'QDense']


def test_float_policy_quantizes_float_parts() -> None:
    model, ctx, _ = _build(WeightLayerSpec('dense', {'units': 3}, K4, B3, None, None), (4,), None, policy=FloatPolicy(6))
    layer = model.layers[-1]
    assert type(layer).__name__ == 'QDense' and 's' in ctx.inexact and 'float weights: 6-bit' in ' '.join(ctx.notes['s'])


def test_build_time_problems_join_the_list() -> None:
    layers = [
        SourceLayer('in', 'InputLayer', {}),
        SourceLayer('bn', 'BN', {}, inbound=['in']),
        SourceLayer('gap', 'GAP', {}, inbound=['in']),
        SourceLayer('after', 'Flat', {}, inbound=['bn']),
    ]
    graph = SourceGraph('m', layers, ['in'], ['after', 'gap'], Path('m.h5'))
    specs = {
        'in': InputSpec((None, 4, 4, 3)),
        'bn': BatchNormSpec(None, None, np.zeros(3, np.float32), np.ones(3, np.float32), 0.0, axis=1),
        'gap': AveragePoolSpec(2, (), True, '', None, FixedFormat(1, 0, 3)),
        'after': MoveSpec('Flatten'),
    }
    with pytest.raises(UnsupportedError) as info:
        build_model(graph, specs, BuildContext())
    assert [p.layer for p in info.value.problems] == ['m/bn (BN)', 'm/gap (GAP)']  # 'after' depends on bn: not tried
    assert 'normalize the last' in str(info.value) and 'does not hold 1/16' in str(info.value)


def _per_element() -> FormatArray:
    """Per-element formats for a (2, 2) tensor: f 1..4, a pruned element (width 0), WRAP."""
    return FormatArray(np.array([[[1, 0], [1, 0]]]), np.array([[[2, 1], [0, -4]]]), np.array([[[1, 2], [3, 4]]]), 'RND', 'WRAP')


def _kif(quantizer: object) -> list[np.ndarray]:
    inner = quantizer.quantizer  # type: ignore[attr-defined]
    return [np.asarray(v) for v in (inner._k, inner._i, inner._f)]


def test_a_per_element_quantizer_moves_past_flatten_with_its_formats() -> None:
    """A FormatArray is reshaped with the values (Flatten) and given element by element to the consumer's iq."""
    import keras

    ctx = BuildContext()
    fmt = _per_element()
    x = InputSpec((None, 2, 2)).build('x', [], ctx)
    flat = MoveSpec('Flatten').build('f', [QuantizeSpec(fmt).build('q', [x], ctx)], ctx)
    assert isinstance(flat.pending, FormatArray) and flat.pending.f.shape == (1, 4)
    out = WeightLayerSpec('dense', {'units': 3}, K4, B3, FixedFormat(1, 0, 3), FixedFormat(1, 0, 3)).build('d', [flat], ctx)
    model = keras.Model(x.value, out.value)
    k, i, f = _kif(model.get_layer('d').iq)
    assert np.array_equal(k, [[1, 0, 1, 0]]) and np.array_equal(i, [[2, 1, 0, -4]]) and np.array_equal(f, [[1, 2, 3, 4]])
    assert ctx.refs['q'] == TensorRef('f', 'quantized-input', fmt)
    probe = np.array([[[0.3, 1.9], [-0.75, 5.0]]], np.float32)  # f 1, 2, 3; wraps at 2^1 (unsigned); pruned: 0
    assert np.array_equal(keras.ops.convert_to_numpy(model.get_layer('d').iq(probe.reshape(1, 4))), [[0.5, 0.0, -0.75, 0.0]])


def test_a_per_element_quantizer_is_applied_before_a_pooling_and_by_each_merge_input() -> None:
    import keras

    ctx = BuildContext()
    fmt = _per_element()
    x = InputSpec((None, 2, 2)).build('x', [], ctx)
    pooled = MoveSpec('MaxPooling1D', (('pool_size', (2,)),)).build('p', [QuantizeSpec(fmt).build('q', [x], ctx)], ctx)
    assert pooled.pending is None and ctx.refs['q'] == TensorRef('q')  # a Quantizer layer before the pooling
    a, b = (QuantizeSpec(fmt).build(n, [x], ctx) for n in ('a', 'b'))
    added = MergeSpec('add').build('s', [a, b], ctx)
    model = keras.Model(x.value, [pooled.value, added.value])
    assert [type(layer).__name__ for layer in model.layers[1:]] == ['Quantizer', 'MaxPooling1D', 'QAdd']
    for quantizer in (model.get_layer('q'), *model.get_layer('s').iq):
        assert [v.tolist() for v in _kif(quantizer)] == [fmt.k.tolist(), fmt.i.tolist(), fmt.f.tolist()]
