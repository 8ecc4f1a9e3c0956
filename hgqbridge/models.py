"""HGQ2 models: ``.keras`` files loaded only after the checks every reader makes, saved atomically and marked; copies.

Keras builds every layer a config declares before it loads a weight, so a hostile ``.keras`` file could ask it for
gigabytes, and its ``model.weights.h5`` could point HDF5 at local files. ``load_model`` therefore first has the
isolated reader child check the archive (member sizes, no links or external data in the HDF5), then checks the
config itself (the number of layers, and every shape and integer in it against the element budget), and only
then lets Keras load it, in safe mode (no Lambda code runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import HGQBridgeError, SourceFileError
from .limits import Limits

#: Config keys whose value is a tensor shape: its product is what a layer allocates per sample.
SHAPE_KEYS = ('batch_shape', 'batch_input_shape', 'input_shape', 'shape', 'target_shape')


def _plausible(config: Any, limits: Limits, where: str) -> None:
    """Every integer and every shape in a Keras config within the element budget; the layer count within its own."""
    layers = (config.get('config') or {}).get('layers') if isinstance(config, dict) else None
    limits.check('layers', len(layers) if isinstance(layers, list) else 0, 'the number of layers', where)
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'seed' or key.endswith('_id'):  # a random seed or Keras's object ids are not sizes
                    continue
                dims = value if key in SHAPE_KEYS and isinstance(value, list) else None
                if dims and all(isinstance(d, int) or d is None for d in dims):
                    size = float(np.prod([d for d in dims if isinstance(d, int) and d > 0], dtype=np.float64))
                    limits.check('elements', size, f'the shape {key}={dims}', where)
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, int) and not isinstance(node, bool):
            limits.check('elements', abs(node), f'a size in the model config ({node})', where)


def load_model(path: Path, limits: Limits = Limits()) -> Any:
    """Load an HGQ2 ``.keras`` model (checked first; Keras safe mode: no Lambda code runs)."""
    from . import _quiet_tf
    from .converters import scan_model

    if not path.is_file():
        raise SourceFileError(
            'the model file does not exist' if not path.exists() else 'the model path is not a file', where=str(path)
        )
    if path.suffix != '.keras':
        raise SourceFileError(
            'an HGQ2 model is a .keras file', where=str(path), fix='convert the source model first: hgqbridge convert'
        )
    config = scan_model(path, limits)
    _plausible(config, limits, str(path))
    _quiet_tf()
    import hgq  # noqa: F401  (registers the hgq layers for deserialisation)
    import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # Keras raises ValueError/TypeError/OSError/zip errors for broken files
        raise SourceFileError(
            'cannot load the HGQ2 model',
            where=str(path),
            received=f'{type(err).__name__}: {str(err)[:200]}',
            fix='pass a .keras file written by hgqbridge convert',
        ) from None


def save_model(model: Any, path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Write ``model`` to ``path`` (a .keras file) atomically, marked as hgqbridge's."""
    from .outputs import atomic_path

    if path.suffix != '.keras':
        raise HGQBridgeError('the output model must be a .keras file', where=str(path), fix='name it MODEL.keras')
    with atomic_path(path, force, inputs, what='HGQ2 model') as tmp:
        model.save(tmp)


def copy_model(model: Any) -> Any:
    """A deep copy of an HGQ2 model (through Keras's own serialisation; no custom code is loaded)."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def outputs(model: Any, x: np.ndarray) -> Any:
    """A single-input model's outputs on ``x`` in one inference-mode call, as numpy (a list for several outputs). Not
    ``predict``: that traces a graph for every new model first (0.2-0.4 s, most of a small export's proof)."""
    import keras

    values = model([x], training=False)
    if isinstance(values, (list, tuple)):
        return [np.asarray(keras.ops.convert_to_numpy(v)) for v in values]
    return np.asarray(keras.ops.convert_to_numpy(values))
