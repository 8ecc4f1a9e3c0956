"""Untrusted input: random quantizer strings and configs, and mutated fixture files, only ever end in a
successful conversion or an HGQBridgeError: no other exception, no hang, no file left behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hgqbridge
from hgqbridge.converters.keras.config import graph_from_config
from hgqbridge.converters.qkeras.grammar import parse_string
from hgqbridge.converters.qkeras.quantizers import parse_quantizer
from hgqbridge.errors import HGQBridgeError, LayerProblem, QuantizerSyntaxError

from .conftest import QKERAS

TOKENS = [
    'quantized_bits',
    'quantized_relu',
    'quantized_tanh',
    'alpha',
    '=',
    '(',
    ')',
    ',',
    '1',
    '-3',
    '6',
    '0.5',
    'True',
    'None',
    "'auto_po2'",
    'nan',
    '1e999',
    'x',
    ' ',
    '[',
    ']',
    '"',
    "'",
]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(TOKENS), max_size=12).map(''.join)))
def test_quantizer_strings(text: str) -> None:
    try:
        parse_string(text)
    except QuantizerSyntaxError:
        pass
    try:
        q = parse_quantizer(text)
        if q is not None:
            q.weight_plan(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), 'kernel')
            q.activation_plan()
    except LayerProblem:
        pass


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10_000), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(['class_name', 'config', 'name']), JSONISH, max_size=3), JSONISH)
def test_model_configs(top: dict, layers: object) -> None:
    config = dict(top)
    if isinstance(config.get('config'), dict):
        config['config'] = {**config['config'], 'layers': layers}
    try:
        graph_from_config(config, {}, Path('fuzz.json'))
    except HGQBridgeError:
        pass


def test_layers_that_do_not_fit_together(tmp_path: Path) -> None:
    """A config whose shapes cannot be built (here: an Add of 4 and 6 features) names the layer, not Keras."""
    config = json.loads((QKERAS / 'branches_1d.json').read_text())
    for layer in config['config']['layers']:
        if layer['config']['name'] == 'conv_b':
            layer['config']['padding'] = 'valid'  # 14 steps instead of 16: the Add cannot take both branches
    (tmp_path / 'm.json').write_text(json.dumps(config))
    with pytest.raises(HGQBridgeError, match=r'branches_1d/add \(Add\).*cannot be built'):
        hgqbridge.import_model(tmp_path / 'm.json', QKERAS / 'branches_1d_weights.h5')


MUTANTS = 56  # 7 small fixtures (every source format) x 4 mutation kinds x 2; about a second each


def _read_in_child(case: object) -> str:
    """A mutant read as a user's command reads it: in the HDF5 child, with a short CPU limit."""
    from hgqbridge.converters import read
    from hgqbridge.limits import Limits

    files = [Path(f) for f in case.files]  # type: ignore[attr-defined]
    try:
        read(files[0], files[1] if len(files) > 1 else None, Limits(read_seconds=5))
    except HGQBridgeError:
        return 'refused'
    return 'parsed'


def _run_mutants(cases: list, tmp_path: Path, case_limit: float = 60.0) -> dict[int, dict]:
    """Run the worker over the cases; a case that exceeds the limit is recorded as a hang and the worker restarted."""
    import select
    import subprocess
    import sys
    import time

    from .mutation import ROOT, asdict

    results: dict[int, dict] = {}
    pending = list(cases)
    while pending:
        spec = tmp_path / f'cases{len(results)}.json'
        spec.write_text(json.dumps([asdict(c) for c in pending]))
        proc = subprocess.Popen(
            [sys.executable, '-m', 'tests.mutation', str(spec)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        current, deadline = None, time.monotonic() + 300  # until 'ready': the worker imports TensorFlow
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else None
            if line is None:  # over the limit: a hang
                proc.kill()
                proc.wait()
                index = current if current is not None else pending[0].index
                results[index] = {'outcome': 'hang', 'left': []}
                pending = [c for c in pending if c.index > index]
                break
            if not line:  # the worker ended: after the last case, or by dying inside one
                proc.wait()
                if pending:
                    index = current if current is not None else pending[0].index
                    results[index] = {'outcome': f'worker died with {proc.returncode}', 'left': []}
                    pending = [c for c in pending if c.index > index]
                break
            if not line.startswith('{'):
                continue
            msg = json.loads(line)
            if 'ready' in msg:
                deadline = time.monotonic() + case_limit
            elif 'start' in msg:
                current, deadline = msg['start'], time.monotonic() + case_limit
            else:
                results[msg['done']] = msg
                current = None
                pending = [c for c in pending if c.index != msg['done']]
    return results


@pytest.mark.slow
def test_mutated_files_end_in_a_conversion_or_a_clear_error(tmp_path: Path) -> None:
    """Bit flips, truncations, zeroed blocks and swapped JSON fields in .h5, .json, .keras and SavedModel files:
    every outcome is a converted model or an HGQBridgeError (CLI exit 2), within the per-case limit, and a
    refused case leaves no output behind."""
    from .mutation import mutants

    cases = mutants(seed=20261128, n=MUTANTS, where=tmp_path)
    results = _run_mutants(cases, tmp_path)
    assert sorted(results) == [c.index for c in cases]
    bad = {i: r['outcome'] for i, r in results.items() if r['outcome'] not in ('converted', 'refused')}
    assert not bad, bad
    assert all(r['left'] == (['model.keras'] if r['outcome'] == 'converted' else []) for r in results.values()), results
    assert {r['outcome'] for r in results.values()} == {'converted', 'refused'}  # the mutants do reach both ends


PARSE_MUTANTS, DATA_MUTANTS = 2100, 420  # every reader and handler, and the data/golden readers; a few ms each


@pytest.mark.slow
def test_thousands_of_mutants_are_read_or_refused(tmp_path: Path) -> None:
    """2,520 mutants of model, data and golden files through every reader and every layer handler (the HDF5 reader
    code is called directly, as its child process runs it): each one is read or refused with an HGQBridgeError,
    within the per-case limit."""
    from .conftest import record
    from .mutation import mutants

    cases = mutants(seed=7, n=PARSE_MUTANTS, where=tmp_path, mode='parse')
    cases += mutants(seed=8, n=DATA_MUTANTS, where=tmp_path, mode='data', first=PARSE_MUTANTS)
    results = _run_mutants(cases, tmp_path, case_limit=10.0)
    assert sorted(results) == [c.index for c in cases]
    for case in cases:  # the worker calls the HDF5 code directly; a user's read runs in the child, whose CPU limit stops a loop
        if results[case.index]['outcome'] == 'hang' and Path(case.files[0]).suffix in ('.h5', '.json', '.keras'):
            results[case.index]['outcome'] = _read_in_child(case)
    bad = {i: r['outcome'] for i, r in results.items() if r['outcome'] not in ('parsed', 'refused')}
    outcomes = [r['outcome'] for r in results.values()]
    record(
        f'mutation fuzzer: {len(results)} mutants of model, data and golden files, {outcomes.count("parsed")} read, '
        f'{outcomes.count("refused")} refused with an HGQBridgeError, {len(bad)} otherwise'
    )
    assert not bad, bad
    assert outcomes.count('parsed') > 100 and outcomes.count('refused') > 100  # the mutants do reach both ends
