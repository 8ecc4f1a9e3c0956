"""Parse untrusted HDF5 / .keras files in a child process with CPU, memory and time limits.

A corrupted HDF5 file can make the HDF5 C library loop or crash (a zeroed block in a variable-length string
attribute was found by the mutation fuzzer to hang for minutes), and no Python signal interrupts C code. So
the readers run ``load_h5`` / ``load_json`` / ``load_keras`` / ``load_savedmodel`` in
``python -m hgqbridge.converters.keras.isolated``:
the child answers on its stdout with one ``.npz`` (no pickle) holding the model config, the weights and their
index, or the SourceFileError; no temporary file exists. The child limits its own CPU time and address space
(``Limits.read_seconds`` / ``read_memory``) and dies with its parent (Linux ``PR_SET_PDEATHSIG``: killed by the
kernel even inside a looping HDF5 call when the parent is gone, SIGKILL included). A child that runs past a
limit or dies becomes a SourceFileError naming the file; the parent never touches the raw HDF5 bytes.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import resource
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import SourceFileError
from hgqbridge.limits import Limits

from .archive import WeightOrder
from .hdf5 import Weights

PR_SET_PDEATHSIG = 1


def _load(kind: str, path: Path, weights_path: Path | None, limits: Limits, weight_order: WeightOrder) -> tuple[dict, Weights]:
    from .archive import load_keras, scan_keras
    from .hdf5 import load_h5, load_json
    from .savedmodel import load_savedmodel

    if kind == 'h5':
        return load_h5(path, limits)
    if kind == 'json':
        return load_json(path, weights_path, limits)
    if kind == 'scan':
        return scan_keras(path, limits)
    if kind == 'savedmodel':
        return load_savedmodel(path, limits)
    return load_keras(path, weight_order, limits)


def isolated(
    kind: str, path: Path, weights_path: Path | None = None, limits: Limits = Limits(), weight_order: WeightOrder | None = None
) -> tuple[dict, Weights]:
    """(config, weights) read by a child process; ``kind`` is 'h5', 'json', 'keras', 'savedmodel' or 'scan' (an HGQ2
    .keras model checked before Keras loads it: its config, no weights). The child answers on its stdout (an .npz, no pickle):
    no temporary file exists at any time. ``weight_order`` (for 'keras'): each class's variable names."""
    cmd = [
        sys.executable,
        '-m',
        'hgqbridge.converters.keras.isolated',
        kind,
        str(path),
        str(weights_path or ''),
        json.dumps(asdict(limits)),
        str(os.getpid()),
        json.dumps(weight_order or {}),
    ]
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'OPENBLAS_NUM_THREADS': '1', 'OMP_NUM_THREADS': '1'}
    wall = limits.read_seconds * 2 + 30  # the child's own CPU limit stops a spinning parser first
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=wall, env=env)
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child
        proc = None
    if proc is None or proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise SourceFileError(
            f'reading the file did not finish within its CPU limit ({limits.read_seconds} s): its HDF5 structure is corrupted',
            where=str(path),
            fix=f're-save the model (or raise --limit read_seconds={2 * limits.read_seconds} for a very large one)',
        )
    tail = (proc.stderr or b'').decode(errors='replace').strip().splitlines()[-1:] or [f'exit status {proc.returncode}']
    if proc.returncode != 0 or not proc.stdout:
        if 'MemoryError' in tail[0]:
            raise SourceFileError(
                f'reading the file needed more than its memory limit ({limits.read_memory} bytes)',
                where=str(path),
                fix=f'if the model really is that large: --limit read_memory={2 * limits.read_memory}',
            )
        raise SourceFileError(
            'the file cannot be read: the HDF5 library failed on it (corrupted file)',
            where=str(path),
            received=tail[0][:300],
            fix='re-save the model',
        )
    with np.load(io.BytesIO(proc.stdout), allow_pickle=False) as npz:
        answer = {key: npz[key] for key in npz.files}
    if 'error' in answer:
        info = json.loads(answer['error'].tobytes())
        raise SourceFileError(info.pop('what'), **info)
    config = json.loads(answer['config'].tobytes())
    weights: Weights = {}
    for layer, name, key in json.loads(answer['index'].tobytes()):
        weights.setdefault(layer, {})[name] = np.asarray(answer[key])
    return config, weights


def _confine(limits: Limits, parent: int) -> None:
    """The child's own limits: CPU time, address space, no core file; and death with its parent (SIGKILL from the
    kernel, which stops it even inside a looping C call; it has no file to leave behind)."""
    if sys.platform.startswith('linux'):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent was gone before the death signal was armed
        os._exit(1)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.read_seconds, limits.read_seconds + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.read_memory, limits.read_memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _text(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


def _answer(kind: str, path: str, weights_path: str, limits: Limits, weight_order: WeightOrder) -> dict[str, Any]:
    try:
        config, weights = _load(kind, Path(path), Path(weights_path) if weights_path else None, limits, weight_order)
    except SourceFileError as err:
        return {'error': _text({'what': err.what, 'where': err.where, 'received': _plain(err.received), 'fix': err.fix})}
    except MemoryError:
        raise
    except RecursionError:
        return {
            'error': _text(
                {
                    'what': 'the model config is nested too deeply (a file built to exhaust the stack?)',
                    'where': path,
                    'fix': 're-save the model',
                }
            )
        }
    except Exception as err:
        return {
            'error': _text(
                {
                    'what': 'the file cannot be read (corrupted)',
                    'where': path,
                    'received': f'{type(err).__name__}: {str(err)[:300]}',
                    'fix': 're-save the model',
                }
            )
        }
    arrays: dict[str, Any] = {}
    index: list[list[str]] = []
    for layer, named in weights.items():
        for name, value in named.items():
            key = f'w{len(index)}'
            arrays[key] = value
            index.append([layer, name, key])
    return {**arrays, 'index': _text(index), 'config': _text(config)}


def _child(kind: str, path: str, weights_path: str, limits_json: str, parent: str, order_json: str) -> int:
    answer = os.fdopen(os.dup(1), 'wb')  # the answer goes to the parent on the real stdout...
    os.dup2(2, 1)  # ...and anything a library prints goes to stderr
    limits = Limits(**json.loads(limits_json))
    _confine(limits, int(parent))
    order = {cls: tuple(names) for cls, names in json.loads(order_json).items()}
    np.savez(answer, **_answer(kind, path, weights_path, limits, order))
    answer.close()
    return 0


def _plain(value: Any) -> Any:
    """A SourceFileError's ``received`` as JSON (it may hold tuples or numpy values)."""
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


if __name__ == '__main__':
    sys.exit(_child(*sys.argv[1:7]))
