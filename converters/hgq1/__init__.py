"""HGQ1, the first-generation HGQ (PyPI ``hgq`` up to 0.2.6, import ``HGQ``, Keras 2): its saved models (``HGQ.layers``)
and its proxy models (``to_proxy_model``: Keras layers and ``FixedPointQuantizer``), both Keras-2 ``.h5`` files read
by the Keras readers. HGQ1 is never imported. Its arithmetic is written down in fixtures/hgq1/README.md.

``prepare`` is what the Keras source runs on a graph before conversion: it marks a proxy's weight layers
(``proxy.mark_proxy_weights``) and derives the integer bits a saved model's quantizers do not hold
(``integer_bits.prepare``).
"""

from __future__ import annotations

import numpy as np

from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits
from hgqbridge.registry import Registry

from . import passive, proxy, saved  # noqa: F401  (they register their handlers)
from .integer_bits import prepare as integer_bits
from .registry import LAYERS

LAYERS.freeze()

__all__ = ['LAYERS', 'prepare']


def prepare(
    graph: SourceGraph, registries: tuple[Registry, ...], input_format: FixedFormat | None, x: np.ndarray | None, limits: Limits
) -> SourceGraph:
    """An HGQ1 proxy's weight layers marked, a saved HGQ1 model's integer bits derived; other graphs unchanged."""
    return integer_bits(proxy.mark_proxy_weights(graph), registries, input_format, x, limits)
