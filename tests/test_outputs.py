"""Outputs are atomic and never overwritten silently; data files are checked before use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hgqbridge.errors import DataFileError, OutputExistsError
from hgqbridge.io import atomic_path, check_input_shape, load_data


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / 'prj'
    with atomic_path(target, force=False) as tmp:
        tmp.mkdir()
        (tmp / 'a.txt').write_text('new')
    assert (target / 'a.txt').read_text() == 'new'
    with pytest.raises(RuntimeError), atomic_path(target, force=True) as tmp:
        tmp.mkdir()
        (tmp / 'a.txt').write_text('half')
        raise RuntimeError('interrupted')
    assert (target / 'a.txt').read_text() == 'new'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['prj']
    with pytest.raises(OutputExistsError), atomic_path(target, force=False):
        pass


@pytest.mark.parametrize(
    'arrays, message',
    [
        ({'y': np.zeros(2)}, 'lacks array'),
        ({'x': np.array([[np.inf]])}, 'NaN or Inf'),
        ({'x': np.array(['a', 'b'])}, 'must be numeric'),
    ],
)
def test_load_data_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / 'd.npz'
    np.savez(path, **arrays)
    with pytest.raises(DataFileError, match=message):
        load_data(path)


def test_load_data_not_npz(tmp_path: Path) -> None:
    (tmp_path / 'd.npz').write_bytes(b'garbage')
    with pytest.raises(DataFileError, match='not a readable'):
        load_data(tmp_path / 'd.npz')
    with pytest.raises(DataFileError, match='does not exist'):
        load_data(tmp_path / 'none.npz')


def test_check_input_shape() -> None:
    assert check_input_shape(np.zeros((3, 4), dtype=np.float64), (4,), 'm').dtype == np.float32
    with pytest.raises(DataFileError, match=r'expects \(N, 4\)'):
        check_input_shape(np.zeros((3, 5)), (4,), 'm')
