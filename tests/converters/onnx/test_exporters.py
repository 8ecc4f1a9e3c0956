"""ONNX files written by the real exporters (fixtures/onnx/exporters: tf2onnx, torch.onnx TorchScript and dynamo,
Brevitas export_qonnx / export_onnx_qcdq, qonnx's channels-last transformation, keras2onnx / onnxmltools / torch 1.x
patterns): each converts as its manifest says, float graphs within 256 ulp of onnxruntime's output (qonnx's
executor for the channels-last float graph), quantized graphs bit-exact to qonnx's executor or onnxruntime, on
normal and stress inputs; the refusals say why."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

import hgqbridge
from hgqbridge.compare import ulps_of_max
from hgqbridge.errors import SourceFileError, UnsupportedError

from ...conftest import FLOAT_ULPS, ROOT, record, rerun_reference

HERE = ROOT / 'fixtures' / 'onnx' / 'exporters'
MANIFEST = json.loads((HERE / 'manifest.json').read_text())
ENTRIES = {e['name']: e for e in MANIFEST['models']}
CONVERT = sorted(n for n, e in ENTRIES.items() if e['expected']['outcome'] == 'convert')
EXACT = ('qonnx', 'qcdq')  # kinds whose goldens are quantized: array_equal
#: What each refusal must say (the error class and a pattern of its message).
REFUSALS = {
    'brevitas_qonnx_floatscale': (
        UnsupportedError,
        r'2 problems.*fc1/weight_quant/export_handler/Quant \(Quant\).*not a power of two.*'
        r'fc2/weight_quant/export_handler/Quant \(Quant\).*not a power of two',
    ),
    'refuse_custom_domain_relu': (
        SourceFileError,
        r'domain whose ops hgqbridge does not know.*custom_relu \(com\.example:Relu\)',
    ),
    'refuse_external_data_missing': (SourceFileError, r'tensor data stored in other files.*initializer w.*external_data=False'),
    'refuse_external_data_sibling': (SourceFileError, r'tensor data stored in other files.*initializer w'),
    'refuse_local_function': (SourceFileError, r'defines its own functions.*com\.example\.fn:Relu'),
}


def _channels_last(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x.transpose(0, 2, 1) if x.ndim == 3 else x


def test_every_fixture_has_an_expectation() -> None:
    refused = {n for n, e in ENTRIES.items() if e['expected']['outcome'] == 'refuse'}
    assert refused == set(REFUSALS) and len(CONVERT) + len(refused) == len(ENTRIES) == 57


@pytest.mark.parametrize('name', CONVERT)
def test_real_exporter_output_converts_and_matches_its_reference(name: str) -> None:
    e = ENTRIES[name]
    quantized = e['kind'] in EXACT
    conv = hgqbridge.import_model(HERE / e['file'], dummy=not quantized)
    channels_first = e['layout'] in ('NCHW', 'NCW')
    assert any('feed NCHW data' in line for line in conv.report.summary) == channels_first
    output = onnx.load(str(HERE / e['file']), load_external_data=False).graph.output[0].name
    worst = 0.0
    with np.load(HERE / e['golden']) as g:
        for k in ('normal', 'stress'):
            x, ref = g[f'x_{k}'], g[f'{k}::{output}']
            got = conv.model.predict(_channels_last(x) if channels_first else x, verbose=0)
            ref = _channels_last(ref) if channels_first else ref
            assert got.shape == ref.shape
            if quantized:
                assert np.array_equal(got, ref), (k, float(np.max(np.abs(got - ref))))
            else:
                worst = max(worst, ulps_of_max(ref, float(np.max(np.abs(got - ref)))))
    assert worst <= FLOAT_ULPS, worst
    record(f'{name} ({e["exporter"]}, opset {e["opset"]}): ' + ('bit-exact' if quantized else f'within {worst:g} ulp'))


@pytest.mark.parametrize('name', ['brevitas_qonnx_cnn', 'brevitas_qcdq_cnn', 'torch_ts13_cnn2d', 'torch_dynamo18_cnn1d'])
def test_a_channels_first_flatten_before_a_dense_layer_needs_no_permute(name: str) -> None:
    """The dense layer's weight rows are reordered instead (targets cannot deploy a Permute); the values are
    checked by the test above."""
    conv = hgqbridge.import_model(HERE / ENTRIES[name]['file'], dummy=ENTRIES[name]['kind'] not in EXACT)
    classes = [type(layer).__name__ for layer in conv.model.layers]
    assert 'Flatten' in classes and 'Permute' not in classes


@pytest.mark.parametrize('name', ['brevitas_qonnx_mlp', 'brevitas_qcdq_mlp'])
def test_brevitas_models_export_to_da4ml_bit_exactly(name: str, tmp_path: Path) -> None:
    """Brevitas -> QONNX / QCDQ -> HGQ2 -> da4ml: check says deployable and the emulated firmware equals the
    converted model (which equals qonnx / onnxruntime, above) on the golden inputs (the RTL simulation is
    converters/da4ml's test)."""
    conv = hgqbridge.import_model(HERE / ENTRIES[name]['file'])
    assert hgqbridge.check(conv.model, 'da4ml').deployable
    with np.load(HERE / ENTRIES[name]['golden']) as g:
        exported = hgqbridge.export(conv.model, 'da4ml', tmp_path / 'prj', g['x_normal'], rtl=False)
    assert exported.ok, exported.to_text()
    record(f'{name} -> da4ml: bit-exact (emulator)')


def test_brevitas_binary_network_float_batchnorm_is_unverified() -> None:
    """The binary network's float BatchNormalization (scale and offset as Brevitas trained them) needs 33 significant
    bits: the float32 Keras model rounds there where firmware is exact, so check does not call it deployable."""
    conv = hgqbridge.import_model(HERE / ENTRIES['brevitas_qonnx_binary']['file'])
    report = hgqbridge.check(conv.model, 'da4ml')
    assert not report.deployable
    assert [(i.layer, '[float32-sums]' in i.reason) for i in report.items if i.status == 'unverified'] == [
        ('bn_BatchNormalization', True)
    ]


def test_flatten_axis0_says_the_source_is_right_for_a_batch_of_one_only() -> None:
    conv = hgqbridge.import_model(HERE / 'onnxmltools_keras_dense.onnx', dummy=True)
    assert 'right only for a batch of 1' in conv.report.to_text()


@pytest.mark.parametrize('name', sorted(REFUSALS))
def test_refusals_say_why(name: str) -> None:
    error, pattern = REFUSALS[name]
    with pytest.raises(error) as info:
        hgqbridge.import_model(HERE / ENTRIES[name]['file'])
    assert re.search(pattern, str(info.value), re.S), str(info.value)


@pytest.mark.slow
def test_exporter_goldens_are_what_the_references_compute_today() -> None:
    """onnxruntime / qonnx's executor re-run on the committed files (not the exporters)."""
    result = rerun_reference(HERE / 'make_fixtures.py', {'PYTHONPATH': str(ROOT / '.onnx-ref')}, 'DEFAULT')
    assert not result['different'] and set(result['results']) == {n for n, e in ENTRIES.items() if e['golden']}
