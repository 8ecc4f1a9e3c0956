"""Data files are validated like model files: regular, bounded, honest headers, finite, consistent shapes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hgqbridge.datafiles import check_input_shape, check_training_data, load_data, read_npz
from hgqbridge.errors import DataFileError, LimitError
from hgqbridge.limits import Limits


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


def test_member_sizes_are_checked_before_inflating(tmp_path: Path) -> None:
    path = tmp_path / 'd.npz'
    np.savez_compressed(path, x=np.zeros((1000, 100), np.float32))  # 400 kB inflated, a few hundred bytes on disk
    with pytest.raises(LimitError, match='data_bytes'):
        read_npz(path, limits=Limits(data_bytes=100_000))
    assert read_npz(path)['x'].shape == (1000, 100)


def test_a_header_that_lies_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {'descr': '<f4', 'fortran_order': False, 'shape': (1 << 40, 16)})
    with zipfile.ZipFile(tmp_path / 'd.npz', 'w') as archive:
        archive.writestr('x.npy', buf.getvalue() + bytes(64))
    with pytest.raises(DataFileError, match='declares shape'):
        read_npz(tmp_path / 'd.npz')


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / 'd.npz', x=np.array([{'a': 1}], dtype=object))
    with pytest.raises(DataFileError, match='must be numeric'):
        load_data(tmp_path / 'd.npz')


@pytest.mark.parametrize(
    'change, message',
    [
        (lambda d: {**d, 'y': d['y'][:3]}, 'has 3 rows'),
        (lambda d: {**d, 'x_val': d['x_val'][:, :3]}, 'does not fit the model input'),
        (lambda d: {**d, 'y_val': d['y_val'][:, :2]}, 'does not fit the model output'),
        (lambda d: {**d, 'y': d['y'] * 0.5}, 'not one-hot'),
    ],
)
def test_training_data_must_agree(change: object, message: str) -> None:
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    data = {'x': np.zeros((4, 5), np.float32), 'y': y, 'x_val': np.zeros((4, 5), np.float32), 'y_val': y}
    assert set(check_training_data(data, (5,), (3,), 'accuracy', 'w')) == {'x', 'y', 'x_val', 'y_val'}
    with pytest.raises(DataFileError, match=message):
        check_training_data(change(data), (5,), (3,), 'accuracy', 'w')  # type: ignore[operator]
