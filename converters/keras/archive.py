"""Keras-3 ``.keras`` archives (Keras 3 and QKeras-v3 models) read with zipfile, json and h5py alone.

A ``.keras`` file is a zip of ``config.json`` (the architecture, Keras-3 serialization) and
``model.weights.h5``. Keras 3 files a layer's variables under ``layers/<snake_case class name>[_<n>]/vars/<i>``
(``q_dense``, ``q_dense_1``, ... in model order, not the layer's own name), in the order the layer created
them, and a sub-layer's under ``.../<sublayer>/vars``. The variables carry no names, so each layer handler
declares its class's order when it is registered (``weights=``), and the caller passes that table in; a layer
whose variables do not match its class's order is an error, never a guess. Runs in the reader child process,
like every HDF5 read; the config comes out in the Keras-2 shape ``config.py`` reads.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import SourceFileError
from hgqbridge.limits import Limits

from .hdf5 import check_file, read_dataset, scan_h5

WeightOrder = dict[str, tuple[str, ...]]  # class name -> its variables' names in creation order ('sub/name' in a sub-layer)

MEMBERS = ('config.json', 'model.weights.h5')


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: the group name Keras 3 gives a layer's variables."""
    name = re.sub(r'\W+', '', name)
    name = re.sub('(.)([A-Z][a-z]+)', r'\1_\2', name)
    return re.sub('([a-z])([A-Z])', r'\1_\2', name).lower()


def weight_groups(layers: list[dict]) -> dict[str, str]:
    """Layer name -> its group under ``layers/``: snake_case class names, ``_1``, ``_2`` ... for repeats, in
    model order (keras saving_lib ``_save_container_state``). Input layers hold no variables and are skipped."""
    used: dict[str, int] = {}
    out = {}
    for layer in layers:
        cls = str(layer.get('class_name'))
        if cls == 'InputLayer':
            continue
        base = snake_case(cls)
        used[base] = used.get(base, -1) + 1
        out[str(layer.get('name') or (layer.get('config') or {}).get('name'))] = (
            base if used[base] == 0 else f'{base}_{used[base]}'
        )
    return out


def _present(name: str, config: dict) -> bool:
    """Whether a variable exists for this layer config (no bias without use_bias, no gamma without scale, ...)."""
    base = name.split('/')[-1]
    return {'bias': config.get('use_bias', True), 'gamma': config.get('scale', True), 'beta': config.get('center', True)}.get(
        base, True
    )


def _layer_weights(group: Any, order: tuple[str, ...], cls: str, config: dict, where: str, limit: int) -> dict[str, np.ndarray]:
    names = [n for n in order if _present(n, config)]
    found: dict[str, list[np.ndarray]] = {}
    for sub in ('', *sorted({n.split('/')[0] for n in names if '/' in n})):
        vars_group = group.get(f'{sub}/vars' if sub else 'vars')
        keys = sorted((k for k in (vars_group.keys() if vars_group is not None else ()) if k.isdigit()), key=int)
        found[sub] = [read_dataset(vars_group[k], limit, Path(where)) for k in keys]
    expected = {sub: [n for n in names if (n.split('/')[0] if '/' in n else '') == sub] for sub in found}
    if any(len(found[sub]) != len(expected[sub]) for sub in found):
        got = {sub or '.': len(v) for sub, v in found.items()}
        raise SourceFileError(
            f'the weights of a {cls} layer do not match its class (expected {names or "no variables"})',
            where=where,
            received=f'variables per group: {got}',
            fix='pass a file saved by Keras 3 / QKeras-v3 from this model',
        )
    return {f'{n}:0': arr for sub in found for n, arr in zip(expected[sub], found[sub])}


def _tensor_source(value: Any) -> list[str]:
    """Layer names of the Keras tensors in a Keras-3 call argument (a tensor or a list of them)."""
    if isinstance(value, list):
        return [name for item in value for name in _tensor_source(item)]
    if isinstance(value, dict) and value.get('class_name') == '__keras_tensor__':
        return [str(value['config']['keras_history'][0])]
    return []


def _to_keras2(config: dict, path: Path) -> dict:
    """Rewrite Keras-3 inbound nodes and input/output lists into the Keras-2 shapes the reader knows."""
    body = config.get('config')
    if not isinstance(body, dict) or not isinstance(body.get('layers'), list):
        raise SourceFileError(
            'config.json is not a Keras model config', where=str(path), fix='pass a file written by model.save("m.keras")'
        )
    for layer in body['layers']:
        if not isinstance(layer, dict):
            raise SourceFileError('config.json has a layer entry that is not an object', where=str(path))
        try:
            nodes = [
                [[name, 0, 0, {}] for name in _tensor_source(node.get('args', []))] for node in layer.get('inbound_nodes') or []
            ]
        except (KeyError, TypeError, IndexError, AttributeError):
            raise SourceFileError('malformed inbound_nodes', where=f'{path}:{layer.get("name")}') from None
        layer['inbound_nodes'] = nodes
    for key in ('input_layers', 'output_layers'):
        value = body.get(key)
        if isinstance(value, list) and value and not isinstance(value[0], list):
            body[key] = [value]  # Keras 3 writes a single input/output flat
    return config


