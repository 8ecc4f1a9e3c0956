"""Shared test fixtures: the committed QKeras fixtures (written by real QKeras, see fixtures/qkeras/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('KERAS_BACKEND', 'tensorflow')

ROOT = Path(__file__).resolve().parents[1]
QKERAS = ROOT / 'fixtures' / 'qkeras'
MANIFEST = json.loads((QKERAS / 'manifest.json').read_text())
MODELS = {entry['name']: entry for entry in MANIFEST['models']}


def source_paths(name: str) -> tuple[Path, Path | None]:
    files = MODELS[name]['files']
    return QKERAS / files[0], (QKERAS / files[1] if len(files) > 1 else None)


@pytest.fixture(scope='session')
def conversions() -> dict:
    """Every fixture converted once per session (conversion itself is tested in test_roundtrip)."""
    import hgqbridge

    return {name: hgqbridge.import_model(*source_paths(name)) for name in MODELS}


@pytest.fixture(scope='session')
def golden_inputs() -> dict[str, np.ndarray]:
    out = {}
    for name, entry in MODELS.items():
        with np.load(QKERAS / entry['golden']) as g:
            out[name] = np.asarray(g['x_normal'])
    return out
