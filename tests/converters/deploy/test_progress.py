"""Progress, the time limit and the cost estimate of an export (converters/deploy/progress.py, cost.py), the da4ml
tracer's layer progress and solve reuse (converters/da4ml/tracing.py), and export --timeout through the real CLI."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hgqbridge.converters.deploy import cost
from hgqbridge.converters.deploy.progress import ExportTimeout, Progress, active, current

from ...conftest import ROOT
from .test_rules import PLAIN

QKERAS = ROOT / 'fixtures' / 'qkeras'


@pytest.fixture(scope='module')
def models() -> dict:
    import hgqbridge

    return {name: hgqbridge.convert(QKERAS / f'{name}.h5') for name in ('jet_tagger', 'digits_cnn')}


def test_phases_are_recorded_and_reported_on_the_stream() -> None:
    stream = io.StringIO()
    progress = Progress('export', stream, min_seconds=-1.0)
    with active(progress):
        assert current() is progress
        with progress.phase('trace'):
            progress.step('layer 1/2 fc1')
            with progress.phase('compare normal'):
                pass
    assert [r.name for r in progress.records] == ['compare normal', 'trace']
    assert all(r.seconds >= 0 and r.peak_mib > 0 and r.peak_mib >= r.start_mib for r in progress.records)
    lines = stream.getvalue().splitlines()
    assert [line.split(':')[1].strip() for line in lines] == ['compare normal', 'trace']
    assert all(line.startswith('hgqbridge export: ') and 'done in' in line for line in lines)
    assert current() is not progress  # outside the block: a silent one


def test_a_silent_progress_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress = current()
    with progress.phase('trace'):
        progress.step('layer 1/1')
    assert capsys.readouterr() == ('', '') and progress.stream is None


def test_step_past_the_time_limit_raises_export_timeout_with_where_it_was() -> None:
    progress = Progress(timeout=1e-9)
    with pytest.raises(ExportTimeout) as info, progress.phase('trace'):
        progress.step('layer 2/3 conv')
    assert str(info.value) == 'stopped by --timeout 1e-09 s during trace (layer 2/3 conv)'
    assert isinstance(info.value, KeyboardInterrupt)  # no toolchain's `except Exception` swallows it


def test_the_alarm_is_disarmed_after_the_block() -> None:
    before = signal.getsignal(signal.SIGALRM)
    with active(Progress(timeout=3600)):
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0 and signal.getsignal(signal.SIGALRM) == before


@pytest.mark.parametrize(
    ('facts', 'expected'),
    [
        ([PLAIN], 16 * 8),
        ([replace(PLAIN, cls='QConv1D', fan_in=3 * 7, n_out=32, positions=100), PLAIN], 21 * 32 * 100 + 128),
        ([replace(PLAIN, arithmetic=False, n_out=0)], 0),
    ],
)
def test_multiplications_unrolled(facts: list, expected: int) -> None:
    assert cost.multiplications(facts) == expected


def test_the_estimate_grows_with_the_model_and_names_itself_an_estimate() -> None:
    from hgqbridge.converters import parse_target

    _, spec = parse_target('da4ml', {'rtl': False})
    small = [PLAIN]
    big = [replace(PLAIN, fan_in=1280, n_out=32, positions=100)]
    (_, s_small, m_small, _), (_, s_big, m_big, _) = cost.estimate(small, spec), cost.estimate(big, spec)
    assert s_small is not None and s_big is not None and m_small is not None and m_big is not None
    assert s_big > s_small and m_big >= m_small
    assert cost.export_cost(small, spec) is None
    text = cost.export_cost(big, spec)
    assert text and 'an estimate' in text and '4,096,000 multiplications' in text and 'beyond the largest' in text


def test_far_beyond_the_measured_sizes_check_warns_even_on_a_short_estimate() -> None:
    """Extrapolated more than EXTRAPOLATED_BEYOND times past the largest model the fit ran, the estimate is not
    trusted: a warning, although the estimate itself stays under WARN_SECONDS."""
    from hgqbridge.converters import parse_target

    _, spec = parse_target('da4ml', {'rtl': False})
    largest = cost.FITS['da4ml'].largest
    near = [replace(PLAIN, fan_in=largest // 10, n_out=10 * cost.EXTRAPOLATED_BEYOND - 1, positions=1)]
    far = [replace(PLAIN, fan_in=largest // 10, n_out=10 * cost.EXTRAPOLATED_BEYOND + 10, positions=1)]
    seconds = cost.estimate(far, spec)[1]
    assert seconds is not None and seconds < cost.WARN_SECONDS
    assert cost.export_cost(near, spec) is None
    text = cost.export_cost(far, spec)
    assert text and 'beyond the largest model measured' in text and 'many times longer' in text


def test_check_reports_the_estimate_for_every_target(models: dict) -> None:
    import hgqbridge

    model = models['jet_tagger']
    for text in ('da4ml', 'hls4ml:vitis'):
        items = [i for i in hgqbridge.check(model, text).items if i.reason.endswith('[export-cost]')]
        assert [(i.layer_class, i.status) for i in items] == [('model', 'ok')]
        assert 'multiplications' in items[0].reason and 'estimate' in items[0].reason


class Recorder(Progress):
    """A silent progress that keeps every step it is told."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[str] = []

    def step(self, detail: str) -> None:
        self.steps.append(detail)


