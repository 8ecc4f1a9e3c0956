"""Every QKeras fixture converts to genuine hgq.layers and reproduces every QKeras tensor bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hgqbridge

from ...conftest import ISAS, MANIFEST, MANIFEST_V3, MODELS, QKERAS, QKERAS_V3, ROOT, golden_path, rerun_reference

REF_ENV = ROOT / '.qkeras-ref'
REF_V3 = ROOT / '.qkeras-v3-ref'


@pytest.mark.parametrize('name', sorted(MODELS))
def test_bit_exact_against_qkeras(name: str, conversions: dict) -> None:
    conv = conversions[name]
    report = hgqbridge.verify(conv, golden_path(name))
    assert report.bit_exact, report.to_text()
    for kind in ('normal', 'stress'):
        exact = [m for m in report.results[kind] if m.exact_required]
        assert exact and all(m.mismatches == 0 for m in exact)
    with np.load(golden_path(name)) as golden:
        layers = {k.split('::')[1] for k in golden.files if k.startswith('normal::')}
    compared = {m.layer for m in report.results['normal']}
    assert compared == layers, f'not compared: {layers - compared}'


@pytest.mark.parametrize('name', sorted(MODELS))
def test_genuine_hgq_layers_keep_source_names(name: str, conversions: dict) -> None:
    conv = conversions[name]
    expected = {
        'QDense': 'hgq.layers.core.dense.QDense',
        'Dense': 'hgq.layers.core.dense.QDense',
        'QConv1D': 'hgq.layers.conv.QConv1D',
        'QConv2D': 'hgq.layers.conv.QConv2D',
        'Add': 'hgq.layers.ops.merge.QAdd',
    }
    for source in conv.graph:
        if source.class_name in expected:
            layer = conv.model.get_layer(source.name)
            assert f'{type(layer).__module__}.{type(layer).__name__}' == expected[source.class_name]


def test_stress_inputs_saturate(conversions: dict) -> None:
    """x4 inputs really drive the quantizers to their limits (else the stress comparison proves little)."""
    with np.load(QKERAS / 'jet_tagger.golden.npz') as g:
        relu = g['stress::relu1']
    assert np.count_nonzero(relu == 1 - 2**-6) > 100


def test_a_one_lsb_change_is_caught(conversions: dict, tmp_path: Path) -> None:
    conv = hgqbridge.import_model(QKERAS / 'jet_tagger.h5')
    layer = conv.model.get_layer('fc2')
    kernel = np.array(layer.kernel)
    kernel[0, 0] += 2**-5  # one LSB of quantized_bits(6,0)
    layer.kernel.assign(kernel)
    report = hgqbridge.verify(conv, QKERAS / 'jet_tagger.golden.npz')
    assert not report.bit_exact
    assert report.first_divergence['normal'] == 'fc2'
    assert 'first diverging layer: fc2' in report.to_text()


def test_the_report_names_the_range_where_qkeras_itself_is_exact() -> None:
    """QKeras's quantizers return x + stop_gradient(xq - x) in float32: the quantized value only while ulp(x) <= 2^-f,
    i.e. |x| < 2^(24 - f). The report names that range per layer, on a QActivation's input and on the sums of a
    layer whose activation= is a quantizer (mixed_small: q_a is quantized_bits(6,0) unsigned, f = 6; dense_b's
    activation quantized_relu(4,1) has f = 3)."""
    conv = hgqbridge.import_model(QKERAS / 'mixed_small.json', QKERAS / 'mixed_small_weights.h5')
    notes = {n.source: ' '.join(n.notes) for n in conv.report.layers}
    assert 'exact for inputs |x| < 262144 (2^18)' in notes['q_a']
    assert "exact while the layer's sums stay below |z| < 2.09715e+06 (2^21)" in notes['dense_b']
    assert 'exact while' not in notes['dense_a']  # no activation= quantizer: nothing to bound


def test_sequential_json_with_input_format(tmp_path: Path) -> None:
    """A Sequential model (no InputLayer in the config) and a user-given input format."""
    config = {
        'class_name': 'Sequential',
        'config': {
            'name': 'seq',
            'layers': [
                {
                    'class_name': 'QDense',
                    'config': {
                        'name': 'd',
                        'units': 2,
                        'batch_input_shape': [None, 3],
                        'use_bias': False,
                        'kernel_quantizer': 'quantized_bits(4,0,alpha=1)',
                    },
                },
                {'class_name': 'QActivation', 'config': {'name': 'a', 'activation': 'quantized_relu(4,2)'}},
            ],
        },
    }
    import h5py

    (tmp_path / 'seq.json').write_text(json.dumps(config))
    with h5py.File(tmp_path / 'w.h5', 'w') as f:
        f.attrs['layer_names'] = np.array([b'd', b'a'])
        g = f.create_group('d')
        g.attrs['weight_names'] = np.array([b'd/kernel:0'])
        g['d/kernel:0'] = np.array([[0.5, -0.25], [0.125, 1.0], [-1.0, 0.0]], dtype=np.float32)
        f.create_group('a').attrs['weight_names'] = np.array([], dtype='S1')
    model = hgqbridge.convert(tmp_path / 'seq.json', tmp_path / 'w.h5', input_format='fixed<8,3>')
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25], [100.0, 0, 0]], dtype=np.float32)
    # By hand: quantized_bits(4,0) is kif(1,0,3), so the kernel's 1.0 saturates to 0.875; fixed<8,3> is kif(1,2,5),
    # so 100 saturates to 3.96875; quantized_relu(4,2) is kif(0,2,2): step 0.25, half to even.
    # row 1: [0.5+0.25-3, -0.25+1.75] = [-2.25, 1.5] -> [0, 1.5]
    # row 2: [-0.5+0.0625-0.25, 0.25+0.4375] = [-0.6875, 0.6875] -> [0, 0.75]   (2.75 steps -> 3)
    # row 3: [0.5*3.96875, -0.25*3.96875] = [1.984375, -0.99] -> [2.0, 0]          (7.9375 steps -> 8)
    expected = np.array([[0.0, 1.5], [0.0, 0.75], [2.0, 0.0]], dtype=np.float32)
    assert np.array_equal(np.asarray(model.predict([x], verbose=0)), expected)


@pytest.mark.slow
@pytest.mark.parametrize('isa', ISAS)
def test_goldens_are_what_qkeras_computes_today(isa: str) -> None:
    """Re-run the real QKeras 0.9.0 (own --target folder, subprocess) on the committed fixtures, as on three CPUs."""
    assert (REF_ENV / 'qkeras').is_dir(), (
        f'the QKeras reference environment is missing: run `make qkeras-ref` (creates {REF_ENV})'
    )
    result = rerun_reference(QKERAS / 'make_fixtures.py', {'TF_USE_LEGACY_KERAS': '1', 'PYTHONPATH': str(REF_ENV)}, isa)
    assert result['qkeras'] == '0.9.0'
    assert set(result['results']) == {e['name'] for e in MANIFEST['models']} | {'quantizers'}


@pytest.mark.slow
@pytest.mark.parametrize('isa', ISAS)
def test_v3_goldens_are_what_qkeras_v3_computes_today(isa: str) -> None:
    """Re-run the real qkeras-v3 (own --target folder, subprocess, on keras 3) on the committed .keras fixtures."""
    assert (REF_V3 / 'qkeras').is_dir(), f'the qkeras-v3 reference is missing: run `make qkeras-ref` (creates {REF_V3})'
    result = rerun_reference(QKERAS_V3 / 'make_fixtures.py', {'PYTHONPATH': str(REF_V3)}, isa)
    assert result['qkeras'].startswith(str(REF_V3))
    assert set(result['results']) == {e['name'] for e in MANIFEST_V3['models']}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_saved_keras_file_is_identical(name: str, conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    """What `hgqbridge convert -o model.keras` writes loads back (safe mode) and computes the same values."""
    from hgqbridge.models import load_model, save_model

    model = conversions[name].model
    save_model(model, tmp_path / 'm.keras', force=False)
    loaded = load_model(tmp_path / 'm.keras')
    x = golden_inputs[name]
    assert np.array_equal(model.predict([x], verbose=0), loaded.predict([x], verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
