"""Keras model files, and the plain Keras layers in them.

The readers take Keras-2 ``.h5`` files (``model.save``), ``.json`` architectures with their weights ``.h5``,
Keras-3 / QKeras-v3 ``.keras`` archives and tf.keras SavedModel folders, all as data (h5py, json, zipfile, the
SavedModel's protobufs; nothing executed), every HDF5 and checkpoint parse in a confined child process
(``isolated.py``). They make one ``SourceGraph`` whatever the file; the layers in it are handled by this
folder's ``LAYERS`` (plain Keras) and by the registries of the frameworks built on Keras (QKeras, HGQ1).
"""

from __future__ import annotations

from pathlib import Path

from hgqbridge.errors import SourceFileError
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits

from . import conv, layers, norm_pool  # noqa: F401  (they register their handlers)
from .archive import WeightOrder
from .config import graph_from_config
from .isolated import isolated
from .registry import LAYERS
from .savedmodel import is_savedmodel

LAYERS.freeze()
SUFFIXES = ('.h5', '.hdf5', '.json', '.keras')

__all__ = ['LAYERS', 'SUFFIXES', 'is_savedmodel', 'read']


def read(path: Path, weights: Path | None, limits: Limits, weight_order: WeightOrder) -> SourceGraph:
    """The SourceGraph of a Keras model file or SavedModel folder (the reader is chosen by the suffix)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        if not is_savedmodel(path):
            raise SourceFileError(
                'the folder is not a tf.keras SavedModel (no keras_metadata.pb)',
                where=str(path),
                fix='pass a .h5/.json/.keras file, or a folder written by tf.keras model.save(folder)',
            )
        kind = 'savedmodel'
    else:
        kind = {'.h5': 'h5', '.hdf5': 'h5', '.json': 'json', '.keras': 'keras'}[suffix]
    if kind != 'json' and weights is not None:
        raise SourceFileError('--weights goes with a .json architecture only', where=str(weights), fix='drop --weights')
    return graph_from_config(*isolated(kind, path, weights, limits, weight_order), path, limits)
