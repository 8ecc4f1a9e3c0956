"""QKeras: its quantizers (a small grammar for the saved strings and dicts, typed specs, the exact mapping to
fixed-point formats, the float32 emulation of its data-dependent weight quantizers) and its Q-layers, whose
handlers build on the plain Keras ones in ``converters/keras``. QKeras is never imported: models come in
through the Keras file readers.
"""

from __future__ import annotations

from . import conv_layers, layers, norm_pool_layers, rnn_layers  # noqa: F401  (they register their handlers)
from .registry import LAYERS, QUANTIZERS

LAYERS.freeze()

__all__ = ['LAYERS', 'QUANTIZERS']
