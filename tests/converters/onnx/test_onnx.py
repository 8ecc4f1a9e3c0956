"""ONNX graphs (torch.onnx exports) and QONNX graphs: float within 256 ulp of onnxruntime, QONNX bit-exact to qonnx."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hgqbridge
from hgqbridge.compare import ulps_of_max
from hgqbridge.converters.hgq.composite_specs import (
    AveragePoolSpec,
    BatchNormSpec,
    ChainSpec,
    ClipSpec,
    LeakyReluSpec,
    PaddedSpec,
)
from hgqbridge.converters.hgq.specs import (
    FloatActivationSpec,
    IdentitySpec,
    InputSpec,
    MergeSpec,
    MoveSpec,
    QuantizeSpec,
    WeightLayerSpec,
)
from hgqbridge.converters.onnx import OPS
from hgqbridge.errors import LayerProblem, SourceFileError, UnsupportedError
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceLayer

from ...conftest import FLOAT_ULPS, ROOT, record, rerun_reference

ONNX = ROOT / 'fixtures' / 'onnx'
MANIFEST = json.loads((ONNX / 'manifest.json').read_text())
ENTRIES = {e['name']: e for e in MANIFEST['models']}


def channels_last(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x.transpose(0, 2, 1) if x.ndim == 3 else x


def _outputs(name: str, **kw: object) -> list[tuple[np.ndarray, np.ndarray]]:
    """(converted model's output, the golden output) on normal and stress inputs; NCHW inputs are transposed,
    as the conversion report says, and channels-last ones (Keras exports) fed as they are."""
    conv = hgqbridge.import_model(ONNX / ENTRIES[name]['files'][0], **kw)
    layout = channels_last if ENTRIES[name]['layout'] == 'channels_first' else (lambda x: x)
    assert any('feed NCHW data' in line for line in conv.report.summary) == (
        ENTRIES[name]['layout'] == 'channels_first' and len(ENTRIES[name]['shape']) > 1
    )
    with np.load(ONNX / ENTRIES[name]['golden']) as g:
        return [(conv.model.predict(layout(g[f'x_{k}']), verbose=0), g[f'{k}::output']) for k in ('normal', 'stress')]


@pytest.mark.parametrize('name', sorted(n for n, e in ENTRIES.items() if e['kind'] == 'float'))
def test_float_graph_with_dummy_quantizers_matches_onnxruntime(name: str) -> None:
    """Within FLOAT_ULPS units in the last place of the output's largest value (float32 rounding is CPU-dependent)."""
    worst = max(ulps_of_max(ref, float(np.max(np.abs(got - ref)))) for got, ref in _outputs(name, dummy=True))
    assert worst <= FLOAT_ULPS, worst
    record(f'{name} with dummy quantizers vs onnxruntime: within {worst:g} ulp (bound {FLOAT_ULPS})')


@pytest.mark.parametrize('name', sorted(n for n, e in ENTRIES.items() if e['kind'] == 'qonnx'))
def test_qonnx_graph_is_bit_exact_to_qonnx_execution(name: str) -> None:
    for got, ref in _outputs(name):
        assert np.array_equal(got, ref)


def test_float_graph_quantized_with_calibration() -> None:
    x = channels_last(np.random.default_rng(0).normal(0, 1, (128, 2, 8, 8)).astype(np.float32))
    conv = hgqbridge.import_model(ONNX / 'torch_cnn.onnx', bits=8, calibration={'x': x})
    text = conv.report.to_text()
    assert 'calibration data (128 samples' in text and 'channels-last' in text


def _model(nodes: list, inits: list, n_in: int = 4) -> bytes:
    graph = helper.make_graph(
        nodes,
        'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['n', n_in])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 13), helper.make_opsetid('qonnx.custom_op.general', 1)]
    )
    return model.SerializeToString()


def _const(name: str, value: object) -> object:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def test_unsupported_ops_are_listed_all_at_once(tmp_path: Path) -> None:
    q = 'qonnx.custom_op.general'
    nodes = [
        helper.make_node('Quant', ['x', 's3', 'z', 'b8'], ['q'], name='q_in', domain=q),
        helper.make_node('Trunc', ['q', 's', 'z', 'b8', 'b8'], ['t'], name='trunc', domain=q),
        helper.make_node('Foo', ['t'], ['f'], name='foo'),
        helper.make_node('LSTM', ['f'], ['y'], name='lstm'),
    ]
    path = tmp_path / 'm.onnx'
    path.write_bytes(_model(nodes, [_const('s3', 0.3), _const('s', 0.25), _const('z', 0.0), _const('b8', 8.0)]))
    with pytest.raises(UnsupportedError) as info:
        hgqbridge.import_model(path)
    assert [p.layer for p in info.value.problems] == ['g/q_in (Quant)', 'g/trunc (Trunc)', 'g/foo (Foo)', 'g/lstm (LSTM)']
    text = str(info.value)
    assert 'not a power of two' in text and "ONNX op 'Foo' is not supported" in text and 'recurrent' in text


@pytest.mark.parametrize(
    'data, message',
    [(b'', 'empty'), (b'\x08\x07garbage\xff\xff', 'not a readable ONNX model')],
    ids=['empty', 'garbage'],
)
def test_broken_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / 'm.onnx'
    path.write_bytes(data)
    with pytest.raises(SourceFileError, match=message):
        hgqbridge.import_model(path)


def test_weight_quantizer_with_a_zero_point_names_the_node(tmp_path: Path) -> None:
    q = 'qonnx.custom_op.general'
    nodes = [
        helper.make_node('Quant', ['w', 's', 'z', 'b'], ['wq'], name='q_w', domain=q),
        helper.make_node('MatMul', ['x', 'wq'], ['y'], name='mm'),
    ]
    path = tmp_path / 'm.onnx'
    path.write_bytes(_model(nodes, [_const('w', np.ones((4, 2))), _const('s', 0.25), _const('z', 1.0), _const('b', 4.0)]))
    with pytest.raises(
        UnsupportedError, match=r'q_w \(Quant\).*zero-point'
    ) as info:  # reported by its consumer, with every other problem
        hgqbridge.import_model(path)
    assert [p.layer for p in info.value.problems] == ['g/mm (MatMul)']


W = {'n/in1:0': np.arange(6, dtype=np.float32).reshape(3, 2), 'n/in2:0': np.ones(3, np.float32)}
CONV = {'n/in1:0': np.ones((4, 2, 3, 3), np.float32)}
CL = 'qonnx.custom_op.channels_last:'
NCHW = {'rank': 4, 'layout': 'cf', 'shape': [None, 2, 8, 8]}
NHWC = {'rank': 4, 'layout': 'same', 'shape': [None, 8, 8, 2]}
BN = {f'n/in{k}:0': np.ones(3, np.float32) for k in (1, 2, 3, 4)}
FEATURES = {'rank': 2, 'layout': 'same', 'shape': [None, 3], 'out_shape': [None, 3], 'computed_inputs': [0]}
TWO = {'computed_inputs': [0, 1], 'in_layouts': ['same', 'same']}
QUANT_W = {'n/in1:0': np.float32(0.125), 'n/in2:0': np.float32(0), 'n/in3:0': np.float32(6)}


def _padded(s: object, pad: object, kernel: tuple) -> bool:
    return (
        isinstance(s, PaddedSpec)
        and s.pad == MoveSpec('ZeroPadding2D', (('padding', pad),))
        and s.layer.kernel.shape == kernel
        and s.layer.args['padding'] == 'valid'
    )


ROWS = [
    ('InputLayer', {'batch_shape': [None, 4]}, {}, lambda s: s == InputSpec((None, 4))),
    (
        'Gemm',
        {'transB': 1, 'rank': 2, 'alpha': 0.5, 'beta': 2.0},
        W,
        lambda s: (
            isinstance(s, WeightLayerSpec)
            and s.kernel.tolist() == [[0, 1, 2], [0.5, 1.5, 2.5]]
            and s.bias.tolist() == [2, 2, 2]
            and s.args == {'units': 3}
        ),
    ),
    ('MatMul', {'rank': 2}, {'n/in1:0': W['n/in1:0']}, lambda s: isinstance(s, WeightLayerSpec) and s.bias is None),
    (
        'Conv',
        {'pads': [1, 1, 1, 1], 'strides': [1, 1], **NCHW},
        CONV,
        lambda s: s.kernel.shape == (3, 3, 2, 4) and s.args['padding'] == 'same',
    ),
    (
        f'{CL}Conv',
        {'pads': [1, 2, 1, 2], **NHWC},
        {'n/in1:0': np.ones((4, 3, 3, 2), np.float32)},
        lambda s: _padded(s, ((1, 1), (2, 2)), (3, 3, 2, 4)),
    ),
    ('Relu', {}, {}, lambda s: s == FloatActivationSpec('relu')),
    ('Sigmoid', {}, {}, lambda s: s == FloatActivationSpec('sigmoid')),
    ('Tanh', {}, {}, lambda s: s == FloatActivationSpec('tanh')),
    ('Selu', {}, {}, lambda s: s == FloatActivationSpec('selu')),
    ('Softmax', {'axis': -1}, {}, lambda s: s == FloatActivationSpec('softmax')),
    ('LeakyRelu', {'alpha': 0.125}, {}, lambda s: s == LeakyReluSpec(0.125)),
    ('Clip', {'min': 0.0, 'max': 6.0}, {}, lambda s: s == ClipSpec(0.0, 6.0)),
    ('Identity', {}, {}, lambda s: isinstance(s, IdentitySpec)),
    ('Dropout', {}, {}, lambda s: isinstance(s, IdentitySpec)),
    ('Cast', {'to': 1}, {}, lambda s: isinstance(s, IdentitySpec)),
    (
        'MaxPool',
        {'kernel_shape': [2, 2], 'strides': [2, 2], **NCHW},
        {},
        lambda s: s == MoveSpec('MaxPooling2D', (('pool_size', (2, 2)), ('strides', (2, 2)), ('padding', 'valid'))),
    ),
    (
        f'{CL}MaxPool',
        {'kernel_shape': [3, 3], 'pads': [1, 1, 1, 1], **NHWC},
        {},
        lambda s: s == MoveSpec('MaxPooling2D', (('pool_size', (3, 3)), ('strides', (1, 1)), ('padding', 'same'))),
    ),
    (
        'AveragePool',
        {'kernel_shape': [2], 'rank': 3, 'layout': 'cf', 'shape': [None, 2, 8]},
        {},
        lambda s: isinstance(s, AveragePoolSpec) and (s.rank, s.global_pool) == (1, False),
    ),
    (
        'GlobalAveragePool',
        {'rank': 4, 'layout': 'cf'},
        {},
        lambda s: isinstance(s, ChainSpec) and (s.first.rank, s.first.global_pool) == (2, True),
    ),
    (
        'ReduceMean',
        {'rank': 3, 'axes': [2], 'keepdims': 0, 'layout': 'cf'},
        {},
        lambda s: isinstance(s, AveragePoolSpec) and (s.rank, s.global_pool) == (1, True),
    ),
    (
        'Flatten',
        {'rank': 4, 'axis': 1, 'layout': 'cf'},
        {},
        lambda s: isinstance(s, ChainSpec) and s.first.args == (('dims', (3, 1, 2)),),
    ),
    (
        'Reshape',
        {'rank': 2, 'shape': [None, 8], 'out_shape': [None, 8]},
        {'n/in1:0': np.array([-1, 8], np.float32)},
        lambda s: isinstance(s, IdentitySpec),
    ),
    (
        'Unsqueeze',
        {'shape': [None, 3], 'out_shape': [None, 3, 1], 'out_layout': 'cf'},
        {},
        lambda s: s == MoveSpec('Reshape', (('target_shape', (1, 3)),)),
    ),
    (
        'Squeeze',
        {'rank': 4, 'shape': [None, 1, 3, 4], 'layout': 'cf', 'out_shape': [None, 3, 4], 'out_layout': 'same'},
        {},
        lambda s: s == MoveSpec('Reshape', (('target_shape', (3, 4)),)),  # held (N, 3, 4, 1) -> (N, 3, 4)
    ),
    ('Transpose', {'perm': [0, 3, 1, 2], 'layout_change': True}, {}, lambda s: isinstance(s, IdentitySpec)),
    ('Concat', {'rank': 4, 'axis': 1, 'layout': 'cf', **TWO}, {}, lambda s: s == MergeSpec('concatenate', 3)),
    ('Sum', {**TWO}, {}, lambda s: s == MergeSpec('add')),
    ('Add', {**TWO}, {}, lambda s: s == MergeSpec('add')),
    (
        'Sub',
        FEATURES,
        {'n/in1:0': np.float32([1, 2, 4])},
        lambda s: isinstance(s, BatchNormSpec) and s.gamma.tolist() == [1, 1, 1] and s.beta.tolist() == [-1, -2, -4],
    ),
    (
        'Mul',
        FEATURES,
        {'n/in1:0': np.float32(0.5)},
        lambda s: isinstance(s, BatchNormSpec) and s.gamma.tolist() == [0.5] * 3 and s.beta.tolist() == [0, 0, 0],
    ),
    ('Div', FEATURES, {'n/in1:0': np.float32(4)}, lambda s: isinstance(s, BatchNormSpec) and s.gamma.tolist() == [0.25] * 3),
    ('BatchNormalization', {'epsilon': 0.0, **NCHW}, BN, lambda s: isinstance(s, BatchNormSpec)),
    (f'{CL}BatchNormalization', {'epsilon': 0.0, **NHWC}, BN, lambda s: isinstance(s, BatchNormSpec)),
    (
        'Pad',
        {'pads': [0, 0, 1, 2, 0, 0, 2, 1], **NCHW},
        {},
        lambda s: s == MoveSpec('ZeroPadding2D', (('padding', ((1, 2), (2, 1))),)),
    ),
    (
        'Resize',
        {'coordinate_transformation_mode': 'asymmetric', 'nearest_mode': 'floor', **NCHW, 'out_shape': [None, 2, 16, 24]},
        {'n/in2:0': np.float32([1, 1, 2, 3])},
        lambda s: s == MoveSpec('UpSampling2D', (('size', (2, 3)),)),
    ),
    (
        'Upsample',
        {'scales': [1.0, 1.0, 2.0, 2.0], **NCHW, 'out_shape': [None, 2, 16, 16]},
        {},
        lambda s: s == MoveSpec('UpSampling2D', (('size', (2, 2)),)),
    ),
    (
        'Quant',
        {'signed': 1, 'narrow': 1, 'rounding_mode': 'ROUND'},
        QUANT_W,
        lambda s: s == QuantizeSpec(FixedFormat(1, 2, 3, 'RND_CONV', 'SAT_SYM')),
    ),
    (
        'IntQuant',
        {'signed': 0, 'narrow': 0, 'rounding_mode': 'FLOOR'},
        {'n/in1:0': np.float32(0.25), 'n/in2:0': np.float32(0), 'n/in3:0': np.float32(4)},
        lambda s: s == QuantizeSpec(FixedFormat(0, 2, 2, 'TRN', 'SAT')),
    ),
    (
        'BipolarQuant',
        {},
        {'n/in1:0': np.float32(0.5)},
        lambda s: s == QuantizeSpec(FixedFormat(1, 0, 0, 'TRN', 'SAT'), (1.0, 0.5)),
    ),
    (
        'QuantizeLinear',
        {'dequantized': 1, 'zero_point_type': 'int8', 'clip': [-127.0, 127.0]},
        {'n/in1:0': np.float32(0.0625), 'n/in2:0': np.int64(0)},
        lambda s: s == QuantizeSpec(FixedFormat(1, 3, 4, 'RND_CONV', 'SAT_SYM')),
    ),
]


@pytest.mark.parametrize('op, config, weights, check', ROWS, ids=[r[0] for r in ROWS])
def test_handler(op: str, config: dict, weights: dict, check: object) -> None:
    inbound = ['a', 'b'] if len(config.get('computed_inputs', [0])) == 2 else ['a']
    assert check(OPS.entry(op).handler(SourceLayer('n', op, config, weights, inbound)))  # type: ignore[misc,operator]


@pytest.mark.parametrize(
    'config, weights',
    [({}, {'n/in2:0': np.array(True)}), ({'computed_inputs': [0, 2]}, {}), ({'is_test': 0}, {})],
    ids=['training-mode-true', 'training-mode-computed', 'opset6-is_test-0'],
)
def test_dropout_in_training_mode_is_refused(config: dict, weights: dict) -> None:
    with pytest.raises(LayerProblem, match='training mode'):
        OPS.entry('Dropout').handler(SourceLayer('n', 'Dropout', config, weights, ['a']))  # type: ignore[misc]
    assert isinstance(
        OPS.entry('Dropout').handler(SourceLayer('n', 'Dropout', {}, {'n/in2:0': np.array(False)}, ['a'])), IdentitySpec
    )  # type: ignore[misc]


@pytest.mark.parametrize(
    'attrs, consts, message',
    [
        ({'rounding_mode': 'HALF_UP'}, (0.25, 0, 4), 'HALF_UP'),
        ({'signed': 0, 'narrow': 1}, (0.25, 0, 4), 'narrow unsigned'),
        ({}, (0.3, 0, 4), 'not a power of two'),
        ({}, (0.25, 1, 4), 'zero-point'),
        ({}, (0.25, 0, 4.5), 'bitwidth'),
    ],
)
def test_quant_refusals(attrs: dict, consts: tuple, message: str) -> None:
    weights = {f'n/in{k}:0': np.float32(v) for k, v in zip((1, 2, 3), consts)}
    with pytest.raises(LayerProblem, match=message):
        OPS.entry('Quant').handler(SourceLayer('n', 'Quant', attrs, weights, ['a']))  # type: ignore[misc]


def test_every_handler_has_a_row() -> None:
    assert sorted(OPS.names()) == sorted(r[0] for r in ROWS)


def test_keras_export_transposes_and_shape_subgraph_are_folded() -> None:
    """tf2onnx's Transpose pairs around convolutions become nothing, its Shape/Gather/Slice/Concat chain a constant."""
    from hgqbridge.converters.onnx import read_onnx

    graph = read_onnx(ONNX / 'keras_cnn.onnx')
    ops = [layer.class_name for layer in graph]
    assert 'Shape' not in ops and 'Gather' not in ops and ops.count('Transpose') == 2
    conv = hgqbridge.import_model(ONNX / 'keras_cnn.onnx', dummy=True)
    assert not any(type(layer).__name__ == 'Permute' for layer in conv.model.layers)  # channels-last in ONNX too: no reordering


@pytest.mark.slow
def test_goldens_are_what_onnxruntime_and_qonnx_compute_today() -> None:
    """onnxruntime picks its kernels by CPU itself (MLAS), so float graphs are compared within the ulp bound."""
    result = rerun_reference(ONNX / 'make_fixtures.py', {'PYTHONPATH': str(ROOT / '.onnx-ref')}, 'DEFAULT')
    assert set(result['results']) == set(ENTRIES) and all(r['tensors'] == 4 for r in result['results'].values())


def _maxpool_graph(path: Path, relu: bool) -> None:
    """NCHW (2, 8, 8) -> Conv k3 p1 -> [Relu] -> MaxPool k3 s2 p1 (torch's ResNet stem; not TensorFlow 'same')."""
    w = np.random.default_rng(1).normal(0, 0.5, (3, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node('Conv', ['x', 'w'], ['c'], name='conv', pads=[1, 1, 1, 1], kernel_shape=[3, 3])]
    if relu:
        nodes.append(helper.make_node('Relu', ['c'], ['r'], name='relu'))
    nodes.append(
        helper.make_node(
            'MaxPool', [nodes[-1].output[0]], ['y'], name='pool', kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        )
    )
    graph = helper.make_graph(
        nodes,
        'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['n', 2, 8, 8])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, 'w')],
    )
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)]).SerializeToString())


def test_maxpool_pads_of_a_non_negative_input_are_zero_padding(tmp_path: Path) -> None:
    """onnxruntime (the reference, run here) pads with -inf; after a Relu, zero padding gives the same maxima."""
    import onnxruntime

    _maxpool_graph(tmp_path / 'm.onnx', relu=True)
    x = np.random.default_rng(2).normal(0, 1, (16, 2, 8, 8)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / 'm.onnx'), providers=['CPUExecutionProvider'])
    ref = channels_last(session.run(None, {'x': x})[0])
    conv = hgqbridge.import_model(tmp_path / 'm.onnx', dummy=True)
    assert [type(layer).__name__ for layer in conv.model.layers][-2:] == ['ZeroPadding2D', 'MaxPooling2D']
    got = conv.model.predict(channels_last(x), verbose=0)
    assert got.shape == ref.shape == (16, 4, 4, 3)
    assert ulps_of_max(ref, float(np.max(np.abs(got - ref)))) <= FLOAT_ULPS
    _maxpool_graph(tmp_path / 'n.onnx', relu=False)
    with pytest.raises(UnsupportedError, match=r'g/pool \(MaxPool\).*may be negative'):
        hgqbridge.import_model(tmp_path / 'n.onnx', dummy=True)
