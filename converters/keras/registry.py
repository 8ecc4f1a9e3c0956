"""The registry of plain Keras layer handlers (Keras 2 and 3 class names); the handler modules fill it."""

from __future__ import annotations

from collections.abc import Callable

from hgqbridge.graph import SourceLayer
from hgqbridge.registry import Registry

LAYERS: Registry[Callable[[SourceLayer], object]] = Registry('Keras layer', 'Keras')
