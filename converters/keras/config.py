"""Keras model configs (the JSON ``model.to_json()`` writes, the ``model_config`` of an .h5, the config of a
.keras archive in Keras-2 shape) into a SourceGraph. Plain data: no HDF5, no TensorFlow.

Keras 2.0.0 - 2.2.2 wrote a Sequential model's config as the bare list of its layers (keras/models.py
``Sequential.get_config``); Keras 2.2.3 made it ``{"name", "layers"}`` (keras-team/keras PR #11133).
``normalize_config`` gives both the later form, so every reader sees one shape. Keras 1 configs (``output_dim``,
``init``, ``W_regularizer`` ...) are refused: their field names and weight names are not Keras 2's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hgqbridge.errors import SourceFileError
from hgqbridge.graph import SourceGraph, SourceLayer, topological
from hgqbridge.limits import Limits


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


#: Fields only Keras 1 layer configs have (Keras 2 renamed them: units, kernel_initializer, kernel_regularizer ...).
KERAS1_FIELDS = ('output_dim', 'init', 'W_regularizer', 'b_regularizer', 'W_constraint', 'nb_filter', 'border_mode')


def normalize_config(config: dict, path: Path) -> dict:
    """The config in Keras 2.2.3+ shape: a list-form Sequential (Keras 2.0 - 2.2.2) becomes
    ``{'class_name': 'Sequential', 'config': {'name': <file stem>, 'layers': [...]}}``; a Keras 1 config is
    refused with what to do."""
    body = config.get('config')
    version = str(config.get('keras_version', ''))
    layers = body if isinstance(body, list) else body.get('layers') if isinstance(body, dict) else None
    layers = layers if isinstance(layers, list) else []
    old = sorted(
        {key for layer in layers if isinstance(layer, dict) and isinstance(layer.get('config'), dict) for key in layer['config']}
        & set(KERAS1_FIELDS)
    )
    if version.startswith('1.') or old:
        raise SourceFileError(
            "a Keras 1 config: its layer fields and weight names are not Keras 2's",
            where=str(path),
            received=f'keras_version {version!r}' if version.startswith('1.') else f'Keras 1 field(s) {", ".join(old)}',
            fix='re-save it with Keras 2 (load it in Keras 2.0 - 2.2, which still reads Keras 1 files, and save again)',
        )
    if config.get('class_name') == 'Sequential' and isinstance(body, list):
        return {**config, 'config': {'name': path.stem, 'layers': body}}
    return config


def graph_from_config(
    config: dict, weights: dict[str, dict[str, np.ndarray]], path: Path, limits: Limits = Limits()
) -> SourceGraph:
    """Turn a Keras-2 ``model_config`` (Functional or Sequential, either Sequential form) plus weights into a
    SourceGraph."""
    if isinstance(config, dict):
        config = normalize_config(config, path)
    if not isinstance(config, dict) or not isinstance(config.get('config'), dict):
        raise SourceFileError(
            'the JSON is not a Keras model config', where=str(path), fix='pass a file written by model.save or model.to_json'
        )
    cls, body = config.get('class_name'), config['config']
    layers_cfg = body.get('layers')
    if not isinstance(layers_cfg, list) or not all(isinstance(x, dict) for x in layers_cfg):
        raise SourceFileError('the model config has no list of layers', where=str(path), received=cls)
    limits.check('layers', len(layers_cfg), 'the number of layers', str(path))
    layers: list[SourceLayer] = []
    sequential = cls == 'Sequential'
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
            dims = [d for d in (shape[1:] if isinstance(shape, list) else []) if isinstance(d, int) and not isinstance(d, bool)]
            limits.check('elements', float(np.prod(dims, dtype=np.float64)), f'the input {layer.name!r} ({shape})', str(path))
    names = {layer.name for layer in layers}
    if sequential:
        inputs, outputs = [layers[0].name], [layers[-1].name]
    else:
        inputs = [str(x[0]) for x in body.get('input_layers', [])]
        outputs = [str(x[0]) for x in body.get('output_layers', [])]
    missing = sorted({n for layer in layers for n in layer.inbound} - names) + sorted(set(inputs + outputs) - names)
    if missing or not inputs or not outputs:
        raise SourceFileError(
            'the model config refers to layers it does not define', where=str(path), received=missing or 'no inputs/outputs'
        )
    unused = sorted(set(weights) - names)
    if unused:
        raise SourceFileError(
            'the weights name layers the architecture does not have: the two files do not belong together',
            where=str(path),
            received=unused[:5],
            fix='pass the weights saved from this very model',
        )
    return SourceGraph(str(body.get('name', path.stem)), topological(layers, str(path)), inputs, outputs, path)


def load_json_text(text: str, path: Path) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceFileError('the model architecture is not valid JSON', where=str(path), received=str(err)) from None
    except RecursionError:
        raise SourceFileError(
            'the model architecture is nested too deeply to read', where=str(path), fix='re-save the model'
        ) from None
    if not isinstance(value, dict):
        raise SourceFileError('the JSON is not a Keras model config', where=str(path), received=type(value).__name__)
    return value
