"""Shared test fixtures: the committed QKeras fixtures (written by real QKeras 0.9.0, fixtures/qkeras/, and by
qkeras-v3, fixtures/qkeras_v3/)."""

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
QKERAS_V3 = ROOT / 'fixtures' / 'qkeras_v3'
MANIFEST = json.loads((QKERAS / 'manifest.json').read_text())
MANIFEST_V3 = json.loads((QKERAS_V3 / 'manifest.json').read_text())
#: Every fixture model by name, each entry with ``dir``: the folder its files are in.
MODELS = {entry['name']: {**entry, 'dir': folder} for folder, manifest in ((QKERAS, MANIFEST), (QKERAS_V3, MANIFEST_V3))
          for entry in manifest['models']}


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
    for name, entry in MODELS.items():
        with np.load(golden_path(name)) as g:
            out[name] = np.asarray(g['x_normal'])
    return out
