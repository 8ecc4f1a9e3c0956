"""The values that flow between specs while an HGQ2 model is built, and how quantizers move along with them.

An importer turns each source layer into a spec (pure data, ``specs.py``); ``build.py`` lets each spec add genuine
``hgq.layers`` to a Keras functional model, passing ``Tensor``s from spec to spec. The rewrite that makes the
model HGQ2's own happens here, as the tensors flow, with this contract:

* A quantizer on a tensor (a QKeras ``QActivation``, a layer's ``activation=`` quantizer) does not become a layer:
  it travels with its tensor as a *pending* format.
* It passes through layers that only move values (Flatten, Reshape, MaxPooling, ZeroPadding, Permute: a uniform
  quantizer is monotone and maps 0 to 0, so it commutes with them; a per-element one, a ``FormatArray``, is
  reshaped or permuted with the values and materialised before a pooling or padding) and becomes the input
  quantizer (``iq``) of the first arithmetic layer that reads it, which is what HGQ2's EBOPs and fine-tuning act on.
* Where no consumer can take it over (a model output, a float activation, a concatenation), it is materialised as
  a standalone ``hgq.layers.Quantizer`` named after the source layer.
* ``refs`` records where each source layer's tensor can be read in the HGQ2 model afterwards (a layer's output,
  an input quantizer's output, a moved quantizer applied to a layer's input), so verification compares every
  quantized tensor of the source; nothing computed changes, so the HGQ2 model equals the source bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.limits import Limits

from .policy import FloatPolicy

Format = FixedFormat | FormatArray

#: What the firmware receives when the source model does not quantize its input: hls4ml's default type.
DEFAULT_INPUT_FORMAT = FixedFormat(1, 5, 10, 'TRN', 'SAT')


@dataclass(frozen=True)
class TensorRef:
    """Where a source tensor lives in the HGQ2 model: a layer's output (``output``), the output of its input
    quantizer (``iq``), a layer's input quantized with ``fmt`` (``quantized-input``: a QActivation whose
    quantizer moved past a Flatten/pooling), or the same tensor as another source layer's (``alias``; ``layer``
    is then a source name)."""

    layer: str
    via: str = 'output'
    fmt: Format | None = None
    index: int = 0  # which input, for a layer with several


@dataclass
class Tensor:
    value: Any  # a KerasTensor
    source: str  # the source layer whose value this is
    pending: Format | None = (
        None  # a quantizer still to apply (per element: a FormatArray), by the consumer's iq or a Quantizer layer
    )
    pending_layer: str = ''  # the name a materialised Quantizer layer gets
    quantized: bool = False  # the values lie on a known fixed-point grid
    model_input: bool = False  # a model input (or a move of one), not a float layer's output


@dataclass
class BuildContext:
    input_format: FixedFormat = DEFAULT_INPUT_FORMAT
    policy: FloatPolicy | None = None  # set for float source models (plain Keras): how their float parts are quantized
    limits: Limits = field(default_factory=Limits)
    refs: dict[str, TensorRef] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    inexact: dict[str, str] = field(default_factory=dict)  # layer -> why it cannot match the source bit for bit
    exact_below: dict[str, float] = field(default_factory=dict)  # layer -> |input| bound of the source's exactness
    rounds_raw_input: bool = False  # the HGQ2 model quantizes a model input (to input_format) the source reads as is

    def note(self, layer: str, text: str) -> None:
        self.notes.setdefault(layer, []).append(text)

    def ref(self, source: str, ref: TensorRef) -> None:
        self.refs.setdefault(source, ref)


def quantizer_config(fmt: Format | None, place: str, affine: tuple[float, float] | None = None) -> Any:
    """The HGQ2 QuantizerConfig for a format: kif, exact initial k/i/f; ``None`` gives a float (dummy) quantizer.

    A FormatArray starts from its widest format; ``assign_formats`` sets the per-channel values after build."""
    from hgq.quantizer.config import QuantizerConfig

    if fmt is None:
        return QuantizerConfig('dummy', place)
    if isinstance(fmt, FormatArray):
        fmt = fmt.widest()
    return QuantizerConfig(
        'kif', place, k0=fmt.k, i0=fmt.i, f0=fmt.f, round_mode=fmt.round, overflow_mode=fmt.overflow, affine=affine
    )


def assign_formats(quantizer: Any, fmt: Format | None) -> None:
    """Give a built HGQ2 quantizer layer per-element k, i, f (a no-op for a single FixedFormat)."""
    if not isinstance(fmt, FormatArray):
        return
    inner = quantizer.quantizer
    for name, values in (('_k', fmt.k), ('_i', fmt.i), ('_f', fmt.f)):
        var = getattr(inner, name)
        var.assign(np.broadcast_to(values, var.shape).astype(var.dtype))


def materialize(t: Tensor, ctx: BuildContext) -> Tensor:
    """Apply a pending quantizer as a standalone ``hgq.layers.Quantizer`` layer."""
    if t.pending is None:
        return t
    return quantize_now(t, t.pending, None, t.source, t.pending_layer, ctx)


def take_input_quantizer(t: Tensor, ctx: BuildContext, consumer: str, index: int | None = None) -> tuple[Format | None, bool]:
    """The iq format for an arithmetic layer reading ``t``: its pending format, or the input format for a raw
    model input, or none (iq disabled) when the values are already quantized upstream. ``index``: which input
    of a multi-input layer (its tensor is then read back with the numpy reference of the same format). A per-element
    format (FormatArray) is the consumer's to give its built iq (``assign_formats``)."""
    if t.pending is not None:
        ref = TensorRef(consumer, 'iq') if index is None else TensorRef(consumer, 'quantized-input', t.pending, index)
        ctx.ref(t.source, ref)
        return t.pending, True
    if not t.quantized and ctx.policy is not None:
        if ctx.policy.dummy:
            return None, True  # a dummy (float) input quantizer
        return ctx.policy.activation_format(), True
    if not t.quantized and t.model_input:
        ctx.note(consumer, f'the source does not quantize this input; the HGQ2 model quantizes it to {ctx.input_format}')
        ctx.rounds_raw_input = True
        return ctx.input_format, True
    if not t.quantized:  # a float layer's output: the source computes on it in float, and so does the HGQ2 model
        ctx.note(consumer, f'reads {t.source}, a float tensor the source does not quantize: kept float (dummy quantizer)')
        ctx.inexact.setdefault(consumer, f'reads the float tensor {t.source}: float32 arithmetic, rounding as the source may not')
        return None, True
    return None, False


def quantize_now(
    t: Tensor, fmt: Format, affine: tuple[float, float] | None, source: str, layer_name: str, ctx: BuildContext
) -> Tensor:
    """A standalone ``hgq.layers.Quantizer`` (with its affine, if any) holding the source layer's tensor."""
    from hgq.layers import Quantizer

    layer = Quantizer(quantizer_config(fmt, 'datalane', affine), name=layer_name)
    ctx.ref(source, TensorRef(layer.name))
    out = layer(t.value)
    assign_formats(layer, fmt)
    return Tensor(out, source, quantized=True)
