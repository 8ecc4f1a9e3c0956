"""hls4ml: the rules table, and exports whose g++-compiled C simulation equals the HGQ2 model bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hgqbridge
from hgqbridge.errors import HGQBridgeError, OutputExistsError, ProblemsError

EXPORTABLE = [
    'jet_tagger',
    'digits_mlp',
    'branches_1d',
    'po2_weights',
]  # mixed_small, digits_cnn, hard_activations: refused by check (tested below)


@pytest.mark.slow
@pytest.mark.parametrize('name', EXPORTABLE)
def test_vitis_csim_is_bit_exact(name: str, conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    model = conversions[name].model
    assert hgqbridge.check(model, 'hls4ml:vitis').deployable
    out = tmp_path / 'prj'
    report = hgqbridge.export(model, 'hls4ml:vitis', out, golden_inputs[name])
    assert report.ok, report.to_text()
    assert report.mismatches == {'normal': 0, 'stress': 0}
    assert report.compared_values['normal'] == golden_inputs[name].shape[0] * model.outputs[0].shape[-1]
    assert (out / 'firmware').is_dir() and any(p.suffix == '.so' for p in (out / 'firmware').iterdir())
    saved = json.loads((out / 'hgqbridge_export.json').read_text())
    assert saved['ok'] is True and saved['bit_exact'] == {'normal': True, 'stress': True}
    with pytest.raises(OutputExistsError):
        hgqbridge.export(model, 'hls4ml:vitis', out, golden_inputs[name])


def test_float_layer_is_refused_with_reason(conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    model = conversions['mixed_small'].model
    report = hgqbridge.check(model, 'hls4ml:vitis')
    assert not report.deployable
    errors = [i for i in report.items if i.status == 'error']
    assert [(i.layer, 'float-quantizer' in i.reason) for i in errors] == [('relu_a', False), ('dense_float', True)]
    assert '[signed-relu]' in errors[0].reason  # its input can be negative: hls4ml's ReLU lets those through
    with pytest.raises(ProblemsError, match='dense_float'):
        hgqbridge.export(model, 'hls4ml:vitis', tmp_path / 'prj', golden_inputs['mixed_small'])
    assert not (tmp_path / 'prj').exists()


@pytest.mark.parametrize(
    'target, options, rule, severity',
    [
        ('hls4ml:oneapi', {}, 'no-csim-here', 'warning'),
        ('hls4ml:catapult', {}, 'no-csim-here', 'warning'),
        ('hls4ml:quartus', {}, 'quartus-deprecated', 'warning'),
        ('hls4ml:vitis', {'strategy': 'distributed_arithmetic', 'reuse_factor': 2}, 'da-strategy', 'error'),
        ('hls4ml:oneapi', {'strategy': 'distributed_arithmetic'}, 'da-strategy', 'error'),
        ('hls4ml:vitis', {}, 'float-head', 'warning'),
    ],
)
def test_rules(target: str, options: dict, rule: str, severity: str, conversions: dict) -> None:
    report = hgqbridge.check(conversions['jet_tagger'].model, target, **options)
    fired = [i for i in report.items if f'[{rule}]' in i.reason]
    assert fired and all(i.status == severity for i in fired) and all(i.fix for i in fired)
    assert report.deployable == (severity == 'warning')


def test_heterogeneous_activations_need_io_parallel(conversions: dict) -> None:
    import keras

    model = keras.models.clone_model(conversions['jet_tagger'].model)
    model.set_weights(conversions['jet_tagger'].model.get_weights())
    iq = model.get_layer('fc2').iq.quantizer
    f = np.array(iq._f)
    f.flat[0] -= 2  # one feature with two fewer fractional bits, as fine-tuning produces
    iq._f.assign(f)
    assert hgqbridge.check(model, 'hls4ml:vitis').deployable
    for target, options in (('hls4ml:vitis', {'io_type': 'io_stream'}), ('hls4ml:catapult', {})):
        report = hgqbridge.check(model, target, **options)
        assert not report.deployable
        assert [i.layer for i in report.items if i.status == 'error'] == ['fc2']


@pytest.mark.parametrize('bad', ['hls4ml', 'hls4ml:xilinx', 'vivado', 'da4ml:rtl'])
def test_unknown_targets(bad: str, conversions: dict) -> None:
    with pytest.raises(HGQBridgeError, match='unknown target'):
        hgqbridge.check(conversions['jet_tagger'].model, bad)


def test_refusals_name_layer_and_rule(conversions: dict) -> None:
    report = hgqbridge.check(conversions['digits_cnn'].model, 'hls4ml:vitis')
    assert [(i.layer, i.status) for i in report.items if i.status != 'ok'] == [
        ('pad2', 'error'),
        ('dense', 'unverified'),  # [float32-sums]: 40 significant bits
        ('softmax', 'warning'),
    ]
    assert '[supported-layer]' in report.items[[i.layer for i in report.items].index('pad2')].reason


@pytest.mark.slow
def test_affine_rule_is_real(conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    """check refuses the hard-sigmoid quantizer for hls4ml; forcing the export shows why: every value differs."""
    from hgqbridge.converters import parse_target
    from hgqbridge.converters.hls4ml.export import export

    model = conversions['hard_activations'].model
    report = hgqbridge.check(model, 'hls4ml:vitis')
    assert [(i.layer, '[affine-quantizer]' in i.reason) for i in report.items if i.status == 'error'] == [
        ('dense_out_activation', True)
    ]
    forced = export(model, parse_target('hls4ml:vitis', {})[1], tmp_path / 'prj', golden_inputs['hard_activations'])
    assert not forced.ok and forced.mismatches['normal'] > forced.compared_values['normal'] // 2
    assert forced.first_divergence == {'normal': 'dense_out', 'stress': 'dense_out'}  # the affine quantizer is fused there


def test_dilated_convolution_is_refused(conversions: dict) -> None:
    report = hgqbridge.check(conversions['zoo_conv1d_dilated'].model, 'hls4ml:vitis')
    assert [(i.layer, '[conv-dilation]' in i.reason) for i in report.items if i.status == 'error'] == [('c', True)]


@pytest.mark.slow
@pytest.mark.parametrize(
    'target, options',
    [
        ('hls4ml:vivado', {'strategy': 'resource', 'reuse_factor': 4}),
        ('hls4ml:vitis', {'io_type': 'io_stream'}),
        ('hls4ml:quartus', {}),
    ],
)
def test_other_backends_and_options_are_bit_exact(
    target: str, options: dict, conversions: dict, golden_inputs: dict, tmp_path: Path
) -> None:
    report = hgqbridge.export(conversions['jet_tagger'].model, target, tmp_path / 'prj', golden_inputs['jet_tagger'], **options)
    assert report.ok and report.mismatches == {'normal': 0, 'stress': 0}, report.to_text()


def test_oneapi_is_written_and_says_it_is_not_verified(conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    report = hgqbridge.export(conversions['jet_tagger'].model, 'hls4ml:oneapi', tmp_path / 'prj', golden_inputs['jet_tagger'])
    assert not report.verified and not report.ok
    assert 'NOT verified' in report.to_text() and any('vendor compiler' in n for n in report.notes)
    assert (tmp_path / 'prj' / 'hgqbridge_export.json').is_file() and len(report.files) > 5


@pytest.mark.parametrize(
    'n_in, n_out, rf, valid', [(16, 64, 4, True), (16, 64, 16, True), (16, 64, 3, False), (32, 5, 7, False), (32, 5, 160, True)]
)
def test_reuse_factor_rule(n_in: int, n_out: int, rf: int, valid: bool) -> None:
    from hgqbridge.converters.hls4ml.rules import valid_reuse_factor

    assert valid_reuse_factor(n_in, n_out, rf) == valid


def test_reuse_factor_and_unroll_warnings(conversions: dict) -> None:
    model = conversions['jet_tagger'].model
    report = hgqbridge.check(model, 'hls4ml:vitis', strategy='resource', reuse_factor=3)
    assert {i.layer for i in report.items if '[reuse-factor]' in i.reason} == {'fc1', 'fc2', 'fc3', 'output'}
    import keras
    from hgq.layers import QDense

    inp = keras.Input((64,))
    big = keras.Model(inp, QDense(128, name='big')(inp), name='big')  # 64 x 128 = 8192 multiplications
    for backend, fired in (('vivado', ['big']), ('vitis', [])):
        report = hgqbridge.check(big, f'hls4ml:{backend}')
        assert [i.layer for i in report.items if '[vivado-unroll]' in i.reason] == fired and report.deployable


def test_pruned_elements_warn(conversions: dict) -> None:
    """Fine-tuning can prune an input feature to zero bits; hls4ml then risks invalid types (hls4ml#1523)."""
    import keras

    model = keras.models.clone_model(conversions['jet_tagger'].model)
    model.set_weights(conversions['jet_tagger'].model.get_weights())
    iq = model.get_layer('fc3').iq.quantizer
    f = np.array(iq._f)
    f.flat[3] = -10.0  # width k + i + f <= 0 for one feature
    iq._f.assign(f)
    fired = [i for i in hgqbridge.check(model, 'hls4ml:vitis').items if '[zero-width]' in i.reason]
    assert [(i.layer, i.status) for i in fired] == [('fc3', 'warning')] and '1 element(s)' in fired[0].reason


@pytest.mark.parametrize('name, layer', [('zoo_relu_leaky', 'r_slope'), ('zoo_relu_sigmoid_inside', 'd_activation')])
def test_clipped_relu_rule(name: str, layer: str, conversions: dict) -> None:
    """hls4ml 1.3 asserts on a ReLU with max_value / negative_slope (the two-step quantized_relu forms): refused."""
    report = hgqbridge.check(conversions[name].model, 'hls4ml:vitis')
    fired = [i for i in report.items if '[clipped-relu]' in i.reason]
    assert [i.layer for i in fired] == [layer] and not report.deployable
    assert hgqbridge.check(conversions[name].model, 'da4ml').deployable
