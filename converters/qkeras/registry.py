"""The registries of QKeras layer handlers and QKeras quantizers; the handler and quantizer modules fill them."""

from __future__ import annotations

from collections.abc import Callable

from hgqbridge.graph import SourceLayer
from hgqbridge.registry import Registry

LAYERS: Registry[Callable[[SourceLayer], object]] = Registry('QKeras layer', 'QKeras')
QUANTIZERS: Registry[Callable[..., object]] = Registry('QKeras quantizer', 'QKeras')
