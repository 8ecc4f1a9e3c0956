"""SourceGraph / SourceLayer: what a reader produces, framework-neutral and free of TensorFlow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SourceFileError


@dataclass
class SourceLayer:
    """One layer of the source model: its exact class name, its config, its weights and where its inputs come from.
    ``derived``: values a source's pass computed for the layer's handler that the file does not hold (a saved HGQ1
    model's quantizers: their sign and integer bits)."""

    name: str
    class_name: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    inbound: list[str] = field(default_factory=list)
    derived: dict[str, np.ndarray] = field(default_factory=dict)

    def weight(self, key: str) -> np.ndarray | None:
        """The weight whose name ends in ``key`` (``kernel``, ``bias``), or None."""
        for name, value in self.weights.items():
            if name.split('/')[-1].split(':')[0] == key:
                return value
        return None


@dataclass
class SourceGraph:
    """A source model as a DAG of SourceLayers in topological order.

    ``aliases``: source layers a pass removed, mapped to the layer whose tensor is theirs now (a batch
    normalization folded into the convolution before it), so that verification still finds their tensors.
    ``notes``: model-level facts a reader or pass wants the conversion report to say (a layout change)."""

    name: str
    layers: list[SourceLayer]
    inputs: list[str]
    outputs: list[str]
    path: Path
    aliases: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[SourceLayer]:
        return iter(self.layers)

    def layer(self, name: str) -> SourceLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def consumers(self, name: str) -> list[SourceLayer]:
        return [layer for layer in self.layers if name in layer.inbound]


def topological(layers: list[SourceLayer], where: str) -> list[SourceLayer]:
    """The layers in an order where every layer follows its inputs: level by level (a layer's level is one more
    than its latest input's), file order within a level. Kahn's algorithm, so linear in the size of the graph."""
    index = {layer.name: n for n, layer in enumerate(layers)}
    if len(index) != len(layers):
        names = [layer.name for layer in layers]
        raise SourceFileError(
            'two layers have the same name', where=where, received=sorted({n for n in names if names.count(n) > 1})[:5]
        )
    unknown = sorted({n for layer in layers for n in layer.inbound if n not in index})
    if unknown:
        raise SourceFileError('the model graph refers to layers it does not define', where=where, received=unknown[:5])
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
        raise SourceFileError('the model graph has a cycle', where=where, received=stuck[:5])
    return order
