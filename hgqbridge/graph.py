"""SourceGraph / SourceLayer: what a reader produces, framework-neutral and free of TensorFlow."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SourceLayer:
    """One layer of the source model: its exact class name, its config, its weights and where its inputs come from."""

    name: str
    class_name: str
    config: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    inbound: list[str] = field(default_factory=list)

    def weight(self, key: str) -> np.ndarray | None:
        """The weight whose name ends in ``key`` (``kernel``, ``bias``), or None."""
        for name, value in self.weights.items():
            if name.split('/')[-1].split(':')[0] == key:
                return value
        return None


@dataclass
class SourceGraph:
    """A source model as a DAG of SourceLayers in topological order."""

    name: str
    layers: list[SourceLayer]
    inputs: list[str]
    outputs: list[str]
    path: Path
    framework: str
    input_shapes: dict[str, tuple[int | None, ...]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[SourceLayer]:
        return iter(self.layers)

    def layer(self, name: str) -> SourceLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def consumers(self, name: str) -> list[SourceLayer]:
        return [layer for layer in self.layers if name in layer.inbound]
