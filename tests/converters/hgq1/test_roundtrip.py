"""Every HGQ1 fixture (written by the real HGQ 0.2.6, fixtures/hgq1/) converts to genuine hgq.layers and reproduces
HGQ1's own per-layer outputs bit for bit, on normal and on x4 stress inputs: proxy models always, saved models
wherever the integer bits derived for them (the file holds none) cover the inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hgqbridge
from hgqbridge.errors import UnsupportedError
from hgqbridge.fixed import FixedFormat

from ...conftest import ROOT, rerun_reference

HGQ1 = ROOT / 'fixtures' / 'hgq1'
REF_ENV = ROOT / '.hgq1-ref'
ENTRIES = {e['name']: e for e in json.loads((HGQ1 / 'manifest.json').read_text())['entries']}
LUT = 'activations.lut.proxy'  # UnaryLUT tables: refused
PROXIES = sorted(n for n, e in ENTRIES.items() if e['form'] == 'proxy' and n != LUT)
SAVED = sorted(n for n, e in ENTRIES.items() if e['form'] == 'saved')
#: Raw pixel counts 0..16: x4 stress inputs (up to 64) leave the default input format's range [-32, 32), so the
#: integer bits propagated from it are too few there; with --input-format ap_ufixed<8,8> (0..255) it is exact.
WIDE_INPUT = {'dense_raw': FixedFormat(0, 8, 0)}
#: Float activations (tanh, sigmoid): measured, not required to be exact.
FLOAT = {'tanh', 'sigmoid'}


@pytest.fixture(scope='module')
def converted() -> dict:
    return {}


def _convert(converted: dict, name: str, input_format: FixedFormat | None = None) -> object:
    key = (name, input_format)
    if key not in converted:
        converted[key] = hgqbridge.import_model(HGQ1 / ENTRIES[name]['files'][0], input_format=input_format)
    return converted[key]


def _golden_layers(name: str) -> set[str]:
    with np.load(HGQ1 / ENTRIES[name]['golden']) as golden:
        return {k.split('::')[1] for k in golden.files if k.startswith('normal::')}


def _assert_exact(conv: Any, name: str, kinds: tuple[str, ...] = ('normal', 'stress')) -> None:
    report = hgqbridge.verify(conv, HGQ1 / ENTRIES[name]['golden'])
    for kind in kinds:
        matches = report.results[kind]
        required = [m for m in matches if m.exact_required]
        assert required and all(m.mismatches == 0 for m in required), report.to_text()
        assert all(m.layer in FLOAT or m.reason.startswith('computed from') for m in matches if not m.exact_required)
    signature = {layer.name for layer in conv.graph if layer.class_name.endswith('Signature')}  # the input itself
    assert {m.layer for m in report.results['normal']} == _golden_layers(name) - signature


@pytest.mark.parametrize('name', PROXIES)
def test_proxy_is_bit_exact_against_hgq1(name: str, converted: dict) -> None:
    _assert_exact(_convert(converted, name), name)


@pytest.mark.parametrize('name', SAVED)
def test_saved_model_is_bit_exact_against_hgq1(name: str, converted: dict) -> None:
    conv = _convert(converted, name, WIDE_INPUT.get(name))
    _assert_exact(conv, name)
    assert any('interval propagation' in note for note in conv.graph.notes)


def test_saved_model_beyond_the_input_range_is_exact_on_normal_inputs_only(converted: dict) -> None:
    """dense_raw with the default input format ([-32, 32)): exact on the data, and where x4 inputs (up to 64) leave
    that range HGQ2 saturates while HGQ1's unbounded quantizers keep growing; the note says which range is exact."""
    conv = _convert(converted, 'dense_raw')
    _assert_exact(conv, 'dense_raw', ('normal',))
    report = hgqbridge.verify(conv, HGQ1 / 'dense_raw.golden.npz')
    differ = {m.layer: m.mismatches for m in report.results['stress'] if m.mismatches}
    assert set(differ) == {'q_in', 'd1', 'd2'}
    assert 'for inputs in [-32, 31.999] (the default input format ap_fixed<16,6' in conv.report.to_text()


@pytest.mark.parametrize('name', ['conv1d', 'batchnorm.proxy'])
def test_genuine_hgq_layers_keep_source_names(name: str, converted: dict) -> None:
    conv = _convert(converted, name)
    kinds = {type(layer).__module__.split('.')[0] + '.' + type(layer).__name__ for layer in conv.model.layers[1:]}
    assert kinds <= {
        'hgq.QDense',
        'hgq.QConv1D',
        'hgq.QConv2D',
        'hgq.Quantizer',
        'hgq.QAveragePooling1D',
        'keras.ReLU',
        'keras.Activation',
        'keras.Flatten',
        'keras.Permute',
        'keras.MaxPooling1D',
        'keras.MaxPooling2D',
    }, kinds
    assert {'hgq.QConv1D', 'hgq.QConv2D'} & kinds


