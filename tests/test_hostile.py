"""Hostile files and command lines against the real CLI, each in a process of its own (tests/hostile.py makes the
files): the exit code, exactly one error line (followed by one line per problem when a conversion lists several), not one byte of the local secret file in any output, nothing left
in the output folder or in TMPDIR, and the peak memory of the whole process tree under a bound."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import record
from .hostile import CASES, QKERAS, SECRET, Case

#: Peak resident memory of the CLI and its reader child together, for a case that must fail before allocating what
#: the file declares. Most cases are refused by the readers, before TensorFlow is imported (under 150 MB); a size
#: found while the model is built costs TensorFlow's own 0.7 GB.
MEMORY_BOUND_MB = 1024
SIZE_CASES = {
    'conv-kernel-size-1e5',
    'input-1e8',
    'zero-padding-1e9',
    'chain-10k-layers',
    'config-nested-100k',
    'onnx-folding-2-tib',
    'npz-inflates-256-mb',
    'npz-header-2-pow-40',
}


#: Runs the command as a child of this small process and writes its peak RSS (with its own children's) to a file.
#: The kernel carries a process's peak across exec, so a command forked straight from pytest (over a GB with
#: TensorFlow loaded) would report pytest's size; forked from this wrapper it reports its own.
WRAPPER = (
    'import os, subprocess, sys\n'
    'proc = subprocess.Popen(sys.argv[2:])\n'
    '_, status, usage = os.wait4(proc.pid, 0)\n'
    'open(sys.argv[1], "w").write(str(usage.ru_maxrss))\n'
    'sys.exit(os.waitstatus_to_exitcode(status) % 256)\n'
)


def run_cli(args: list[str], cwd: Path, tmpdir: Path, timeout: float = 300) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, peak RSS in MB of the command and every child it waited for)."""
    env = {**os.environ, 'TMPDIR': str(tmpdir), 'TF_CPP_MIN_LOG_LEVEL': '3'}
    peak = tmpdir.parent / 'peak.txt'
    command = [sys.executable, '-c', WRAPPER, str(peak), sys.executable, '-m', 'hgqbridge.cli', *args]
    try:
        out = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f'hgqbridge {" ".join(args)} did not finish within {timeout} s')
    return out.returncode, out.stdout, out.stderr, int(peak.read_text()) / 1024


@pytest.fixture(scope='session')
def hgq_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HGQ2 model written by hgqbridge (the QKeras jet tagger), for the cases that check, export or fine-tune."""
    import hgqbridge
    from hgqbridge.models import save_model

    path = tmp_path_factory.mktemp('model') / 'model.keras'
    save_model(hgqbridge.convert(QKERAS / 'jet_tagger.h5'), path, force=False)
    return path


def _leaks(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob('*') if p.is_file() and p.name != 'secret.txt' and SECRET[:24] in p.read_bytes()]


@pytest.mark.parametrize('case', CASES, ids=[c.name for c in CASES])
def test_hostile_case(case: Case, tmp_path: Path, hgq_model: Path) -> None:
    folder, tmpdir = tmp_path / 'work', tmp_path / 'tmp'
    folder.mkdir()
    tmpdir.mkdir()
    shutil.copy(hgq_model, folder / 'model.keras')
    args = case.make(folder)
    before = sorted(p.name for p in folder.iterdir())
    code, out, err, peak = run_cli(args, folder, tmpdir)
    lines = err.strip().splitlines()
    assert code == case.code, err
    # one line; a list of problems (one per layer) follows it, one problem per line
    assert lines[0].startswith(f'hgqbridge {args[0]}: error:') and all(line.startswith('  [') for line in lines[1:]), err
    assert case.message in err, err
    assert 'Traceback' not in err and 'Converted' not in out  # refused before any work was done
    assert _leaks(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == before, 'the command left or removed files in its folder'
    assert list(tmpdir.iterdir()) == [], 'a temporary file survived'
    assert peak < MEMORY_BOUND_MB, f'peak memory {peak:.0f} MB'
    if case.name in SIZE_CASES:
        record(
            f'hostile {case.name}: refused with a peak of {peak:.0f} MB for the whole process tree (bound {MEMORY_BOUND_MB} MB)'
        )


def _wait_for(condition: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, 'the condition never came true'
        time.sleep(0.05)


def _hanging_h5(folder: Path) -> Path:
    """16 zero bytes over the global heap that holds model_config: HDF5 loops on it (tests/converters/qkeras/test_reader.py)."""
    data = (QKERAS / 'zoo_bits_symmetric.h5').read_bytes()
    (folder / 'hang.h5').write_bytes(data[:2064] + bytes(16) + data[2080:])
    return folder / 'hang.h5'


def _children(pid: int) -> list[int]:
    path = Path(f'/proc/{pid}/task/{pid}/children')
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _as_at_a_terminal() -> None:
    """SIGINT as a terminal delivers it: a suite started in the background (``make test &``) runs with SIGINT
    ignored, and a process started with it ignored rightly keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _reader(pid: int) -> list[int]:
    """The reader child of ``pid`` (not a helper that an import starts and ends on its own)."""
    return [c for c in _children(pid) if b'hgqbridge.converters.keras.isolated' in _cmdline(c)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f'/proc/{pid}/cmdline').read_bytes()
    except FileNotFoundError:
        return b''


