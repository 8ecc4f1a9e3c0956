"""Keras-2 HDF5 files (``model.save('m.h5')`` and ``model.save_weights``) read with h5py alone.

These functions run in the reader child process (``isolated.py``), never in the process that converts: a
corrupted HDF5 file can make the C library loop or crash. Before anything is read, ``scan_h5`` refuses every
way the file could make HDF5 read outside itself; every dataset's size is checked against the file's and the
``weight_bytes`` budget before it is allocated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.datafiles import regular_file
from hgqbridge.errors import SourceFileError
from hgqbridge.limits import Limits

from .config import load_json_text, normalize_config

H5_MAGIC = b'\x89HDF\r\n\x1a\n'
Weights = dict[str, dict[str, np.ndarray]]
#: What h5py raises on a corrupted file (SystemError: its lock releasing with an HDF5 error pending).
H5_ERRORS = (OSError, ValueError, RuntimeError, SystemError, KeyError, TypeError)


def check_file(path: Path, what: str) -> None:
    regular_file(path, what, SourceFileError)


def _open_h5(path: Path, what: str) -> Any:
    import h5py

    check_file(path, what)
    with path.open('rb') as fh:
        if fh.read(8) != H5_MAGIC:
            raise SourceFileError(f'{what} is not an HDF5 file', where=str(path), fix='pass a Keras-2 .h5 file')
    try:
        f = h5py.File(path, 'r')
    except (OSError, ValueError, RuntimeError, SystemError) as err:
        raise SourceFileError(
            f'{what} cannot be opened (truncated or corrupted HDF5)', where=str(path), received=str(err)
        ) from None
    try:
        scan_h5(f, str(path))
    except BaseException:
        f.close()
        raise
    return f


def scan_h5(f: Any, where: str) -> None:
    """Refuse every way an HDF5 file can make the library read outside it, before anything is read: external
    and soft links, datasets with external storage, virtual datasets. Keras never writes any of them."""
    import h5py

    problems: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            problems.append(f'{name} is an external link to {link.filename}:{link.path}')
        elif isinstance(link, h5py.SoftLink):
            problems.append(f'{name} is a soft link to {link.path}')
        else:
            node = f[name]
            if isinstance(node, h5py.Dataset) and (node.external or node.is_virtual):
                problems.append(
                    f'{name} is a dataset stored outside the file'
                    + (f' ({node.external[0][0]})' if node.external else ' (virtual)')
                )

    try:
        f.visititems_links(visit)
    except (OSError, ValueError, RuntimeError, KeyError, SystemError) as err:
        raise SourceFileError('the HDF5 structure cannot be walked (corrupted)', where=where, received=str(err)[:200]) from None
    if problems:
        raise SourceFileError(
            'the HDF5 file refers to data outside itself, which hgqbridge never follows',
            where=where,
            received='; '.join(problems[:3]),
            fix='re-save the model with Keras (it writes no links or external data)',
        )


def _decode(value: Any) -> str:
    return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def read_dataset(ds: Any, limit: int, path: Path) -> np.ndarray:
    """A dataset's values, after checking that it is a numeric array no larger than ``limit`` bytes (the file
    holds its weights uncompressed, so a larger one is a corrupted header, not data worth allocating)."""
    import h5py

    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in 'fiub':
        raise SourceFileError(
            'a weight is not a numeric dataset',
            where=f'{path}:{getattr(ds, "name", ds)}',
            received=str(getattr(ds, 'dtype', type(ds))),
        )
    nbytes = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize
    if nbytes > limit:
        raise SourceFileError(
            'a weight claims more bytes than the file holds (corrupted)',
            where=f'{path}:{ds.name}',
            received=f'shape {ds.shape}, {nbytes} bytes',
            fix='re-save the model',
        )
    return np.asarray(ds[()])


def size_limit(path: Path) -> int:
    """The most bytes a weight of this file can hold: the file's size, plus slack for small files."""
    return path.stat().st_size + (1 << 20)


def read_weights(group: Any, path: Path, limits: Limits = Limits()) -> dict[str, dict[str, np.ndarray]]:
    """``{layer name: {weight name: array}}`` from a Keras-2 weights group (attrs ``layer_names``/``weight_names``)."""
    if 'layer_names' not in group.attrs:
        raise SourceFileError('the weights have no layer_names attribute; this is not a Keras-2 weights file', where=str(path))
    out: dict[str, dict[str, np.ndarray]] = {}
    total = 0
    try:
        layer_names = [_decode(n) for n in group.attrs['layer_names']]
        limits.check('layers', len(layer_names), 'the number of layers with weights', str(path))
        for layer_name in layer_names:
            layer_group = group[layer_name]
            names = [_decode(n) for n in layer_group.attrs.get('weight_names', [])]
            out[layer_name] = {n: read_dataset(layer_group[n], min(size_limit(path), limits.weight_bytes), path) for n in names}
            total += sum(v.nbytes for v in out[layer_name].values())
            limits.check('weight_bytes', total, 'the weights together', str(path))
    except (KeyError, OSError, ValueError, RuntimeError, SystemError) as err:
        raise SourceFileError('the weights file is incomplete or corrupted', where=str(path), received=str(err)[:200]) from None
    return out


def load_h5(path: Path, limits: Limits = Limits()) -> tuple[dict, Weights]:
    """(model config, weights) of a full Keras-2 model file written by ``model.save('m.h5')``."""
    try:
        return _load_h5(path, limits)
    except H5_ERRORS as err:
        raise SourceFileError(
            'the model file is corrupted (HDF5)',
            where=str(path),
            received=f'{type(err).__name__}: {str(err)[:200]}',
            fix='re-save the model',
        ) from None


def _load_h5(path: Path, limits: Limits) -> tuple[dict, Weights]:
    with _open_h5(path, 'model file') as f:
        if 'model_config' not in f.attrs:
            raise SourceFileError(
                'the .h5 file holds no model architecture (model_config); it may be a weights-only file',
                where=str(path),
                fix='pass the architecture too: SOURCE.json --weights SOURCE_weights.h5',
            )
        config = load_json_text(_decode(f.attrs['model_config']), path)
        group = f['model_weights'] if 'model_weights' in f else f
        return config, read_weights(group, path, limits)


def load_json(path: Path, weights_path: Path | None, limits: Limits = Limits()) -> tuple[dict, Weights]:
    """(model config, weights) of an architecture ``.json`` (``model.to_json()``) and its weights ``.h5``."""
    check_file(path, 'architecture file')
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError:
        raise SourceFileError('the architecture file is not UTF-8 text', where=str(path)) from None
    config = normalize_config(load_json_text(text, path), path)
    if not isinstance(config.get('config'), dict) or 'class_name' not in config:
        raise SourceFileError(
            'the JSON is not a Keras model config', where=str(path), fix='pass a file written by model.to_json()'
        )
    if weights_path is None:
        raise SourceFileError('a .json architecture needs its weights', where=str(path), fix='add --weights SOURCE_weights.h5')
    try:
        with _open_h5(weights_path, 'weights file') as f:
            return config, read_weights(f['model_weights'] if 'model_weights' in f else f, weights_path, limits)
    except H5_ERRORS as err:
        raise SourceFileError(
            'the weights file is corrupted (HDF5)',
            where=str(weights_path),
            received=f'{type(err).__name__}: {str(err)[:200]}',
            fix='re-save the weights',
        ) from None