def test_unary_lut_proxy_is_refused() -> None:
    with pytest.raises(UnsupportedError, match='table of arbitrary values'):
        hgqbridge.import_model(HGQ1 / f'{LUT}.h5')


def test_calibrated_saved_model_is_exact_on_its_data(converted: dict) -> None:
    """Integer bits traced on calibration data (as trace_minmax): exact on the normal inputs; the note says beyond
    the widened traced range HGQ2 saturates."""
    with np.load(HGQ1 / 'dense_het.data.npz') as data:
        x = data['x']
    conv = hgqbridge.import_model(HGQ1 / 'dense_het.h5', calibration={'x': x})
    _assert_exact(conv, 'dense_het', ('normal',))
    assert any('cover_factor 2' in note for note in conv.graph.notes)


@pytest.mark.parametrize('name', ['dense_homog.proxy', 'branches.proxy', 'dense_het'])
def test_an_hgq1_model_checks_and_exports_bit_exact(name: str, converted: dict, tmp_path: Path) -> None:
    """A proxy, a proxy functional graph (HAdd, Concatenate) and a saved model (per-element formats, integer bits
    propagated): da4ml's emulator equals the HGQ2 model on normal and x4 inputs. (The saved 'branches' needs 25
    significant bits in its float32 sums with the propagated integer bits: check calls it unverified.)"""
    model = _convert(converted, name).model  # type: ignore[attr-defined]
    assert hgqbridge.check(model, 'da4ml').deployable
    with np.load(HGQ1 / ENTRIES[name]['golden']) as golden:
        x = golden['x_normal']
    report = hgqbridge.export(model, 'da4ml', tmp_path / 'prj', x, rtl=False)
    assert report.ok, report.to_text()
    assert report.mismatches == {'normal': 0, 'stress': 0}


@pytest.mark.slow
def test_goldens_are_what_hgq1_computes_today() -> None:
    """HGQ 0.2.6 (its own TensorFlow 2.15 / Keras 2.15 venv, .hgq1-ref, installed by make) recomputes every golden
    and every trace from the committed files, in a subprocess."""
    python = REF_ENV / 'bin' / 'python'
    assert python.exists(), 'make qkeras-ref creates .hgq1-ref'
    result = rerun_reference(HGQ1 / 'make_fixtures.py', {'PYTHONPATH': '', 'CUDA_VISIBLE_DEVICES': ''}, 'DEFAULT', python=python)
    assert set(result['results']) == set(ENTRIES)
    assert result['hgq1'] == '0.2.6'


def test_a_saved_hgq1_model_finetunes_from_hgq1s_own_accuracy(converted: dict, tmp_path: Path) -> None:
    """The fine-tuning baseline is HGQ1's own validation accuracy (manifest, measured by HGQ 0.2.6), and EBOPs fall
    under pressure; the imported model is left as it was."""
    model = _convert(converted, 'dense_het').model  # type: ignore[attr-defined]
    before = model.get_weights()
    with np.load(HGQ1 / 'dense_het.data.npz') as data:
        x, y, x_val, y_val = data['x'], data['y'], data['x_val'], data['y_val']
    result = hgqbridge.finetune(  # x_val also as the test split: validation is then all of x_val, as HGQ1 measured
        model,
        x,
        y,
        x_val,
        y_val,
        x_test=x_val,
        y_test=y_val,
        epochs=3,
        beta_min=3e-4,
        beta_max=1e-3,
        learning_rate=1e-2,
        verbose=0,
        out_dir=tmp_path / 'ft',
    )
    assert result.baseline_metric == pytest.approx(ENTRIES['dense_het']['val_accuracy'], abs=1e-9)
    assert len(result.history) == 3 and result.history[-1].ebops < result.baseline_ebops
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize('name', ['conv2d.proxy', 'branches'])
def test_saved_keras_file_keeps_every_per_element_format(name: str, converted: dict, tmp_path: Path) -> None:
    """What `hgqbridge convert -o model.keras` writes loads back (safe mode) with every per-element format: the
    model's output is still HGQ1's, on normal and stress inputs."""
    from hgqbridge.models import load_model, save_model

    conv = _convert(converted, name)
    save_model(conv.model, tmp_path / 'm.keras', force=False)  # type: ignore[attr-defined]
    loaded = load_model(tmp_path / 'm.keras')
    with np.load(HGQ1 / ENTRIES[name]['golden']) as golden:
        last = next(m for m in reversed(conv.graph.layers) if f'normal::{m.name}' in golden.files).name  # type: ignore[attr-defined]
        for kind in ('normal', 'stress'):
            assert np.array_equal(loaded.predict(golden[f'x_{kind}'], verbose=0), golden[f'{kind}::{last}'])
