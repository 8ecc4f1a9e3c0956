"""Fold batch normalizations into the linear layer before them (``--fold-batchnorm``).

Contract: ``FoldBatchNorm(table).apply(graph) -> (graph, changed)``. A batch normalization is folded when the
layer before it is one of ``table.producers`` with a linear activation, that layer's only consumer is the batch
normalization, the normalization is over the producer's channel (last) axis, and its variance + epsilon is
positive. Then ``W' = W * scale`` and ``b' = b * scale + offset`` (per output channel) with the ``scale`` and
``offset`` of ``hgqbridge.numerics.bn_scale_offset`` (TensorFlow's order, float32), the producer gets the folded
weights, the batch normalization leaves the graph, and ``graph.aliases`` maps it to the producer (its tensor is
the producer's now). Anything else is left to the batch-normalization handler. The input graph is not modified.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hgqbridge.graph import SourceGraph, SourceLayer
from hgqbridge.numerics import bn_scale_offset

F32 = np.float32


@dataclass(frozen=True)
class FoldTable:
    """A source's names: the batch normalization class, the producers that can absorb it (class -> rank of their
    output, channels last), and the weight and config keys."""

    batchnorm: str
    producers: dict[str, int]
    kernel: str = 'kernel'
    bias: str = 'bias'
    statistics: tuple[str, str, str, str] = ('gamma', 'beta', 'moving_mean', 'moving_variance')
    default_epsilon: float = 1e-3


@dataclass(frozen=True)
class FoldBatchNorm:
    table: FoldTable

    def apply(self, graph: SourceGraph) -> tuple[SourceGraph, bool]:
        by_name = {layer.name: layer for layer in graph}
        layers = list(graph.layers)
        aliases = dict(graph.aliases)
        for bn in graph.layers:
            producer = by_name.get(bn.inbound[0]) if bn.class_name == self.table.batchnorm and len(bn.inbound) == 1 else None
            if producer is None:
                continue
            folded = self._fold(producer, bn, graph)
            if folded is None:
                continue
            layers[layers.index(producer)] = by_name[producer.name] = folded
            layers.remove(bn)
            for n, layer in enumerate(layers):  # the normalization's consumers read the producer now
                if bn.name in layer.inbound:
                    layers[n] = replace(layer, inbound=[producer.name if i == bn.name else i for i in layer.inbound])
            aliases[bn.name] = producer.name
        if len(aliases) == len(graph.aliases):
            return graph, False
        outputs = [aliases.get(n, n) for n in graph.outputs]
        folded_names = [n for n in aliases if n not in graph.aliases]
        notes = [*graph.notes, f'batch normalization folded into the layer before it: {", ".join(folded_names)}']
        return replace(graph, layers=layers, outputs=outputs, aliases=aliases, notes=notes), True

    def _fold(self, producer: SourceLayer, bn: SourceLayer, graph: SourceGraph) -> SourceLayer | None:
        t = self.table
        rank = t.producers.get(producer.class_name)
        axis = bn.config.get('axis', -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if rank is None or producer.config.get('activation', 'linear') != 'linear' or len(graph.consumers(producer.name)) != 1:
            return None
        if axis not in (-1, rank - 1) or producer.name in graph.outputs:
            return None
        kernel, bias = producer.weight(t.kernel), producer.weight(t.bias)
        g_key, b_key, m_key, v_key = t.statistics
        mean, var = bn.weight(m_key), bn.weight(v_key)
        if kernel is None or mean is None or var is None or kernel.shape[-1] != mean.shape[0] or var.shape != mean.shape:
            return None
        gamma = bn.weight(g_key) if bn.config.get('scale', True) else None
        beta = bn.weight(b_key) if bn.config.get('center', True) else None
        if (bn.config.get('scale', True) and gamma is None) or (bn.config.get('center', True) and beta is None):
            return None
        epsilon = bn.config.get('epsilon', t.default_epsilon)
        if not isinstance(epsilon, (int, float)) or np.any(var.astype(np.float64) + float(epsilon) <= 0):
            return None  # left to the batch-normalization handler, which names the problem
        scale, offset = bn_scale_offset(gamma, beta, mean, var, float(epsilon))
        b = np.zeros_like(scale) if bias is None else bias.astype(F32)
        weights = {
            f'{producer.name}/{t.kernel}:0': (kernel.astype(F32) * scale).astype(F32),
            f'{producer.name}/{t.bias}:0': ((b * scale).astype(F32) + offset).astype(F32),
        }
        return replace(producer, config={**producer.config, 'use_bias': True}, weights=weights)
