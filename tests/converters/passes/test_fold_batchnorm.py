"""The batch-norm folding pass: what it folds, what it leaves, its aliases and notes, and that it is pure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hgqbridge.converters.passes.fold_batchnorm import FoldBatchNorm, FoldTable
from hgqbridge.graph import SourceGraph, SourceLayer
from hgqbridge.numerics import bn_scale_offset

TABLE = FoldTable('BatchNormalization', {'Dense': 2})
K = np.arange(12, dtype=np.float32).reshape(4, 3) / 8
B = np.array([0.5, -0.25, 0.0], np.float32)
STATS = {
    'bn/gamma:0': np.array([1.0, 2.0, 0.5], np.float32),
    'bn/beta:0': np.array([0.0, 1.0, -1.0], np.float32),
    'bn/moving_mean:0': np.array([0.25, 0.0, 1.0], np.float32),
    'bn/moving_variance:0': np.array([1.0, 4.0, 0.25], np.float32),
}


def _graph(activation: str = 'linear', variance: np.ndarray | None = None) -> SourceGraph:
    stats = {**STATS, **({'bn/moving_variance:0': variance} if variance is not None else {})}
    layers = [
        SourceLayer('in', 'InputLayer', {}),
        SourceLayer('fc', 'Dense', {'activation': activation}, {'fc/kernel:0': K, 'fc/bias:0': B}, ['in']),
        SourceLayer('bn', 'BatchNormalization', {'epsilon': 1e-3}, stats, ['fc']),
        SourceLayer('out', 'Activation', {}, {}, ['bn']),
    ]
    return SourceGraph('m', layers, ['in'], ['out'], Path('m.h5'))


def test_folds_into_the_dense_before_it() -> None:
    graph = _graph()
    folded, changed = FoldBatchNorm(TABLE).apply(graph)
    assert changed and [layer.name for layer in folded] == ['in', 'fc', 'out'] and folded.layer('out').inbound == ['fc']
    assert folded.aliases == {'bn': 'fc'} and 'folded into the layer before it: bn' in folded.notes[-1]
    scale, offset = bn_scale_offset(
        STATS['bn/gamma:0'], STATS['bn/beta:0'], STATS['bn/moving_mean:0'], STATS['bn/moving_variance:0'], 1e-3
    )
    assert np.array_equal(folded.layer('fc').weight('kernel'), (K * scale).astype(np.float32))
    assert np.array_equal(folded.layer('fc').weight('bias'), ((B * scale).astype(np.float32) + offset).astype(np.float32))
    assert [layer.name for layer in graph] == ['in', 'fc', 'bn', 'out'] and graph.aliases == {}  # the input graph is untouched


def test_leaves_what_it_cannot_fold() -> None:
    for graph in (_graph('relu'), _graph(variance=np.array([1.0, -5.0, 1.0], np.float32))):
        same, changed = FoldBatchNorm(TABLE).apply(graph)
        assert not changed and same is graph
