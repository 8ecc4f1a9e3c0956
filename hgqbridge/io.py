"""Files in and out: data files checked before use, outputs written atomically and never overwritten silently."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import DataFileError, OutputExistsError


def check_output(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise OutputExistsError('the output already exists', where=str(path), fix='choose another path or pass --force')


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary sibling path to write a file or folder into; on success it replaces ``path``."""
    check_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f'.{path.name}.'))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def load_data(path: Path, require: tuple[str, ...] = ('x',)) -> dict[str, np.ndarray]:
    """Arrays of a data ``.npz`` (``x``, and ``y``, ``x_val``, ``y_val`` where training needs them)."""
    if not path.exists():
        raise DataFileError('the data file does not exist', where=str(path), fix='pass an .npz file with an array x')
    if path.is_dir():
        raise DataFileError('the data path is a directory', where=str(path), fix='pass an .npz file with an array x')
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataFileError('the data file is not a readable .npz', where=str(path), received=str(err)[:200]) from None
    missing = [k for k in require if k not in arrays]
    if missing:
        raise DataFileError(
            f'the data file lacks array(s) {", ".join(missing)}', where=str(path), received=sorted(arrays),
            fix='save with numpy.savez(path, x=..., y=...)',
        )
    for key, value in arrays.items():
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise DataFileError(f'array {key!r} must be numeric', where=str(path), received=str(value.dtype))
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise DataFileError(f'array {key!r} contains NaN or Inf', where=str(path), fix='clean the data first')
    return arrays


def check_input_shape(x: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """``x`` as float32 with the model's per-sample shape, or a DataFileError that says what was expected."""
    if tuple(x.shape[1:]) != tuple(shape):
        raise DataFileError(
            'the data does not fit the model input', where=where, received=f'shape {x.shape}',
            fix=f'the model expects (N, {", ".join(map(str, shape))})',
        )
    return np.ascontiguousarray(x, dtype=np.float32)
