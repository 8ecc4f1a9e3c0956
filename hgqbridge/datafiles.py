"""Data files (``--data``, ``--calibration``, goldens): validated like model files before anything is allocated.

A data file is an ``.npz`` (a zip of ``.npy`` arrays, no pickle). Before reading an array its member's
uncompressed size and its ``.npy`` header are checked against the file and the ``data_bytes`` budget, so a small
file cannot inflate to gigabytes or declare a shape it does not hold. Only regular files are opened (a FIFO
would block forever). Values must be finite in float32, arrays non-empty, and their shapes consistent with the
model and with each other (``check_training_data``).
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import DataFileError, HGQBridgeError
from .limits import Limits

FLOAT32_MAX = float(np.finfo(np.float32).max)


def regular_file(path: Path, what: str, error: type[HGQBridgeError] = DataFileError) -> int:
    """The size of ``path``, which must be an existing, non-empty regular file (not a folder, FIFO or device);
    ``error`` is the class of the error raised otherwise (SourceFileError for a model file)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f'the {what} does not exist', where=str(path), fix='check the path') from None
    except OSError as err:
        raise error(f'the {what} cannot be opened', where=str(path), received=err.strerror) from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f'the {what} is a directory, not a file', where=str(path), fix='pass the file itself')
    if not stat.S_ISREG(info.st_mode):
        raise error(f'the {what} is not a regular file (a pipe or device?)', where=str(path), fix='pass a file on disk')
    if info.st_size == 0:
        raise error(f'the {what} is empty', where=str(path), fix='save it again')
    return info.st_size


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an .npy member declares, checked against the bytes it holds."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(fh, max_header_size=10_000)
        header = fh.tell()
    if dtype.hasobject or dtype.kind not in 'biuf':
        raise DataFileError(f'array {info.filename[:-4]!r} must be numeric', where=where, received=str(dtype))
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if declared != info.file_size - header:
        raise DataFileError(
            f'array {info.filename[:-4]!r} declares shape {shape} but holds {info.file_size - header} bytes (corrupted)',
            where=where,
            fix='save the data again with numpy.savez',
        )
    return shape, dtype


def read_npz(path: Path, what: str = 'data file', limits: Limits = Limits()) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, after the size and header checks (no pickle)."""
    size = regular_file(path, what)
    limits.check('data_bytes', size, f'the {what}', str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            limits.check('data_bytes', sum(i.file_size for i in infos), f'the {what}, uncompressed,', str(path))
            arrays = {}
            for info in infos:
                if not info.filename.endswith('.npy'):
                    raise DataFileError(
                        f'the {what} holds a member that is not an array', where=str(path), received=info.filename
                    )
                _member_header(archive, info, str(path))
                with archive.open(info) as fh:
                    arrays[info.filename[:-4]] = np.lib.format.read_array(fh, allow_pickle=False)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        OSError,
        ValueError,
        EOFError,
        NotImplementedError,
        RuntimeError,
    ) as err:
        raise DataFileError(
            f'the {what} is not a readable .npz',
            where=str(path),
            received=' '.join(str(err).split())[:200],
            fix='save it with numpy.savez(path, x=..., y=...)',
        ) from None
    return arrays


def load_data(path: Path, require: tuple[str, ...] = ('x',), limits: Limits = Limits()) -> dict[str, np.ndarray]:
    """Arrays of a data ``.npz`` (``x``, and ``y``, ``x_val``, ``y_val`` where training needs them): present,
    non-empty, finite and within float32's range."""
    arrays = read_npz(path, 'data file', limits)
    missing = [k for k in require if k not in arrays]
    if missing:
        raise DataFileError(
            f'the data file lacks array(s) {", ".join(missing)}',
            where=str(path),
            received=sorted(arrays),
            fix='save with numpy.savez(path, x=..., y=...)',
        )
    for key, value in arrays.items():
        if value.ndim == 0 or len(value) == 0:
            raise DataFileError(
                f'array {key!r} holds no samples', where=str(path), received=f'shape {value.shape}', fix='save at least one row'
            )
        if value.dtype.kind == 'f':
            finite = np.isfinite(value)
            if not finite.all():
                raise DataFileError(f'array {key!r} contains NaN or Inf', where=str(path), fix='clean the data first')
            if float(np.max(np.abs(value))) > FLOAT32_MAX:
                raise DataFileError(
                    f"array {key!r} holds values beyond float32's range, which the model computes in",
                    where=str(path),
                    received=f'max |value| {float(np.max(np.abs(value))):.3g}',
                    fix='scale the data into float32 range',
                )
    return arrays


def check_input_shape(x: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """``x`` as float32 with the model's per-sample shape, or a DataFileError that says what was expected."""
    if tuple(x.shape[1:]) != tuple(shape):
        raise DataFileError(
            'the data does not fit the model input',
            where=where,
            received=f'shape {x.shape}',
            fix=f'the model expects (N, {", ".join(map(str, shape))})',
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def check_training_data(
    data: dict[str, np.ndarray], in_shape: tuple[int, ...], out_shape: tuple[int, ...], metric: str, where: str
) -> dict[str, np.ndarray]:
    """x, y, x_val, y_val (and x_test, y_test when given) consistent with the model and with each other; returned as float32."""
    pairs = [('x', 'y'), ('x_val', 'y_val')] + ([('x_test', 'y_test')] if 'x_test' in data and 'y_test' in data else [])
    out = {k: check_input_shape(data[k], in_shape, f'{where}: {k}') for k, _ in pairs}
    for x_key, y_key in pairs:
        y = np.asarray(data[y_key])
        if len(y) != len(out[x_key]):
            raise DataFileError(
                f'{y_key} has {len(y)} rows but {x_key} has {len(out[x_key])}', where=where, fix='give every sample its target'
            )
        if tuple(y.shape[1:]) != tuple(out_shape):
            raise DataFileError(
                f'{y_key} does not fit the model output',
                where=where,
                received=f'shape {y.shape}',
                fix=f'the model outputs (N, {", ".join(map(str, out_shape))})'
                + ('; for accuracy, one-hot targets' if metric == 'accuracy' else ''),
            )
        if metric == 'accuracy' and not (np.isin(y, (0, 1)).all() and np.all(y.reshape(len(y), -1).sum(-1) == 1)):
            raise DataFileError(
                f'{y_key} is not one-hot, which --metric accuracy trains on',
                where=where,
                fix='one-hot encode the classes (numpy.eye(n_classes)[labels]), or use --metric mse',
            )
        out[y_key] = np.asarray(y, dtype=np.float32)
    return out
