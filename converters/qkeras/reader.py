"""Read Keras-2 (QKeras) model files with h5py and json alone: nothing from the file is executed.

Supported: a full-model ``.h5`` (``model.save('m.h5')``: attribute ``model_config`` + group ``model_weights``)
and an architecture ``.json`` (``model.to_json()``) with a weights ``.h5`` (``model.save_weights``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import SourceFileError
from hgqbridge.graph import SourceGraph, SourceLayer
from hgqbridge.limits import Limits

H5_MAGIC = b'\x89HDF\r\n\x1a\n'


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise SourceFileError(f'{what} does not exist', where=str(path), fix='check the path')
    if path.is_dir():
        raise SourceFileError(f'{what} is a directory, not a file', where=str(path), fix='pass the model file itself')
    if not path.is_file():
        raise SourceFileError(f'{what} is not a regular file (a pipe or device?)', where=str(path), fix='pass the model file itself')
    if path.stat().st_size == 0:
        raise SourceFileError(f'{what} is empty', where=str(path), fix='re-save the model')


def _open_h5(path: Path, what: str) -> Any:
    import h5py

    _check_file(path, what)
    with path.open('rb') as fh:
        if fh.read(8) != H5_MAGIC:
            raise SourceFileError(f'{what} is not an HDF5 file', where=str(path), fix='pass a Keras-2 .h5 file')
    try:
        f = h5py.File(path, 'r')
    except (OSError, ValueError, RuntimeError, SystemError) as err:
        raise SourceFileError(f'{what} cannot be opened (truncated or corrupted HDF5)', where=str(path), received=str(err)) from None
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
                problems.append(f'{name} is a dataset stored outside the file' + (f' ({node.external[0][0]})' if node.external else ' (virtual)'))

    try:
        f.visititems_links(visit)
    except (OSError, ValueError, RuntimeError, KeyError, SystemError) as err:
        raise SourceFileError('the HDF5 structure cannot be walked (corrupted)', where=where, received=str(err)[:200]) from None
    if problems:
        raise SourceFileError('the HDF5 file refers to data outside itself, which hgqbridge never follows', where=where,
                              received='; '.join(problems[:3]), fix='re-save the model with Keras (it writes no links or external data)')


def _decode(value: Any) -> str:
    return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def read_dataset(ds: Any, limit: int, path: Path) -> np.ndarray:
    """A dataset's values, after checking that it is a numeric array no larger than ``limit`` bytes (the file
    holds its weights uncompressed, so a larger one is a corrupted header, not data worth allocating)."""
    import h5py

    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in 'fiub':
        raise SourceFileError('a weight is not a numeric dataset', where=f'{path}:{getattr(ds, "name", ds)}', received=str(getattr(ds, 'dtype', type(ds))))
    nbytes = int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize
    if nbytes > limit:
        raise SourceFileError('a weight claims more bytes than the file holds (corrupted)', where=f'{path}:{ds.name}',
                              received=f'shape {ds.shape}, {nbytes} bytes', fix='re-save the model')
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


def _inbound(layer: dict, where: str, path: Path) -> list[str]:
    nodes = layer.get('inbound_nodes') or []
    if not isinstance(nodes, list):
        raise SourceFileError('malformed inbound_nodes', where=f'{path}:{where}', received=type(nodes).__name__)
    if len(nodes) > 1:
        raise SourceFileError(
            'a layer used more than once (shared layer) is not supported', where=f'{path}:{where}', received=f'{len(nodes)} calls'
        )
    if not nodes:
        return []
    try:
        return [str(entry[0]) for entry in nodes[0]]
    except (TypeError, IndexError, KeyError):
        raise SourceFileError('malformed inbound_nodes', where=f'{path}:{where}', received=nodes) from None


def graph_from_config(config: dict, weights: dict[str, dict[str, np.ndarray]], path: Path, limits: Limits = Limits()) -> SourceGraph:
    """Turn a Keras-2 ``model_config`` (Functional or Sequential) plus weights into a SourceGraph."""
    if not isinstance(config, dict) or not isinstance(config.get('config'), dict):
        raise SourceFileError('the JSON is not a Keras model config', where=str(path), fix='pass a file written by model.save or model.to_json')
    cls, body = config.get('class_name'), config['config']
    layers_cfg = body.get('layers')
    if not isinstance(layers_cfg, list) or not all(isinstance(x, dict) for x in layers_cfg):
        raise SourceFileError('the model config has no list of layers', where=str(path), received=cls)
    limits.check('layers', len(layers_cfg), 'the number of layers', str(path))
    layers: list[SourceLayer] = []
    sequential = cls == 'Sequential'
    input_shapes: dict[str, tuple[int | None, ...]] = {}
    for idx, raw in enumerate(layers_cfg):
        lcfg = raw.get('config') if isinstance(raw.get('config'), dict) else None
        name = (lcfg or {}).get('name') or raw.get('name')
        if not isinstance(raw.get('class_name'), str) or lcfg is None or not isinstance(name, str):
            raise SourceFileError('a layer entry lacks class_name, config or name', where=f'{path}:layers[{idx}]')
        if sequential:
            inbound = [layers[-1].name] if layers else []
        else:
            inbound = _inbound(raw, name, path)
        layers.append(SourceLayer(name, raw['class_name'], lcfg, weights.get(name, {}), inbound))
    if sequential and layers and layers[0].class_name != 'InputLayer':
        shape = layers[0].config.get('batch_input_shape')
        if not shape:
            raise SourceFileError('a Sequential model without an input shape cannot be read', where=str(path))
        first = SourceLayer(f'{body.get("name", "model")}_input', 'InputLayer', {'batch_input_shape': shape})
        layers[0].inbound = [first.name]
        layers.insert(0, first)
    for layer in layers:
        if layer.class_name == 'InputLayer':
            shape = layer.config.get('batch_input_shape') or layer.config.get('batch_shape')
            input_shapes[layer.name] = tuple(shape) if isinstance(shape, list) else (None,)
            dims = [d for d in input_shapes[layer.name][1:] if isinstance(d, int) and not isinstance(d, bool)]
            limits.check('elements', float(np.prod(dims, dtype=np.float64)), f'the input {layer.name!r} ({input_shapes[layer.name]})', str(path))
    names = {layer.name for layer in layers}
    if sequential:
        inputs, outputs = [layers[0].name], [layers[-1].name]
    else:
        inputs = [str(x[0]) for x in body.get('input_layers', [])]
        outputs = [str(x[0]) for x in body.get('output_layers', [])]
    missing = sorted({n for layer in layers for n in layer.inbound} - names) + sorted(set(inputs + outputs) - names)
    if missing or not inputs or not outputs:
        raise SourceFileError('the model config refers to layers it does not define', where=str(path), received=missing or 'no inputs/outputs')
    unused = sorted(set(weights) - names)
    if unused:
        raise SourceFileError(
            'the weights name layers the architecture does not have: the two files do not belong together',
            where=str(path),
            received=unused[:5],
            fix='pass the weights saved from this very model',
        )
    return SourceGraph(str(body.get('name', path.stem)), _topological(layers, path), inputs, outputs, path, 'qkeras', input_shapes)


def _topological(layers: list[SourceLayer], path: Path) -> list[SourceLayer]:
    """The layers in an order where every layer follows its inputs: level by level (a layer's level is one more
    than its latest input's), file order within a level. Kahn's algorithm, so linear in the size of the graph."""
    index = {layer.name: n for n, layer in enumerate(layers)}
    if len(index) != len(layers):
        names = [layer.name for layer in layers]
        raise SourceFileError('two layers have the same name', where=str(path), received=sorted({n for n in names if names.count(n) > 1})[:5])
    waiting = [len(set(layer.inbound)) for layer in layers]
    users: list[list[int]] = [[] for _ in layers]
    for n, layer in enumerate(layers):
        for source in set(layer.inbound):
            users[index[source]].append(n)
    level = [n for n, count in enumerate(waiting) if count == 0]
    order: list[SourceLayer] = []
    while level:
        order.extend(layers[n] for n in level)
        following = []
        for n in level:
            for user in users[n]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    following.append(user)
        level = sorted(following)
    if len(order) != len(layers):
        stuck = [layer.name for n, layer in enumerate(layers) if waiting[n] > 0]
        raise SourceFileError('the model graph has a cycle', where=str(path), received=stuck[:5])
    return order


Weights = dict[str, dict[str, np.ndarray]]


#: What h5py raises on a corrupted file (SystemError: its lock releasing with an HDF5 error pending).
H5_ERRORS = (OSError, ValueError, RuntimeError, SystemError, KeyError, TypeError)


def load_h5(path: Path, limits: Limits = Limits()) -> tuple[dict, Weights]:
    """(model config, weights) of a full Keras-2 model file written by ``model.save('m.h5')``."""
    try:
        return _load_h5(path, limits)
    except H5_ERRORS as err:
        raise SourceFileError('the model file is corrupted (HDF5)', where=str(path), received=f'{type(err).__name__}: {str(err)[:200]}',
                              fix='re-save the model') from None


def _load_h5(path: Path, limits: Limits) -> tuple[dict, Weights]:
    with _open_h5(path, 'model file') as f:
        if 'model_config' not in f.attrs:
            raise SourceFileError(
                'the .h5 file holds no model architecture (model_config); it may be a weights-only file',
                where=str(path),
                fix='pass the architecture too: SOURCE.json --weights SOURCE_weights.h5',
            )
        config = _load_json(_decode(f.attrs['model_config']), path)
        group = f['model_weights'] if 'model_weights' in f else f
        return config, read_weights(group, path, limits)


def load_json(path: Path, weights_path: Path | None, limits: Limits = Limits()) -> tuple[dict, Weights]:
    """(model config, weights) of an architecture ``.json`` (``model.to_json()``) and its weights ``.h5``."""
    _check_file(path, 'architecture file')
    try:
        text = path.read_text(encoding='utf-8')
    except UnicodeDecodeError:
        raise SourceFileError('the architecture file is not UTF-8 text', where=str(path)) from None
    config = _load_json(text, path)
    if not isinstance(config.get('config'), dict) or 'class_name' not in config:
        raise SourceFileError('the JSON is not a Keras model config', where=str(path), fix='pass a file written by model.to_json()')
    if weights_path is None:
        raise SourceFileError('a .json architecture needs its weights', where=str(path), fix='add --weights SOURCE_weights.h5')
    try:
        with _open_h5(weights_path, 'weights file') as f:
            return config, read_weights(f['model_weights'] if 'model_weights' in f else f, weights_path, limits)
    except H5_ERRORS as err:
        raise SourceFileError('the weights file is corrupted (HDF5)', where=str(weights_path), received=f'{type(err).__name__}: {str(err)[:200]}',
                              fix='re-save the weights') from None


def read_h5(path: Path, limits: Limits = Limits()) -> SourceGraph:
    """A full Keras-2 model file written by ``model.save('m.h5')`` (HDF5 parsed in a child process)."""
    from .isolated import isolated

    return graph_from_config(*isolated('h5', path, None, limits), path, limits)


def read_json(path: Path, weights_path: Path | None, limits: Limits = Limits()) -> SourceGraph:
    """An architecture ``.json`` (``model.to_json()``) plus its weights ``.h5`` (HDF5 parsed in a child process)."""
    from .isolated import isolated

    return graph_from_config(*isolated('json', path, weights_path, limits), path, limits)


def _load_json(text: str, path: Path) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceFileError('the model architecture is not valid JSON', where=str(path), received=str(err)) from None
    except RecursionError:
        raise SourceFileError('the model architecture is nested too deeply to read', where=str(path), fix='re-save the model') from None
    if not isinstance(value, dict):
        raise SourceFileError('the JSON is not a Keras model config', where=str(path), received=type(value).__name__)
    return value
