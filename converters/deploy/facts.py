"""What the deployability rules look at: facts about every layer of an HGQ2 model, read once from the model.

Rules are pure functions of these facts and the target (``rules.py``), so every rule can be table-tested on
hand-made facts. What each layer class does comes from ``hgqbridge.inspect.LAYER_KINDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgqbridge.inspect import QuantizerInfo, kind, layer_quantizers, parents, producer, quantizer_info

from .float32 import Range, pool_areas, propagate


@dataclass
class LayerFacts:
    """What the rules need to know about one layer of the model."""

    name: str
    cls: str  # class name, e.g. QDense
    path: str  # fully qualified class path, e.g. hgq.layers.core.dense.QDense
    quantizers: dict[str, QuantizerInfo | None] = field(default_factory=dict)  # role -> info (None: float)
    activation: str = ''
    is_output: bool = False
    arithmetic: bool = False
    fed_by_quantizer: bool = True
    fan_in: int = 0  # products summed per output (dense/conv), 0 for other layers
    dilation: tuple[int, ...] = ()  # convolutions: dilation_rate
    groups: int = 1
    n_out: int = 0  # outputs per position (units / filters) of a dense/conv layer
    positions: int = 1  # output positions of a dense/conv layer (1 for a plain dense layer)
    n_inputs: int = 1
    reads_model_input: bool = False  # directly, or through Flatten/Reshape only
    clipped_relu: bool = False  # a Keras ReLU with max_value, negative_slope or threshold
    rank: int = 0  # rank of the (first) input, the batch axis included
    pool_areas: tuple[int, ...] = ()  # pooling layers: every number of cells a window averages (padding excluded)
    float32_bits: int = 0  # significant bits its float32 products and sums need (float32.py); -1: unbounded input
    signed_input: bool = True  # its (first) input may be negative (float32.Range.signed)
    recalibrated: tuple[str, ...] = ()  # roles of WRAP quantizers whose integer bits export re-derives from its data


def layer_facts(model: Any) -> list[LayerFacts]:
    """Facts for every layer, in model order; ``fed_by_quantizer`` follows quantization down the graph."""
    outputs = {id(producer(t)) for t in model.outputs}
    quantized_out: dict[str, bool] = {}
    from_input: set[str] = {producer(t).name for t in model.inputs}
    facts = []
    ranges: dict[str, Range | None] = {}
    for layer in model.layers:
        cls = type(layer).__name__
        raw = layer_quantizers(layer)
        qs = {role: quantizer_info(q) for role, q in raw.items()}
        parents_ = parents(layer)
        first_in = ranges.get(parents_[0]) if parents_ else None
        ranges[layer.name], bits = propagate(layer, cls, [ranges.get(p) for p in parents_], qs)
        reads_input = bool(parents_) and any(p in from_input for p in parents_) and cls != 'InputLayer'
        if reads_input and cls in ('Flatten', 'Reshape'):
            from_input.add(layer.name)
        upstream = bool(parents_) and all(quantized_out.get(p, False) for p in parents_)
        has_iq = any(role.startswith(('input', 'self')) for role in qs)
        quantized_out[layer.name] = has_iq or (upstream and cls not in ('Activation',))
        activation = layer.get_config().get('activation', '')
        facts.append(
            LayerFacts(
                name=layer.name,
                cls=cls,
                path=f'{type(layer).__module__}.{cls}',
                quantizers=qs,
                activation=activation if isinstance(activation, str) else str(activation),
                is_output=id(layer) in outputs,
                arithmetic=kind(layer) == 'arithmetic',
                fed_by_quantizer=has_iq or upstream,
                fan_in=_fan_in(layer),
                dilation=tuple(getattr(layer, 'dilation_rate', ()) or ()),
                groups=int(getattr(layer, 'groups', 1) or 1),
                n_inputs=len(parents_),
                n_out=int(layer.kernel.shape[-1]) if kind(layer) == 'arithmetic' and hasattr(layer, 'kernel') else 0,
                positions=_positions(layer),
                reads_model_input=reads_input,
                rank=_rank(layer),
                pool_areas=pool_areas(layer),
                float32_bits=bits,
                signed_input=first_in is None or first_in.signed,
                recalibrated=tuple(role for role, q in raw.items() if _recalibrated(q)),
                clipped_relu=cls == 'ReLU'
                and (layer.max_value is not None or bool(layer.negative_slope) or bool(layer.threshold)),
            )
        )
    return facts


def _recalibrated(q: Any) -> bool:
    """A trainable WRAP quantizer: hgq's trace_minmax (run by every export on its data) resets its integer bits."""
    inner = getattr(q, 'quantizer', None)
    return hasattr(inner, '_i_decay_speed') and bool(getattr(inner, 'trainable', False)) and bool(getattr(q, 'trainable', True))


def _positions(layer: Any) -> int:
    """Output positions of a layer with a kernel (each one an unrolled ``x @ W``); 1 otherwise."""
    if kind(layer) != 'arithmetic' or not hasattr(layer, 'kernel'):
        return 1
    shape = [int(d) for d in tuple(layer.output.shape)[1:-1] if d is not None]
    return int(np.prod(shape)) if shape else 1


def _rank(layer: Any) -> int:
    inputs = layer.input if isinstance(layer.input, list | tuple) else [layer.input]
    return len(inputs[0].shape) if inputs else 0


def _fan_in(layer: Any) -> int:
    """Products summed per output: a kernel's inputs per output; 1 for a batch normalization (x * scale + offset)."""
    if kind(layer) != 'arithmetic':
        return 0
    return int(np.prod(layer.kernel.shape[:-1])) if hasattr(layer, 'kernel') else 1
