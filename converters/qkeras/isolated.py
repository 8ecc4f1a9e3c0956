"""Parse untrusted HDF5 / .keras files in a child process with a time limit.

A corrupted HDF5 file can make the HDF5 C library loop or crash (a zeroed block in a variable-length string
attribute was found by the mutation fuzzer to hang for minutes), and no Python signal interrupts C code. So
the readers run ``load_h5`` / ``load_json`` / ``load_keras`` in ``python -m hgqbridge.converters.qkeras.isolated``:
the child writes the model config (``config.json``) and the weights (``weights.npz`` plus an index, no pickle)
to a private temporary folder, or ``error.json`` for a SourceFileError. A child that runs past the limit or
dies becomes a SourceFileError naming the file; the parent never touches the raw HDF5 bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import SourceFileError

#: A model of a few hundred MB reads in seconds; a corrupted one may never finish. HGQBRIDGE_READ_TIMEOUT overrides.
TIME_LIMIT_S = 30.0
Weights = dict[str, dict[str, np.ndarray]]


def _load(kind: str, path: Path, weights_path: Path | None) -> tuple[dict, Weights]:
    from .keras3_reader import load_keras
    from .reader import load_h5, load_json

    if kind == 'h5':
        return load_h5(path)
    if kind == 'json':
        return load_json(path, weights_path)
    return load_keras(path)


def isolated(kind: str, path: Path, weights_path: Path | None = None) -> tuple[dict, Weights]:
    """(config, weights) read by a child process; ``kind`` is 'h5', 'json' or 'keras'."""
    with tempfile.TemporaryDirectory(prefix='hgqbridge-read-') as tmp:
        out = Path(tmp)
        cmd = [sys.executable, '-m', 'hgqbridge.converters.qkeras.isolated', kind, str(path), str(weights_path or ''), str(out)]
        env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'}
        limit = float(os.environ.get('HGQBRIDGE_READ_TIMEOUT', TIME_LIMIT_S))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
        except subprocess.TimeoutExpired:
            raise SourceFileError(f'reading the file did not finish within {limit:.0f} s: its HDF5 structure is corrupted',
                                  where=str(path), fix='re-save the model (or raise HGQBRIDGE_READ_TIMEOUT for a very large one)') from None
        if (out / 'error.json').is_file():
            info = json.loads((out / 'error.json').read_text())
            raise SourceFileError(info.pop('what'), **info)
        if proc.returncode != 0 or not (out / 'config.json').is_file():
            tail = (proc.stderr or '').strip().splitlines()[-1:] or [f'exit status {proc.returncode}']
            raise SourceFileError('the file cannot be read: the HDF5 library failed on it (corrupted file)', where=str(path),
                                  received=tail[0][:300], fix='re-save the model')
        config = json.loads((out / 'config.json').read_text())
        index = json.loads((out / 'index.json').read_text())
        weights: Weights = {}
        with np.load(out / 'weights.npz', allow_pickle=False) as npz:
            for layer, name, key in index:
                weights.setdefault(layer, {})[name] = np.asarray(npz[key])
    return config, weights


def _child(kind: str, path: str, weights_path: str, out: str) -> int:
    folder = Path(out)
    try:
        config, weights = _load(kind, Path(path), Path(weights_path) if weights_path else None)
    except SourceFileError as err:
        (folder / 'error.json').write_text(json.dumps({'what': err.what, 'where': err.where, 'received': _plain(err.received), 'fix': err.fix}))
        return 0
    except Exception as err:  # noqa: BLE001 - anything else from h5py/HDF5 on a broken file
        (folder / 'error.json').write_text(json.dumps({'what': 'the file cannot be read (corrupted)', 'where': path,
                                                       'received': f'{type(err).__name__}: {str(err)[:300]}', 'fix': 're-save the model'}))
        return 0
    arrays, index = {}, []
    for layer, named in weights.items():
        for name, value in named.items():
            key = f'w{len(index)}'
            arrays[key] = value
            index.append([layer, name, key])
    np.savez(folder / 'weights.npz', **arrays)
    (folder / 'index.json').write_text(json.dumps(index))
    (folder / 'config.json').write_text(json.dumps(config))
    return 0


def _plain(value: Any) -> Any:
    """A SourceFileError's ``received`` as JSON (it may hold tuples or numpy values)."""
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


if __name__ == '__main__':
    sys.exit(_child(*sys.argv[1:5]))
