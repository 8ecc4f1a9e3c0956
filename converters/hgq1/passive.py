"""HGQ1's passive layers (``P*``): the Keras layer of the same name without the ``P`` at inference
(``layers/passive_layers.py``), so each is the plain Keras handler, with how it moves a range of values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hgqbridge.graph import SourceLayer

from ..keras import layers as keras_layers
from ..keras import norm_pool
from ..keras.layers import pooling_args
from .intervals import pooled
from .registry import Interval, SavedHandler, register_both


def _full(interval: Interval) -> Interval:
    lo, hi = interval
    shape = np.broadcast_shapes(lo.shape, hi.shape)
    return np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)


def _each(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[SourceLayer, list[Interval]], Interval]:
    def bounds(layer: SourceLayer, inputs: list[Interval]) -> Interval:
        lo, hi = _full(inputs[0])
        return fn(lo), fn(hi)

    return bounds


def _reshape(layer: SourceLayer, inputs: list[Interval]) -> Interval:
    return _each(lambda a: a.reshape(1, *layer.config['target_shape']))(layer, inputs)


def _permute(layer: SourceLayer, inputs: list[Interval]) -> Interval:
    return _each(lambda a: np.transpose(a, (0, *layer.config['dims'])))(layer, inputs)


def _concatenate(layer: SourceLayer, inputs: list[Interval]) -> Interval:
    full = [_full(i) for i in inputs]
    axis = layer.config.get('axis', -1)
    return np.concatenate([i[0] for i in full], axis=axis), np.concatenate([i[1] for i in full], axis=axis)


def _pool(rank: int, kind: str) -> Callable[[SourceLayer, list[Interval]], Interval]:
    def bounds(layer: SourceLayer, inputs: list[Interval]) -> Interval:
        return pooled(_full(inputs[0]), dict(pooling_args(layer, rank)), kind)

    return bounds


MOVE = 'exact: the Keras layer of the same name (a quantizer before it moves into the next layer)'
PASSIVE: tuple[tuple[str, Callable, Callable, str, tuple[str, ...]], ...] = (
    ('PFlatten', keras_layers.flatten, _each(lambda a: a.reshape(1, -1)), MOVE, ('Flatten',)),
    ('PReshape', keras_layers.reshape, _reshape, MOVE, ('Reshape',)),
    ('PPermute', keras_layers.permute, _permute, MOVE, ('Permute',)),
    ('PConcatenate', keras_layers.concatenate, _concatenate, 'exact: a Keras Concatenate', ('Concatenate',)),
    ('PDropout', keras_layers.dropout, lambda layer, inputs: inputs[0], 'exact: removed (nothing at inference)', ()),
    ('PMaxPooling1D', keras_layers.max_pooling_1d, _pool(1, 'max'), MOVE, ('MaxPooling1D',)),
    ('PMaxPooling2D', keras_layers.max_pooling_2d, _pool(2, 'max'), MOVE, ('MaxPooling2D',)),
    ('PAveragePooling1D', norm_pool.average_pooling_1d, _pool(1, 'average'), norm_pool.POOL_STATUS, ('QAveragePooling1D',)),
    ('PAveragePooling2D', norm_pool.average_pooling_2d, _pool(2, 'average'), norm_pool.POOL_STATUS, ('QAveragePooling2D',)),
)

for _name, _spec, _bounds, _status, _builds in PASSIVE:
    register_both(_name, SavedHandler(_spec, _bounds), status=_status, builds=_builds)
