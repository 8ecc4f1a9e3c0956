"""Framework-specific code, installed as ``hgqbridge.converters``: readers and layer handlers per source
framework (qkeras/), the HGQ2 model builder (hgq/), and the exporters with their support rules (hls4ml/,
da4ml/)."""

from __future__ import annotations

from pathlib import Path

from hgqbridge.errors import SourceFileError
from hgqbridge.fixed import FixedFormat

from .hgq.driver import Conversion


def import_model(path: Path, weights: Path | None = None, input_format: FixedFormat | None = None) -> Conversion:
    """Read a source model file and convert it; the reader is chosen by the file suffix."""
    from . import qkeras

    suffix = path.suffix.lower()
    if path.is_dir():
        graph = qkeras.read_savedmodel(path)
    elif suffix in ('.h5', '.hdf5'):
        graph = qkeras.read_h5(path)
    elif suffix == '.json':
        graph = qkeras.read_json(path, weights)
    elif suffix == '.keras':
        graph = qkeras.read_keras(path)
    else:
        raise SourceFileError(
            f'unknown model file type {suffix or "(none)"!r}', where=str(path),
            fix='pass a Keras-2/QKeras .h5 file, SOURCE.json --weights SOURCE_weights.h5, a Keras-3/QKeras-v3 .keras file, or a tf.keras SavedModel folder',
        )
    return qkeras.convert_graph(graph, input_format)
