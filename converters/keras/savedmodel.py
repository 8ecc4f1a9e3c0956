"""Read a Keras-2 (QKeras) SavedModel folder as data: its graph functions are never loaded or run.

A tf.keras SavedModel folder holds ``keras_metadata.pb`` (a ``SavedMetadata`` protobuf whose root node carries
the model config as JSON, the same config ``model.to_json()`` writes) and ``variables/`` (a TensorFlow
checkpoint). The checkpoint's object graph names every variable by the attribute path that holds it
(``layer-3`` → ``kernel``, ``layer-2`` → ``batchnorm`` → ``gamma``); TensorFlow's checkpoint reader only
reads tensors. ``saved_model.pb`` (the traced functions) is never opened. Runs in the reader child
process (TensorFlow's checkpoint reader is C++: a broken checkpoint must not take the run down).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import SourceFileError
from hgqbridge.limits import Limits

#: Children of a layer node that are lists or Keras bookkeeping, not named attributes.
SKIP = {
    'variables',
    'trainable_variables',
    'non_trainable_variables',
    'keras_api',
    'layer_metrics',
    'regularization_losses',
    '_self_saveable_object_factories',
    'state_variables',
}


def is_savedmodel(path: Path) -> bool:
    return path.is_dir() and (path / 'keras_metadata.pb').is_file()


def _untuple(node: Any) -> Any:
    """The metadata JSON writes tuples as {"class_name": "__tuple__", "items": [...]}: make them lists."""
    if isinstance(node, dict):
        if node.get('class_name') == '__tuple__' and isinstance(node.get('items'), list):
            return [_untuple(v) for v in node['items']]
        return {k: _untuple(v) for k, v in node.items()}
    return [_untuple(v) for v in node] if isinstance(node, list) else node


def _inside(path: Path) -> None:
    """Every file and folder the reader may open lies inside the SavedModel folder (no link leads out of it)."""
    root = path.resolve()
    for item in [path / 'keras_metadata.pb', path / 'variables', *(path / 'variables').glob('*')]:
        if item.is_symlink() or (item.exists() and root not in item.resolve().parents):
            raise SourceFileError(
                'the SavedModel folder holds a link to a file outside it, which hgqbridge never follows',
                where=str(item),
                fix='copy the real files into the folder',
            )
        if item.exists() and not (item.is_file() or item.is_dir()):
            raise SourceFileError('the SavedModel folder holds something that is not a regular file', where=str(item))


def _model_config(path: Path, limits: Limits) -> dict:
    from tensorflow.python.keras.protobuf import saved_metadata_pb2

    meta = saved_metadata_pb2.SavedMetadata()
    limits.check('weight_bytes', (path / 'keras_metadata.pb').stat().st_size, 'keras_metadata.pb', str(path))
    try:
        meta.ParseFromString((path / 'keras_metadata.pb').read_bytes())
        root = next(n for n in meta.nodes if n.node_path == 'root')
        info = json.loads(root.metadata)
    except RecursionError:
        raise SourceFileError(
            'the SavedModel metadata is nested too deeply to read', where=str(path), fix='re-save the model'
        ) from None
    except Exception as err:  # protobuf DecodeError, StopIteration, JSONDecodeError: all mean a broken file
        raise SourceFileError(
            'keras_metadata.pb is not a readable tf.keras SavedModel metadata file',
            where=str(path),
            received=f'{type(err).__name__}: {str(err)[:200]}',
            fix='re-save the model with model.save(folder)',
        ) from None
    if not isinstance(info, dict) or not isinstance(info.get('config'), dict):
        raise SourceFileError(
            'the SavedModel metadata holds no model config (a subclassed model?)',
            where=str(path),
            fix='save a Functional or Sequential model, or use model.save("m.h5")',
        )
    try:
        return {'class_name': info.get('class_name'), 'config': _untuple(info['config'])}
    except RecursionError:
        raise SourceFileError(
            'the SavedModel metadata is nested too deeply to read', where=str(path), fix='re-save the model'
        ) from None


def _layer_variables(graph: Any, node_id: int, prefix: str, depth: int = 0) -> dict[str, str]:
    """Attribute path -> checkpoint key for the variables a layer node holds by name (and its sub-layers')."""
    out: dict[str, str] = {}
    for child in graph.nodes[node_id].children:
        if child.local_name in SKIP or child.local_name.isdigit():
            continue
        node = graph.nodes[child.node_id]
        keys = [a.checkpoint_key for a in node.attributes if a.name == 'VARIABLE_VALUE']
        if keys:
            out[f'{prefix}{child.local_name}:0'] = keys[0]
        elif depth < 2:  # a sub-layer (QConv2DBatchnorm's batchnorm, an RNN's cell)
            out.update(_layer_variables(graph, child.node_id, f'{prefix}{child.local_name}/', depth + 1))
    return out


def load_savedmodel(path: Path, limits: Limits = Limits()) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(model config, weights) of a SavedModel folder."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    if not is_savedmodel(path):
        raise SourceFileError(
            'the folder is not a tf.keras SavedModel (no keras_metadata.pb)',
            where=str(path),
            fix='pass a .h5/.json/.keras file, or a folder written by tf.keras model.save(folder)',
        )
    _inside(path)
    config = _model_config(path, limits)
    try:
        reader = tf.train.load_checkpoint(str(path / 'variables' / 'variables'))
        shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
        objects = trackable_object_graph_pb2.TrackableObjectGraph()
        objects.ParseFromString(reader.get_tensor('_CHECKPOINTABLE_OBJECT_GRAPH'))
    except Exception as err:  # tf.errors.*, DecodeError: a missing or corrupted checkpoint
        raise SourceFileError(
            'the SavedModel variables cannot be read (missing or corrupted checkpoint)',
            where=str(path / 'variables'),
            received=f'{type(err).__name__}: {str(err)[:200]}',
        ) from None
    layers_cfg = config['config'].get('layers')
    if not isinstance(layers_cfg, list):
        raise SourceFileError('the model config has no list of layers', where=str(path))
    # root children layer-N are model.layers in order (Sequential: without its InputLayer)
    named = [c for c in objects.nodes[0].children if c.local_name.startswith('layer-')]
    names = [
        (lc.get('config') or {}).get('name')
        for lc in layers_cfg
        if config['class_name'] != 'Sequential' or lc.get('class_name') != 'InputLayer'
    ]
    if len(named) != len(names):
        raise SourceFileError(
            'the SavedModel object graph does not match its model config',
            where=str(path),
            received=f'{len(named)} layer nodes for {len(names)} layers',
        )
    weights: dict[str, dict[str, np.ndarray]] = {}
    total = 0
    for child in named:
        name = names[int(child.local_name.split('-')[1])]
        variables = _layer_variables(objects, child.node_id, f'{name}/')
        for key in variables.values():  # sizes from the checkpoint index, before any tensor is read
            total += int(np.prod(shapes.get(key, []), dtype=np.float64)) * max(getattr(dtypes.get(key), 'size', 8), 1)
        limits.check('weight_bytes', total, 'the SavedModel variables together', str(path))
        if variables:
            weights[str(name)] = {k: np.asarray(reader.get_tensor(key)) for k, key in variables.items()}
    return config, weights
