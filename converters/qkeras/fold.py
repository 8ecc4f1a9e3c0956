"""Fold float BatchNormalization layers into the Dense / Conv layer before them (``--fold-batchnorm``).

A source-graph rewrite, before conversion: ``W' = W * inv`` and ``b' = (b - mean) * inv + beta`` with
``inv = gamma / sqrt(variance + epsilon)`` (float32, per output channel), when the layer before the batch
normalization is a float Dense / Conv1D / Conv2D with a linear activation whose only consumer is that batch
normalization. The batch normalization becomes ``FoldedBatchNormalization`` (removed at conversion; its tensor
is the folded layer's). Anything else is left to QBatchNormalization.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hgqbridge.graph import SourceGraph, SourceLayer

from ..hgq.build import IdentitySpec, Spec
from .layers import LAYERS

FOLDABLE = {'Dense': 2, 'Conv1D': 3, 'Conv2D': 4}  # class -> rank of its output (channels on the last axis)
F32 = np.float32


@LAYERS.register('FoldedBatchNormalization')
def folded(layer: SourceLayer) -> Spec:
    """(made by --fold-batchnorm) a BatchNormalization folded into the layer before it: removed."""
    return IdentitySpec(f'batch normalization folded into {layer.inbound[0]}')


def _fold(conv: SourceLayer, bn: SourceLayer) -> SourceLayer | None:
    kernel, bias = conv.weight('kernel'), conv.weight('bias')
    mean, var = bn.weight('moving_mean'), bn.weight('moving_variance')
    if kernel is None or mean is None or var is None or kernel.shape[-1] != mean.shape[0]:
        return None
    gamma = bn.weight('gamma') if bn.config.get('scale', True) else np.ones_like(mean)
    beta = bn.weight('beta') if bn.config.get('center', True) else np.zeros_like(mean)
    if gamma is None or beta is None or np.any(var.astype(np.float64) + float(bn.config.get('epsilon', 1e-3)) <= 0):
        return None  # left to the batch-normalization handler, which names the problem
    inv = (gamma.astype(F32) / np.sqrt(var.astype(F32) + F32(bn.config.get('epsilon', 1e-3)))).astype(F32)
    b = np.zeros_like(mean, dtype=F32) if bias is None else bias.astype(F32)
    weights = {f'{conv.name}/kernel:0': (kernel.astype(F32) * inv).astype(F32), f'{conv.name}/bias:0': ((b - mean.astype(F32)) * inv + beta.astype(F32)).astype(F32)}
    return replace(conv, config={**conv.config, 'use_bias': True}, weights=weights)


def fold_batchnorm(graph: SourceGraph) -> tuple[SourceGraph, list[str]]:
    """The graph with every foldable batch normalization folded, and the names of those folded."""
    by_name = {layer.name: layer for layer in graph}
    layers, folded_names = list(graph.layers), []
    for idx, bn in enumerate(layers):
        if bn.class_name != 'BatchNormalization' or len(bn.inbound) != 1:
            continue
        conv = by_name[bn.inbound[0]]
        if conv.class_name not in FOLDABLE or conv.config.get('activation', 'linear') != 'linear' or len(graph.consumers(conv.name)) != 1:
            continue
        axis = bn.config.get('axis', -1)
        if (axis[0] if isinstance(axis, list) and len(axis) == 1 else axis) not in (-1, FOLDABLE[conv.class_name] - 1):
            continue
        new = _fold(conv, bn)
        if new is None:
            continue
        layers[layers.index(conv)] = by_name[conv.name] = new
        layers[idx] = SourceLayer(bn.name, 'FoldedBatchNormalization', {}, {}, list(bn.inbound))
        folded_names.append(bn.name)
    return replace(graph, layers=layers), folded_names
