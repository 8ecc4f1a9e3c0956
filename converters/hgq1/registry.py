"""The registry of HGQ1 layer handlers, and what a saved-model handler declares besides its spec.

HGQ1 registers its classes with ``package="HGQ"``, so its files name them ``HGQ>HDense``, ``HGQ>FixedPointQuantizer``,
...; HGQ 0.2.0 wrote an unregistered, plain ``FixedPointQuantizer``. Every class is registered under both exact
names (``register_both``), one handler each.

A saved HGQ1 model holds no integer bits (its quantizers round to fractional bits only and never overflow), so a
saved-model handler is a ``SavedHandler``: its spec, how its output's range follows from its inputs' ranges (for
the integer bits, ``integer_bits.py``) and, for a layer with a quantizer, that quantizer's fractional bits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hgqbridge.graph import SourceLayer
from hgqbridge.registry import Registry

#: A range of values, per element: (lowest, highest), float64 arrays shaped (1, *tensor shape) or broadcastable.
Interval = tuple[np.ndarray, np.ndarray]

LAYERS: Registry[Callable[[SourceLayer], object]] = Registry('HGQ1 layer', 'HGQ1')


@dataclass(frozen=True)
class Activation:
    """An HGQ1 layer's pre-activation quantizer: fractional bits (the shape of its ``activation_bw``), rounding
    ('RND' or 'TRN'), and the range its output cannot leave (relu: [0, inf); tanh: [-1, 1]; sigmoid: [0, 1])."""

    f: np.ndarray
    round: str
    clamp: tuple[float, float] = (-np.inf, np.inf)


@dataclass(frozen=True)
class SavedHandler:
    """A saved-model layer class: ``spec`` (what the driver calls), ``bounds`` (its output's range from its inputs'
    ranges) and, for a layer with a quantizer, ``activation`` (that quantizer, whose integer bits are derived)."""

    spec: Callable[[SourceLayer], object]
    bounds: Callable[[SourceLayer, list[Interval]], Interval]
    activation: Callable[[SourceLayer], Activation] | None = None

    def __call__(self, layer: SourceLayer) -> object:
        return self.spec(layer)


def register_both(name: str, handler: Callable[[SourceLayer], object], **declared: object) -> None:
    """Register ``handler`` as ``HGQ><name>`` (HGQ >= 0.2.1) and as ``<name>`` (HGQ 0.2.0's unregistered classes)."""
    for exact in (f'HGQ>{name}', name):
        LAYERS.register(exact, **declared)(handler)  # type: ignore[arg-type]
