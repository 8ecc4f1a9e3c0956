"""Sweeps on local Ray: an interrupted 2-trial sweep resumes, its merged front comes from the trials and holds no
dominated point, and the chosen model exports bit-exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hgqbridge.runfiles import pareto_front

from .conftest import QKERAS, ROOT

pytestmark = pytest.mark.slow  # starts Ray (twice) and four TensorFlow worker processes


@pytest.fixture(scope='module')
def resumed(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A sweep interrupted (SIGINT, as Ctrl-C) after its first trial finished, then resumed."""
    from hgqbridge.models import load_model
    from hgqbridge.sweep import sweep

    out = tmp_path_factory.mktemp('sweep') / 'out'
    data = QKERAS / 'jet_tagger.data.npz'
    model = tmp_path_factory.mktemp('model') / 'jet_tagger.keras'
    subprocess.run(
        [sys.executable, '-m', 'hgqbridge.cli', 'convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(model)], check=True
    )
    cmd = [sys.executable, '-m', 'hgqbridge.cli', 'sweep', str(model), '--data', str(data), '-o', str(out)]
    args = ['--runs', '2', '--workers', '1', '--epochs', '2', '--tolerance', '0.05']
    proc = subprocess.Popen([*cmd, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / 'trials' / 'run_00' / 'report.json'
    while not first.exists() and proc.poll() is None:
        time.sleep(0.2)
    assert not (out / 'trials' / 'run_01' / 'report.json').exists(), 'the second trial must still be running'
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 2 and 'stopped after 1 of 2 trials' in text and '--resume' in text, text
    stamp = os.stat(first).st_mtime_ns
    arrays = dict(np.load(data))
    result = sweep(load_model(model), arrays, out, runs=2, workers=1, epochs=2, tolerance=0.05, resume=True)
    return result, out, stamp, arrays


def test_resume_keeps_finished_trials(resumed: tuple) -> None:
    result, out, stamp, _ = resumed
    assert os.stat(out / 'trials' / 'run_00' / 'report.json').st_mtime_ns == stamp  # not run again
    assert [t['trial'] for t in result.trials] == ['run_00', 'run_01']
    assert all(len(json.loads((out / 'trials' / t / 'history.json').read_text())) == 2 for t in ('run_00', 'run_01'))


def test_merged_front_comes_from_trials_and_is_not_dominated(resumed: tuple) -> None:
    result, out, _, _ = resumed
    own = {
        (t, row['epoch'], row['ebops'], row['val_metric'])
        for t in ('run_00', 'run_01')
        for row in json.loads((out / 'trials' / t / 'pareto.json').read_text())
    }
    front = json.loads((out / 'pareto.json').read_text())
    assert front == result.front and front
    assert all((p['trial'], p['epoch'], p['ebops'], p['val_metric']) in own for p in front)
    assert all((out / p['checkpoint']).is_file() for p in front)
    points = [(p['ebops'], p['val_metric']) for p in front]
    assert pareto_front(points) == list(range(len(points)))  # no point dominated by another
    assert (out / 'pareto.png').stat().st_size > 0
    report = json.loads((out / 'report.json').read_text())
    assert report['scores']['chosen_test']['split'] == 'test' and report['scores']['original_test']['split'] == 'test'


def test_chosen_model_exports_bit_exact(resumed: tuple, tmp_path: Path) -> None:
    import hgqbridge

    result, _, _, arrays = resumed
    assert result.chosen is not None and result.chosen in result.front
    report = hgqbridge.export(result.model, 'da4ml', tmp_path / 'prj', arrays['x_val'], rtl=False)
    assert report.ok and set(report.bit_exact) and all(report.bit_exact.values())


def test_a_sweep_runs_on_an_existing_ray_cluster(tmp_path: Path) -> None:
    """``--address``: the same sweep on a Ray cluster that was already running (a head node started with
    ``ray start --head``, as on a cluster's head machine); its trials run in that cluster's workers."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ray = str(Path(sys.executable).parent / 'ray')
    env = {**os.environ, 'RAY_USAGE_STATS_ENABLED': '0'}
    head = ['--head', f'--port={port}', '--num-cpus=2', '--include-dashboard=false', '--node-ip-address=127.0.0.1']
    subprocess.run([ray, 'start', *head], check=True, env=env, capture_output=True, timeout=300)
    try:
        out = tmp_path / 'out'
        model = tmp_path / 'jet_tagger.keras'
        subprocess.run(
            [sys.executable, '-m', 'hgqbridge.cli', 'convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(model)], check=True
        )
        cmd = [sys.executable, '-m', 'hgqbridge.cli', 'sweep', str(model), '--data', str(QKERAS / 'jet_tagger.data.npz')]
        args = ['-o', str(out), '--runs', '2', '--epochs', '1', '--tolerance', '0.05', '--address', f'127.0.0.1:{port}']
        done = subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
        assert '2 runs' in done.stdout
        report = json.loads((out / 'report.json').read_text())
        assert [t['trial'] for t in report['trials']] == ['run_00', 'run_01']
        assert all(len(json.loads((out / 'trials' / t / 'history.json').read_text())) == 1 for t in ('run_00', 'run_01'))
    finally:
        subprocess.run([ray, 'stop', '--force'], env=env, capture_output=True, timeout=300)