def _alive(pid: int) -> bool:
    try:
        status = Path(f'/proc/{pid}/status').read_text()
    except FileNotFoundError:
        return False
    return '\nState:\tZ' not in status


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_reading_ends_cleanly(sig: signal.Signals, tmp_path: Path) -> None:
    """SIGTERM (kill, timeout, a cancelled CI job) and Ctrl-C end the run the same way: one line, exit 128+signal,
    the reader child gone, no temporary folder."""
    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    path = _hanging_h5(tmp_path)
    env = {**os.environ, 'TMPDIR': str(tmpdir)}
    proc = subprocess.Popen(
        [sys.executable, '-m', 'hgqbridge.cli', 'convert', str(path), '-o', 'o.keras', '--limit', 'read_seconds=600'],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_at_a_terminal,
    )
    _wait_for(lambda: _reader(proc.pid))
    child = _reader(proc.pid)[0]
    time.sleep(1.0)  # the child is in HDF5's loop now
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert err.strip().splitlines() == [
        f'hgqbridge convert: interrupted ({sig.name}); no output was written or replaced, and no temporary file is left'
    ]
    _wait_for(lambda: not _alive(child), 10)
    assert list(tmpdir.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ['hang.h5', 'tmp']


def test_the_reader_child_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """SIGKILL cannot be handled by the parent; the kernel kills the child too (it answers on a pipe, so it leaves no file)."""
    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    path = _hanging_h5(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'hgqbridge.cli', 'convert', str(path), '-o', 'o.keras', '--limit', 'read_seconds=600'],
        cwd=tmp_path,
        env={**os.environ, 'TMPDIR': str(tmpdir)},
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: _reader(proc.pid))
    child = _reader(proc.pid)[0]
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    _wait_for(lambda: not _alive(child), 10)
    assert list(tmpdir.iterdir()) == []


def test_sigterm_during_export_leaves_no_partial_project(tmp_path: Path, hgq_model: Path) -> None:
    """Terminated while the project is being written: no `.prj.*` folder, no project, no temporary file."""
    import numpy as np

    tmpdir = tmp_path / 'tmp'
    tmpdir.mkdir()
    with np.load(QKERAS / 'jet_tagger.golden.npz') as g:  # many rows: the C simulation after g++ takes seconds, so
        np.savez(tmp_path / 'data.npz', x=np.tile(g['x_normal'], (200, 1))[:50_000])  # the signal lands mid-export
    shutil.copy(hgq_model, tmp_path / 'model.keras')
    args = ['export', 'model.keras', '--target', 'hls4ml:vitis', '-o', 'prj', '--data', 'data.npz']
    proc = subprocess.Popen(
        [sys.executable, '-m', 'hgqbridge.cli', *args],
        cwd=tmp_path,
        env={**os.environ, 'TMPDIR': str(tmpdir)},
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: any(p.name.startswith('.prj.') and any(p.rglob('*.cpp')) for p in tmp_path.iterdir()), 300)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['data.npz', 'model.keras', 'tmp']
    assert list(tmpdir.iterdir()) == []