def load_keras(path: Path, weight_order: WeightOrder, limits: Limits = Limits()) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(model config in Keras-2 shape, weights) of a ``.keras`` zip; ``weight_order`` names each class's variables."""
    import h5py

    check_file(path, 'model file')
    if not zipfile.is_zipfile(path):
        raise SourceFileError(
            'the .keras file is not a zip archive (truncated or not a Keras 3 file)',
            where=str(path),
            fix='re-save the model with model.save("m.keras")',
        )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {i.filename: i for i in archive.infolist()}
            missing = [m for m in MEMBERS if m not in infos]
            if missing:
                raise SourceFileError(
                    'the .keras archive lacks required members',
                    where=str(path),
                    received=missing,
                    fix='re-save the model with model.save("m.keras")',
                )
            for member in MEMBERS:  # zip bombs: a member's declared size is checked before it is inflated
                limits.check('weight_bytes', infos[member].file_size, f'the .keras member {member}, uncompressed,', str(path))
            text, blob = archive.read('config.json'), archive.read('model.weights.h5')
    except (
        zipfile.BadZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
        NotImplementedError,
    ) as err:  # RuntimeError: encrypted
        raise SourceFileError('the .keras archive is corrupted', where=str(path), received=str(err)[:200]) from None
    try:
        config = json.loads(text.decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SourceFileError(
            'config.json in the .keras archive is not valid JSON', where=str(path), received=str(err)[:200]
        ) from None
    except RecursionError:
        raise SourceFileError('config.json in the .keras archive is nested too deeply to read', where=str(path)) from None
    if not isinstance(config, dict):
        raise SourceFileError('config.json is not a Keras model config', where=str(path), received=type(config).__name__)
    config = _to_keras2(config, path)
    weights: dict[str, dict[str, np.ndarray]] = {}
    try:
        with h5py.File(io.BytesIO(blob), 'r') as f:
            scan_h5(f, f'{path}:model.weights.h5')
            layers_group = f.get('layers')
            groups = weight_groups(config['config']['layers'])
            for layer in config['config']['layers']:
                name, cls = layer.get('name') or (layer.get('config') or {}).get('name'), layer.get('class_name')
                group = layers_group.get(groups[str(name)]) if layers_group is not None and str(name) in groups else None
                if group is not None and isinstance(layer.get('config'), dict):
                    weights[str(name)] = _layer_weights(
                        group,
                        weight_order.get(str(cls), ()),
                        str(cls),
                        layer['config'],
                        f'{path}:{name} ({cls})',
                        min(len(blob) + (1 << 20), limits.weight_bytes),
                    )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SystemError) as err:
        raise SourceFileError(
            'model.weights.h5 in the .keras archive is corrupted', where=str(path), received=str(err)[:200]
        ) from None
    return config, {k: v for k, v in weights.items() if v}


def scan_keras(path: Path, limits: Limits = Limits()) -> tuple[dict, dict]:
    """The config of any ``.keras`` archive (an HGQ2 model to load with Keras), after the archive and its weights
    file passed the checks every reader makes: member sizes, no links or external data in the HDF5."""
    import h5py

    check_file(path, 'model file')
    limits.check('weight_bytes', path.stat().st_size, 'the model file', str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {i.filename: i for i in archive.infolist()}
            for member in MEMBERS:
                if member not in infos:
                    raise SourceFileError(
                        'the .keras archive lacks a required member',
                        where=str(path),
                        received=member,
                        fix='pass a model saved with model.save("m.keras")',
                    )
                limits.check('weight_bytes', infos[member].file_size, f'the .keras member {member}, uncompressed,', str(path))
            text, blob = archive.read('config.json'), archive.read('model.weights.h5')
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as err:
        raise SourceFileError('the .keras archive is corrupted', where=str(path), received=str(err)[:200]) from None
    try:
        config = json.loads(text.decode('utf-8'))
        with h5py.File(io.BytesIO(blob), 'r') as f:
            scan_h5(f, f'{path}:model.weights.h5')
    except RecursionError:
        raise SourceFileError('config.json in the .keras archive is nested too deeply to read', where=str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError, OSError, ValueError, RuntimeError, SystemError) as err:
        raise SourceFileError('the .keras archive is corrupted', where=str(path), received=str(err)[:200]) from None
    if not isinstance(config, dict):
        raise SourceFileError('config.json is not a Keras model config', where=str(path), received=type(config).__name__)
    return config, {}
