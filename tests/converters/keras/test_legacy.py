"""Keras 1.2 - 2.2 architecture JSON (fixtures/keras/legacy: written field for field as those versions wrote them,
goldens by tf_keras): the list-form Sequential of Keras 2.0 - 2.2.2 converts, a Keras 1 config is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hgqbridge
from hgqbridge.converters.keras.config import normalize_config
from hgqbridge.errors import SourceFileError

from ...conftest import FLOAT_ULPS, ISAS, ROOT, record, rerun_reference

LEGACY = ROOT / 'fixtures' / 'keras' / 'legacy'
ENTRIES = {e['name']: e for e in json.loads((LEGACY / 'manifest.json').read_text())['models']}


def _files(name: str) -> list[Path]:
    return [LEGACY / f for f in ENTRIES[name]['files']]


@pytest.mark.parametrize('name', sorted(n for n, e in ENTRIES.items() if e['expected'] == 'convert'))
def test_legacy_json_converts_and_matches_tf_keras(name: str) -> None:
    """Every layer's output within FLOAT_ULPS of tf_keras's own (the goldens of a float model are float32)."""
    conv = hgqbridge.import_model(*_files(name), dummy=True)
    report = hgqbridge.verify(conv, LEGACY / ENTRIES[name]['golden'])
    matches = [m for ms in report.results.values() for m in ms]
    layers = [json.loads(_files(name)[0].read_text())['config']]
    assert matches and not report.missing and all(m.max_ulps <= FLOAT_ULPS for m in matches), report.to_text()
    worst = max(m.max_ulps for m in matches)
    record(f'legacy {name} ({ENTRIES[name]["keras_version"]}) with dummy quantizers vs tf_keras: within {worst:g} ulp')
    sequential = layers[0] if isinstance(layers[0], list) else layers[0]['layers']
    assert len(matches) == 2 * len(sequential)  # every layer of the file, on normal and stress inputs


def test_keras1_config_is_refused_with_what_to_do() -> None:
    (name,) = [n for n, e in ENTRIES.items() if e['keras_version'].startswith('1.')]
    with pytest.raises(SourceFileError) as info:
        hgqbridge.import_model(*_files(name), dummy=True)
    text = str(info.value)
    assert 'a Keras 1 config' in text and 're-save it with Keras 2' in text and "'1.2.2'" in text


@pytest.mark.parametrize(
    'config, problem',
    [
        (
            {'class_name': 'Sequential', 'config': [{'class_name': 'Dense', 'config': {'name': 'd', 'output_dim': 3}}]},
            'output_dim',
        ),
        ({'class_name': 'Sequential', 'keras_version': '1.1.0', 'config': []}, "'1.1.0'"),
    ],
    ids=['keras1-fields', 'keras1-version'],
)
def test_keras1_is_recognised_by_its_fields_or_version(config: dict, problem: str) -> None:
    with pytest.raises(SourceFileError, match=problem):
        normalize_config(config, Path('m.json'))


def test_list_form_sequential_becomes_the_dict_form() -> None:
    layers = [{'class_name': 'Dense', 'config': {'name': 'd', 'units': 3, 'batch_input_shape': [None, 4]}}]
    config = {'class_name': 'Sequential', 'keras_version': '2.1.3', 'config': layers}
    assert normalize_config(config, Path('net.json'))['config'] == {'name': 'net', 'layers': layers}
    dict_form = {'class_name': 'Sequential', 'config': {'name': 'net', 'layers': layers}}
    assert normalize_config(dict_form, Path('x.json')) == dict_form


@pytest.mark.slow
@pytest.mark.parametrize('isa', ISAS)
def test_goldens_are_what_tf_keras_computes_today(isa: str) -> None:
    """tf_keras reloads the committed JSON and weights (numpy for the Keras 1 file tf_keras cannot load)."""
    result = rerun_reference(
        LEGACY / 'make_fixtures.py', {'TF_USE_LEGACY_KERAS': '1', 'PYTHONPATH': str(ROOT / '.qkeras-ref')}, isa
    )
    assert set(result['results']) == set(ENTRIES)
