"""Shared test fixtures: the committed QKeras fixtures (written by real QKeras 0.9.0, fixtures/qkeras/, and by
qkeras-v3, fixtures/qkeras_v3/)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

ROOT = Path(__file__).resolve().parents[1]
QKERAS = ROOT / 'fixtures' / 'qkeras'
QKERAS_V3 = ROOT / 'fixtures' / 'qkeras_v3'
MANIFEST = json.loads((QKERAS / 'manifest.json').read_text())
MANIFEST_V3 = json.loads((QKERAS_V3 / 'manifest.json').read_text())
#: Every fixture model by name, each entry with ``dir``: the folder its files are in.
MODELS = {
    entry['name']: {**entry, 'dir': folder}
    for folder, manifest in ((QKERAS, MANIFEST), (QKERAS_V3, MANIFEST_V3))
    for entry in manifest['models']
}


def source_paths(name: str) -> tuple[Path, Path | None]:
    files, folder = MODELS[name]['files'], MODELS[name]['dir']
    return folder / files[0], (folder / files[1] if len(files) > 1 else None)


def golden_path(name: str) -> Path:
    return MODELS[name]['dir'] / MODELS[name]['golden']


@pytest.fixture(scope='session')
def conversions() -> dict:
    """Every fixture converted once per session (conversion itself is tested in test_roundtrip)."""
    import hgqbridge

    return {name: hgqbridge.import_model(*source_paths(name)) for name in MODELS}


@pytest.fixture(scope='session')
def golden_inputs() -> dict[str, np.ndarray]:
    out = {}
    for name in MODELS:
        with np.load(golden_path(name)) as g:
            out[name] = np.asarray(g['x_normal'])
    return out


# ---- per-group timing (make test prints it at its end) and the bare-`converters` guard ---------------------------

_GROUP_SECONDS: dict[str, float] = {}
TIMINGS = ROOT / '.timings' / 'pytest.json'


def _group(nodeid: str) -> str:
    """tests/converters/qkeras/test_x.py::t -> 'converters/qkeras'; tests/test_cli.py::t -> 'core'."""
    parts = Path(nodeid.split('::')[0]).parts[1:-1]
    return '/'.join(parts) or 'core'


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _GROUP_SECONDS[_group(report.nodeid)] = _GROUP_SECONDS.get(_group(report.nodeid), 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in MEASURED:
        terminalreporter.write_line(f'measured: {line}')
    if _GROUP_SECONDS:
        TIMINGS.parent.mkdir(exist_ok=True)
        TIMINGS.write_text(json.dumps(dict(sorted(_GROUP_SECONDS.items())), indent=1) + '\n')


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The package is ``hgqbridge.converters``; a bare ``converters`` import would be a second copy of every registry."""
    import sys

    if 'converters' in sys.modules:
        session.exitstatus = 3
        print('\nerror: something imported the bare top-level name `converters`; import hgqbridge.converters instead')


# ---- re-running the reference frameworks on their committed goldens ------------------------------------------------

#: oneDNN instruction-set limits under which every reference is re-run: the CPU this runs on, and two older ones
#: (ONEDNN_MAX_CPU_ISA makes TensorFlow's oneDNN kernels behave as on a CPU without AVX-512 / without AVX).
ISAS = ('DEFAULT', 'AVX2', 'SSE41')
MEASURED: list[str] = []  # observed float differences, printed at the end of the run
#: The bound for float tensors of float models (HGQ2 dummy-quantizer model vs the source framework's own output):
#: max |difference| in units in the last place (float32) of the tensor's largest magnitude, as fixtures/goldens.py
#: bounds a reference re-run. Float32 rounding depends on the CPU and on the kernels, so equality is not asked.
FLOAT_ULPS = 256


def record(line: str) -> None:
    MEASURED.append(line)


def rerun_reference(
    script: Path, env: dict[str, str], isa: str, *args: str, timeout: int = 900, python: Path | None = None
) -> dict:
    """Run ``script --check`` (a fixture script, in its reference environment: ``python``, or this interpreter
    with ``env``) and return its JSON result."""
    import subprocess
    import sys

    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3', 'ONEDNN_MAX_CPU_ISA': isa, **env}
    out = subprocess.run(
        [str(python or sys.executable), str(script), *args, '--check'], capture_output=True, text=True, env=env, timeout=timeout
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith('{')]
    assert out.returncode in (0, 1) and lines, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads(lines[-1])
    worst, worst_tensor = max(
        ((r.get('float_ulps', 0.0), f'{name}: {r.get("worst") or "-"}') for name, r in result['results'].items()),
        default=(0.0, '-'),
    )
    record(
        f'{script.parent.name} --check under ONEDNN_MAX_CPU_ISA={isa}: float tensors within {worst:g} ulp of their '
        f'largest value, on {worst_tensor} (bound 256, fixtures/goldens.py)'
    )
    bad = {name: r['different'] for name, r in result['results'].items() if r['different']}
    assert out.returncode == 0 and not bad, bad
    assert all(r['tensors'] > 0 for r in result['results'].values())
    return result
