"""Plain (float) Keras 2 and Keras 3 models: dummy quantizers reproduce them, real ones are calibrated from data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hgqbridge
from hgqbridge.compare import ulps_of_max
from hgqbridge.errors import HGQBridgeError, UnsupportedError

from ...conftest import FLOAT_ULPS, ISAS, ROOT, record, rerun_reference

KERAS = ROOT / 'fixtures' / 'keras'
ENTRIES = {
    e['name']: e for m in ('manifest_keras2.json', 'manifest_keras3.json') for e in json.loads((KERAS / m).read_text())['models']
}


def _files(name: str) -> list[Path]:
    return [KERAS / f for f in ENTRIES[name]['files']]


def _golden(name: str) -> dict[str, np.ndarray]:
    with np.load(KERAS / ENTRIES[name]['golden']) as g:
        return dict(g)


@pytest.mark.parametrize('name', sorted(ENTRIES))
def test_dummy_quantizers_reproduce_the_float_model(name: str) -> None:
    """Every layer's output within FLOAT_ULPS units in the last place of that tensor's largest magnitude (float32
    rounding differs by CPU and by kernel, so the framework's own float tensors are not reproduced bit for bit)."""
    conv = hgqbridge.import_model(*_files(name), dummy=True)
    report = hgqbridge.verify(conv, KERAS / ENTRIES[name]['golden'])
    golden = _golden(name)
    compared = 0
    for kind in ('normal', 'stress'):
        for match in report.results[kind]:
            assert match.max_ulps <= FLOAT_ULPS, (kind, match)
            compared += 1
    worst = max(m.max_ulps for ms in report.results.values() for m in ms)
    record(f'{name} with dummy quantizers vs its Keras goldens: within {worst:g} ulp (bound {FLOAT_ULPS})')
    layers = {k.split('::')[1] for k in golden if k.startswith('normal::')}
    assert compared == 2 * len(layers) and not report.missing
    assert conv.report.framework == 'Keras' and 'dummy quantizers' in ' '.join(conv.report.summary)


@pytest.mark.parametrize('name', sorted(ENTRIES))
def test_quantized_from_calibration_data(name: str) -> None:
    """--bits 8 --calibration: every weight and activation quantizer has at most 8 bits, every activation saturates
    (SAT) instead of wrapping, the report puts the float and the quantized model side by side on the calibration
    data and on the held-back data, and the quantized model keeps the float model's decisions on fresh data."""
    from hgqbridge.inspect import layer_quantizers, quantizer_info

    data = KERAS / ENTRIES[name]['data']
    conv = hgqbridge.import_model(*_files(name), bits=8, calibration=data)
    infos = [info for layer in conv.model.layers for q in layer_quantizers(layer).values() if (info := quantizer_info(q))]
    assert infos and max(int(np.max(info.width)) for info in infos) <= 8
    assert {info.overflow for info in infos} == {'SAT'}
    text = conv.report.to_text()
    assert 'calibration data (' in text and 'held-back data (' in text and 'quantized model' in text
    with np.load(data) as d:
        x, y = d['x_val'], d['y_val']
    floats = hgqbridge.convert(*_files(name), dummy=True).predict(x, verbose=0)
    quant = conv.model.predict(x, verbose=0)
    agree = np.mean(floats.argmax(-1) == quant.argmax(-1))
    record(f'{name}, 8 bits calibrated: same top class as the float model on {agree:.1%} of held-back inputs')
    assert agree >= 0.9, agree
    assert y.shape == floats.shape


def test_uniform_activations_give_one_format_per_tensor() -> None:
    """--uniform-activations: every activation quantizer holds one 8-bit format whose range is its widest element's,
    the weights stay per channel, and hls4ml's io_stream, which refuses the per-element formats, accepts the model."""
    from hgqbridge.inspect import layer_quantizers, quantizer_info

    data = KERAS / ENTRIES['k2_jet_bn']['data']
    per_element = hgqbridge.import_model(*_files('k2_jet_bn'), bits=8, calibration=data)
    uniform = hgqbridge.import_model(*_files('k2_jet_bn'), bits=8, calibration=data, uniform_activations=True)

    def activations(model: object) -> dict[tuple[str, str], object]:
        return {
            (layer.name, role): info
            for layer in model.layers  # type: ignore[attr-defined]
            for role, q in layer_quantizers(layer).items()
            if role not in ('kernel', 'bias') and (info := quantizer_info(q)) is not None
        }

    before, after = activations(per_element.model), activations(uniform.model)
    assert before.keys() == after.keys() and len(after) >= 3
    assert not all(info.uniform for info in before.values())
    for key, info in after.items():
        fmt, widest = info.widest(), before[key].widest()
        assert info.uniform and (fmt.k, fmt.i, fmt.k + fmt.i + fmt.f) == (widest.k, widest.i, 8), (key, fmt, widest)
    kernels = [
        quantizer_info(layer_quantizers(layer)['kernel']) for layer in uniform.model.layers if 'kernel' in layer_quantizers(layer)
    ]
    assert any(not info.uniform for info in kernels)  # weights keep their per-channel formats
    assert 'one format per tensor' in uniform.report.to_text()
    refused = hgqbridge.check(per_element.model, 'hls4ml:vitis', io_type='io_stream')
    assert any('[io-stream-heterogeneous]' in i.reason for i in refused.items if i.status == 'error')
    accepted = hgqbridge.check(uniform.model, 'hls4ml:vitis', io_type='io_stream')
    assert not any('[io-stream-heterogeneous]' in i.reason for i in accepted.items), accepted.to_text()


def test_uniform_activations_on_a_quantized_source_say_they_changed_nothing() -> None:
    from ...conftest import QKERAS

    conv = hgqbridge.import_model(QKERAS / 'jet_tagger.h5', uniform_activations=True)
    assert '--uniform-activations changed nothing' in conv.report.to_text()


def test_without_calibration_the_defaults_are_stated() -> None:
    conv = hgqbridge.import_model(*_files('k3_skip'), bits=6)
    line = next(line for line in conv.report.summary if 'no calibration data' in line)
    assert 'ap_fixed<6,4,AP_RND,AP_SAT>' in line and 'expected accuracy impact' in line


def test_without_calibration_or_bits_a_float_model_is_refused() -> None:
    """The bridge does not guess formats silently: no data, no --bits, no --dummy is one error saying what to pass."""
    with pytest.raises(HGQBridgeError, match='without data the bridge will not guess') as info:
        hgqbridge.import_model(*_files('k3_skip'))
    assert '--calibration' in str(info.value) and '--dummy' in str(info.value)


def test_fold_batchnorm_into_the_dense_before_it() -> None:
    conv = hgqbridge.import_model(*_files('k2_jet_bn'), dummy=True, fold_batchnorm=True)
    names = [layer.name for layer in conv.model.layers]
    assert 'bn1' not in names and 'fc1' in names
    golden = _golden('k2_jet_bn')
    out = conv.model.predict(golden['x_normal'], verbose=0)
    worst = ulps_of_max(golden['normal::softmax'], float(np.max(np.abs(out - golden['normal::softmax']))))
    assert worst <= FLOAT_ULPS, worst
    assert 'folded into the layer before it: bn1' in conv.report.to_text()


def test_unsupported_layers_are_listed_all_at_once(tmp_path: Path) -> None:
    config = json.loads((KERAS / 'k2_conv1d.json').read_text())
    layers = config['config']['layers']
    kinds = {'conv2': 'LSTM', 'flatten': 'Lambda', 'pool1': 'MyCustomPooling'}
    for layer in layers:
        if layer['config']['name'] in kinds:
            layer['class_name'] = kinds[layer['config']['name']]
    (tmp_path / 'm.json').write_text(json.dumps(config))
    with pytest.raises(UnsupportedError) as info:
        hgqbridge.import_model(tmp_path / 'm.json', KERAS / 'k2_conv1d_weights.h5')
    assert [p.layer for p in info.value.problems] == [
        'k2_conv1d/pool1 (MyCustomPooling)',
        'k2_conv1d/conv2 (LSTM)',
        'k2_conv1d/flatten (Lambda)',
    ]


@pytest.mark.parametrize('bits', [0, 1, 33, 'eight'])
def test_bits_must_be_sensible(bits: object) -> None:
    with pytest.raises(HGQBridgeError, match='bits must be'):
        hgqbridge.import_model(*_files('k3_skip'), bits=bits)


@pytest.mark.parametrize(('name', 'fold'), [('k2_jet_bn', False), ('k2_jet_bn', True)])
def test_quantized_float_model_exports_bit_exact(name: str, fold: bool, tmp_path: Path) -> None:
    """A calibrated float model, softmax head included (kept float, not exported): check calls it deployable and
    da4ml's firmware model equals it bit for bit (k2_jet_bn: 9999 of 10000 outputs differed before)."""
    data = KERAS / ENTRIES[name]['data']
    conv = hgqbridge.import_model(*_files(name), calibration=data, fold_batchnorm=fold)
    report = hgqbridge.check(conv.model, 'da4ml')
    assert report.deployable, report.to_text()
    with np.load(data) as d:
        exported = hgqbridge.export(conv.model, 'da4ml', tmp_path / 'prj', d['x_val'][:300], rtl=False)
    assert exported.ok, exported.to_text()
    assert exported.mismatches == {'normal': 0, 'stress': 0}


def test_a_table_activation_is_unverified_and_export_refuses_it(tmp_path: Path) -> None:
    """k3_skip's non-ReLU activation becomes a QUnaryFunctionLUT: nothing proves the target's table equal to the
    float32 Keras one, so check says unverified (not deployable) and export refuses, naming the rule."""
    from hgqbridge.errors import ProblemsError

    data = KERAS / ENTRIES['k3_skip']['data']
    conv = hgqbridge.import_model(*_files('k3_skip'), calibration=data, fold_batchnorm=True)
    report = hgqbridge.check(conv.model, 'da4ml')
    blocking = [i for i in report.items if i.status in ('error', 'unverified')]
    assert not report.deployable and blocking and all(i.status == 'unverified' for i in blocking)
    assert {i.layer_class for i in blocking} == {'QUnaryFunctionLUT'} and all('[table-layer]' in i.reason for i in blocking)
    with np.load(data) as d, pytest.raises(ProblemsError, match='cannot be proven bit-exact'):
        hgqbridge.export(conv.model, 'da4ml', tmp_path / 'prj', d['x_val'][:50], rtl=False)


@pytest.mark.slow
@pytest.mark.parametrize(('fold', 'io_type'), [(False, 'io_parallel'), (True, 'io_parallel'), (True, 'io_stream')])
def test_quantized_jet_tagger_exports_bit_exact_to_hls4ml(fold: bool, io_type: str, tmp_path: Path) -> None:
    """The same on hls4ml:vitis, whose C simulation is compiled (6887 outputs differed before, relu1 with folding);
    io_stream with --uniform-activations (it refuses per-element activation formats)."""
    data = KERAS / 'k2_jet_bn.data.npz'
    uniform = io_type == 'io_stream'
    conv = hgqbridge.import_model(*_files('k2_jet_bn'), calibration=data, fold_batchnorm=fold, uniform_activations=uniform)
    assert hgqbridge.check(conv.model, 'hls4ml:vitis', io_type=io_type).deployable
    with np.load(data) as d:
        exported = hgqbridge.export(conv.model, 'hls4ml:vitis', tmp_path / 'prj', d['x_val'][:200], io_type=io_type)
    assert exported.ok, exported.to_text()
    assert exported.mismatches == {'normal': 0, 'stress': 0}


@pytest.mark.slow
@pytest.mark.parametrize('isa', ISAS)
@pytest.mark.parametrize('version', ['2', '3'])
def test_goldens_are_what_keras_computes_today(version: str, isa: str) -> None:
    """Re-run the Keras that wrote the fixtures (Keras 2: tf_keras in the QKeras reference folder) on them. Every
    tensor of a float model is float32 arithmetic, so it is compared within fixtures/goldens.py's ulp bound."""
    env = {'TF_USE_LEGACY_KERAS': '1', 'PYTHONPATH': str(ROOT / '.qkeras-ref')} if version == '2' else {}
    result = rerun_reference(KERAS / 'make_fixtures.py', env, isa, '--keras', version)
    assert result['keras'].startswith(version + '.')
    names = {e['name'] for e in json.loads((KERAS / f'manifest_keras{version}.json').read_text())['models']}
    assert set(result['results']) == names