def test_da4ml_tracer_reports_every_layer_and_reuses_identical_solves(models: dict) -> None:
    """On a QKeras conv model (one format per tensor) interior positions are the same problem: solved once, and the
    traced logic is identical to the one traced without reuse."""
    import keras
    from da4ml.trace import comb_trace

    from hgqbridge.converters.da4ml.export import _trace_model
    from hgqbridge.converters.da4ml.tracing import traced
    from hgqbridge.converters.deploy import firmware

    full = models['digits_cnn']
    model = keras.Model(full.inputs, full.get_layer('pool1').output, name='conv_stack')  # da4ml has no ZeroPadding2D
    x = np.load(QKERAS / 'digits_cnn.data.npz')['x_val'][:16]
    inputs = firmware.prepare(model, x)
    firmware.calibrate(inputs.core, inputs)
    recorder = Recorder()
    with traced(recorder, inputs.core) as counts:
        reused = comb_trace(*_trace_model(inputs.core, inputs.port))
    plain = comb_trace(*_trace_model(inputs.core, inputs.port))
    layers = [layer.name for layer in inputs.core.layers if type(layer).__name__ != 'InputLayer']
    assert {s.split(':')[0] for s in recorder.steps} >= {f'layer {i + 1}/{len(layers)} {n}' for i, n in enumerate(layers)}
    assert counts['reused'] > 0 and counts['solves'] > 0
    assert reused.cost == plain.cost
    flat = inputs.sets['stress'].reshape(len(x), -1).astype(np.float64)
    assert np.array_equal(reused.predict(flat), plain.predict(flat))


def test_alkaid_export_reports_every_phase_and_every_layer(models: dict, tmp_path: Path) -> None:
    """alkaid's export shows which layer its tracer replays and each phase (trace, combine, compare, write), as
    da4ml's does, so a long export is never silent."""
    import hgqbridge

    model = models['jet_tagger']
    x = np.load(QKERAS / 'jet_tagger.data.npz')['x_val'][:32]
    recorder = Recorder()
    with active(recorder):
        report = hgqbridge.export(model, 'alkaid', tmp_path / 'prj', x, rtl=False)
    assert report.ok
    phases = [r.name for r in recorder.records]
    assert {'prepare', 'calibrate', 'trace', 'combine', 'compare normal', 'compare stress', 'write'} <= set(phases)
    dense = [layer.name for layer in model.layers if type(layer).__name__ == 'QDense']
    assert {s.split(' ', 2)[-1] for s in recorder.steps if s.startswith('layer ')} >= set(dense)
    assert {'Verilog', 'VHDL', 'HLS'} <= set(recorder.steps)


@pytest.mark.slow
def test_export_timeout_stops_cleanly_with_one_line(tmp_path: Path) -> None:
    """--timeout: exit 2, one line naming the phase, no project, no `.prj.*` folder, nothing in TMPDIR (the time
    limit starts when the export does, after the model is loaded; 0.3 s ends it in its first phases)."""
    import hgqbridge
    from hgqbridge.models import save_model

    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    save_model(hgqbridge.convert(QKERAS / 'jet_tagger.h5'), tmp_path / 'model.keras', force=False)
    with np.load(QKERAS / 'jet_tagger.golden.npz') as g:
        np.savez(tmp_path / 'data.npz', x=g['x_normal'][:64])
    args = ['export', 'model.keras', '--target', 'da4ml', '--no-rtl', '-o', 'prj', '--data', 'data.npz', '--timeout', '0.3']
    out = subprocess.run(
        [sys.executable, '-m', 'hgqbridge.cli', *args, '--quiet'],
        cwd=tmp_path,
        env={**os.environ, 'TMPDIR': str(tmpdir), 'TF_CPP_MIN_LOG_LEVEL': '3'},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in out.stderr.splitlines() if line.startswith('hgqbridge')]  # not TensorFlow's own log
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith('hgqbridge export: error: stopped by --timeout 0.3 s during '), lines
    assert 'nothing was written' in lines[0] and out.stdout == ''
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data.npz', 'model.keras', 'tmp']
    assert list(tmpdir.iterdir()) == []


def test_the_python_api_shows_progress_and_takes_a_timeout(
    models: dict, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """hgqbridge.export(progress=True) prints the phases on stderr as the CLI does (here every phase, not only those
    over a second, so that the test does not depend on this machine's speed); timeout= stops it with an
    HGQBridgeError that names the phase, and nothing is written."""
    import functools

    import hgqbridge

    monkeypatch.setattr(Progress, '__init__', functools.partialmethod(Progress.__init__, min_seconds=0.0))

    x = np.load(QKERAS / 'jet_tagger.data.npz')['x_val'][:32]
    with pytest.raises(hgqbridge.HGQBridgeError, match='during .*nothing was written'):
        hgqbridge.export(models['jet_tagger'], 'da4ml', tmp_path / 'late', x, rtl=False, timeout=0.01)
    assert not (tmp_path / 'late').exists() and list(tmp_path.iterdir()) == []
    report = hgqbridge.export(models['jet_tagger'], 'da4ml', tmp_path / 'prj', x, rtl=False, progress=True)
    assert report.ok
    err = capfd.readouterr().err
    for phase in ('prepare', 'calibrate', 'trace', 'compare normal', 'compare stress', 'write'):
        assert f'hgqbridge export: {phase}: done in ' in err, err
