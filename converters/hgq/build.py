"""Build HGQ2 models from layer specs: the target side that every importer shares.

An importer turns each source layer into a ``Spec`` (pure data, no TensorFlow). ``build_model`` walks the
source graph in order and lets each spec add genuine ``hgq.layers`` to a Keras functional model.

Quantizers flow as *pending formats*: a QKeras ``QActivation`` does not become a layer of its own when the next
layer can quantize its input itself (HGQ2's input quantizer ``iq``, which is what EBOPs and fine-tuning act
on). Where no consumer can take it over (a model output, a float softmax), it becomes a standalone
``hgq.layers.Quantizer`` named after the source layer. ``refs`` records where each source layer's tensor can be
read in the HGQ2 model, so verification can compare every quantized tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.limits import Limits

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
    fmt: FixedFormat | None = None
    index: int = 0  # which input, for a layer with several


@dataclass
class Tensor:
    value: Any  # a KerasTensor
    source: str  # the source layer whose value this is
    pending: FixedFormat | None = None  # a quantizer still to apply, by the consumer's iq or a Quantizer layer
    pending_layer: str = ''  # the name a materialised Quantizer layer gets
    quantized: bool = False  # the values lie on a known fixed-point grid


@dataclass(frozen=True)
class FloatPolicy:
    """How float parts of a source model are quantized: ``dummy`` keeps them float (HGQ2 dummy quantizers, the
    float model to the last digit); otherwise weights get ``bits``-bit per-channel formats covering their range
    and activations ``bits``-bit WRAP quantizers whose integer bits calibration sets from data."""

    bits: int = 8
    dummy: bool = False

    def weight_format(self, values: np.ndarray) -> FormatArray:
        """Per output channel (last axis): signed, integer bits covering max |w|, ``bits`` bits in all."""
        v = np.abs(np.asarray(values, dtype=np.float64))
        peak = v.reshape(-1, v.shape[-1]).max(axis=0) if v.ndim > 1 else v
        i = np.where(peak > 0, np.floor(np.log2(np.maximum(peak, 1e-30))) + 1, 0).astype(np.int64)
        shape = (1,) * (v.ndim - 1) + (peak.size,) if v.ndim > 1 else (peak.size,)
        i = i.reshape(shape)
        return FormatArray(np.ones_like(i), i, self.bits - 1 - i, 'RND', 'SAT')

    def activation_format(self) -> FixedFormat:
        """Before calibration: signed, 3 integer bits (range +-8)."""
        return FixedFormat(1, 3, self.bits - 4, 'RND', 'WRAP')


@dataclass
class BuildContext:
    input_format: FixedFormat = DEFAULT_INPUT_FORMAT
    policy: FloatPolicy | None = None  # set for float source models (plain Keras): how their float parts are quantized
    limits: Limits = field(default_factory=Limits)
    refs: dict[str, TensorRef] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    inexact: dict[str, str] = field(default_factory=dict)  # layer -> why it cannot match the source bit for bit

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


def take_input_quantizer(t: Tensor, ctx: BuildContext, consumer: str, index: int | None = None) -> tuple[FixedFormat | None, bool]:
    """The iq format for an arithmetic layer reading ``t``: its pending format, or the input format for a raw
    model input, or none (iq disabled) when the values are already quantized upstream. ``index``: which input
    of a multi-input layer (its tensor is then read back with the numpy reference of the same format)."""
    if t.pending is not None:
        ref = TensorRef(consumer, 'iq') if index is None else TensorRef(consumer, 'quantized-input', t.pending, index)
        ctx.ref(t.source, ref)
        return t.pending, True
    if not t.quantized and ctx.policy is not None:
        if ctx.policy.dummy:
            return None, True  # a dummy (float) input quantizer
        return ctx.policy.activation_format(), True
    if not t.quantized:
        ctx.note(consumer, f'the source does not quantize this input; the HGQ2 model quantizes it to {ctx.input_format}')
        return ctx.input_format, True
    return None, False


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int | None, ...]

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        return Tensor(keras.Input(self.shape[1:], name=name), name)


@dataclass(frozen=True)
class QuantizeSpec:
    """A quantizer on a tensor (QKeras QActivation with a fixed-point quantizer). One with an affine transform
    after it (hard sigmoid) becomes its own ``hgq.layers.Quantizer``; a plain one waits for the next layer's iq."""

    fmt: FixedFormat
    affine: tuple[float, float] | None = None

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        (t,) = inputs
        t = materialize(t, ctx)
        if self.affine is not None:
            return quantize_now(t, self.fmt, self.affine, name, name, ctx)
        return Tensor(t.value, name, pending=self.fmt, pending_layer=name, quantized=t.quantized)


def quantize_now(t: Tensor, fmt: FixedFormat, affine: tuple[float, float] | None, source: str, layer_name: str, ctx: BuildContext) -> Tensor:
    """A standalone ``hgq.layers.Quantizer`` (with its affine, if any) holding the source layer's tensor."""
    from hgq.layers import Quantizer

    layer = Quantizer(quantizer_config(fmt, 'datalane', affine), name=layer_name)
    ctx.ref(source, TensorRef(layer.name))
    return Tensor(layer(t.value), source, quantized=True)


@dataclass(frozen=True)
class IdentitySpec:
    """A layer that computes nothing at inference (Dropout, a linear Activation): removed."""

    why: str

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        (t,) = inputs
        ctx.note(name, f'removed: {self.why}')
        ctx.ref(name, TensorRef(t.source, 'alias'))
        return t


@dataclass(frozen=True)
class FloatActivationSpec:
    """A float activation: relu (exact on any input); anything else (softmax, sigmoid, tanh, ...) stays a float
    Keras activation, reported as not bit-exact, unless a float policy quantizes it: QSoftmax for softmax and a
    QUnaryFunctionLUT (a table between a quantized input and a quantized output) for the others."""

    activation: str

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        if self.activation == 'relu':
            t = materialize(inputs[0], ctx)
            ctx.ref(name, TensorRef(name))
            return Tensor(keras.layers.ReLU(name=name)(t.value), name, quantized=t.quantized)
        if ctx.policy is not None and not ctx.policy.dummy:
            return self._quantized(name, inputs[0], ctx)
        t = materialize(inputs[0], ctx)
        layer = keras.layers.Activation(self.activation, name=name)
        ctx.inexact[name] = f'float {self.activation}'
        ctx.note(name, f'float {self.activation}: kept float (not bit-exact, not deployable as such)')
        ctx.ref(name, TensorRef(name))
        return Tensor(layer(t.value), name)

    def _quantized(self, name: str, t: Tensor, ctx: BuildContext) -> Tensor:
        from hgq.layers import QSoftmax, QUnaryFunctionLUT

        policy = ctx.policy or FloatPolicy()
        iq, enable_iq = take_input_quantizer(t, ctx, name)
        if iq is None and not enable_iq:  # already quantized upstream: the table still needs an input format
            iq, enable_iq = policy.activation_format(), True
        ctx.inexact[name] = f'{self.activation} of a float source, quantized'
        if self.activation == 'softmax':
            layer = QSoftmax(iq_conf=quantizer_config(iq, 'datalane'), enable_iq=True, name=name)
            ctx.note(name, f'QSoftmax, input {iq} (integer bits from calibration), HGQ2\'s default exp/inverse tables')
        else:
            out = policy.activation_format()
            layer = QUnaryFunctionLUT(self.activation, iq_conf=quantizer_config(iq, 'datalane'), oq_conf=quantizer_config(out, 'datalane'), name=name)
            ctx.note(name, f'QUnaryFunctionLUT({self.activation}): input {iq}, output {out} (integer bits from calibration)')
        ctx.ref(name, TensorRef(name))
        return Tensor(layer(t.value), name, quantized=True)


@dataclass(frozen=True, eq=False)
class WeightLayerSpec:
    """A dense or convolution layer: kernel and bias with their formats (None: float in the source), a float
    activation that is exact on fixed-point values (linear, relu), and an optional activation quantizer."""

    kind: str  # 'dense', 'conv1d', 'conv2d'
    args: dict[str, Any]  # units / filters, kernel_size, strides, padding, dilation_rate
    kernel: np.ndarray
    bias: np.ndarray | None
    kernel_fmt: Format | None
    bias_fmt: Format | None
    activation: str = 'linear'
    out_fmt: FixedFormat | None = None  # the quantizer given as activation=
    out_affine: tuple[float, float] | None = None  # its affine transform (hard sigmoid)
    float_rounded: bool = False  # the source's own float32 arithmetic rounds (non-power-of-two weight scale)

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        from hgq.layers import QConv1D, QConv2D, QDense

        (t,) = inputs
        iq, enable_iq = take_input_quantizer(t, ctx, name)
        kernel_fmt, bias_fmt = self.kernel_fmt, self.bias_fmt
        if self.kernel_fmt is None and ctx.policy is not None:
            ctx.inexact[name] = 'float source layer, quantized' if not ctx.policy.dummy else 'float source layer (dummy quantizers)'
            if not ctx.policy.dummy:
                kernel_fmt = ctx.policy.weight_format(self.kernel)
                bias_fmt = ctx.policy.weight_format(self.bias) if self.bias is not None else None
                ctx.note(name, f'float weights: {ctx.policy.bits}-bit per-channel formats covering their range')
        elif self.kernel_fmt is None:
            ctx.inexact[name] = 'float weights'
            ctx.note(name, 'float weights in the source: kept float (HGQ2 dummy quantizers); quantize before export')
        elif isinstance(self.kernel_fmt, FormatArray):
            ctx.note(name, 'data-dependent weight scale: weights quantized once as QKeras does, per-channel exact formats')
        if self.float_rounded:
            ctx.inexact[name] = 'non-power-of-two weight scale: QKeras sums these products in float32 and rounds'
            ctx.note(name, 'non-power-of-two weight scale: exact weights, but QKeras\'s own float32 sums round; matched to measured error')
        cls = {'dense': QDense, 'conv1d': QConv1D, 'conv2d': QConv2D}[self.kind]
        layer = cls(
            **self.args,
            activation=self.activation,
            use_bias=self.bias is not None,
            kq_conf=quantizer_config(kernel_fmt, 'weight'),
            bq_conf=quantizer_config(bias_fmt, 'bias') if self.bias is not None else None,
            iq_conf=quantizer_config(iq, 'datalane') if enable_iq else None,
            enable_iq=enable_iq,
            name=name,
        )
        out = layer(t.value)
        layer.kernel.assign(self.kernel.astype(np.float32))
        assign_formats(layer.kq, kernel_fmt)
        if self.bias is not None:
            layer.bias.assign(self.bias.astype(np.float32))
            assign_formats(layer.bq, bias_fmt)
        if self.out_fmt is None:
            ctx.ref(name, TensorRef(name))
            # a float source layer's wide sums are re-quantized by the next layer's policy input quantizer
            exact_sums = kernel_fmt is not None and self.kernel_fmt is not None and (enable_iq or t.quantized)
            return Tensor(out, name, quantized=exact_sums)
        if self.out_affine is not None:
            return quantize_now(Tensor(out, name), self.out_fmt, self.out_affine, name, f'{name}_activation', ctx)
        return Tensor(out, name, pending=self.out_fmt, pending_layer=f'{name}_activation', quantized=True)


@dataclass(frozen=True)
class MoveSpec:
    """A layer that only moves values (Flatten, Reshape, MaxPooling, ZeroPadding): a pending uniform quantizer
    commutes with it (quantizers are monotone and map 0 to 0), so the consumer still applies it."""

    keras_class: str
    args: tuple[tuple[str, Any], ...] = ()

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        (t,) = inputs
        out = getattr(keras.layers, self.keras_class)(**dict(self.args), name=name)(t.value)
        if t.pending is None:
            ctx.ref(name, TensorRef(name))
            return Tensor(out, name, quantized=t.quantized)
        ctx.ref(t.source, TensorRef(name, 'quantized-input', t.pending))
        return Tensor(out, name, pending=t.pending, pending_layer=t.pending_layer, quantized=t.quantized)


@dataclass(frozen=True)
class MergeSpec:
    """Add / Subtract / Multiply (HGQ2 QAdd / QSubtract / QMultiply, each input quantized by its own iq when every
    input has a pending quantizer) or Concatenate (Keras; pending inputs materialised)."""

    op: str  # 'add', 'subtract', 'multiply' or 'concatenate'
    axis: int = -1

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras
        from hgq.layers import QAdd, QMultiply, QSubtract

        if self.op == 'concatenate':
            ts = [materialize(t, ctx) for t in inputs]
            out = keras.layers.Concatenate(axis=self.axis, name=name)([t.value for t in ts])
            ctx.ref(name, TensorRef(name))
            return Tensor(out, name, quantized=all(t.quantized for t in ts))
        cls = {'add': QAdd, 'subtract': QSubtract, 'multiply': QMultiply}[self.op]
        if all(t.pending is not None for t in inputs):
            confs = [quantizer_config(take_input_quantizer(t, ctx, name, i)[0], 'datalane') for i, t in enumerate(inputs)]
            layer = cls(iq_confs=confs, name=name)
        else:
            inputs = [materialize(t, ctx) for t in inputs]
            layer = cls(enable_iq=False, name=name)
        ctx.ref(name, TensorRef(name))
        return Tensor(layer([t.value for t in inputs]), name, quantized=all(t.quantized or t.pending for t in inputs))


Spec = InputSpec | QuantizeSpec | IdentitySpec | MoveSpec | FloatActivationSpec | WeightLayerSpec | MergeSpec


def _elements(tensor: Any) -> float:
    """Values per sample of a symbolic Keras tensor (its batch axis left out)."""
    return float(np.prod([d for d in tuple(tensor.shape)[1:] if d is not None], dtype=np.float64))


def build_model(graph: Any, specs: dict[str, Spec], ctx: BuildContext) -> Any:
    """The HGQ2 functional model for ``graph`` (a SourceGraph) given one spec per source layer."""
    import keras

    from hgqbridge.errors import SourceFileError

    tensors: dict[str, Tensor] = {}
    for layer in graph.layers:
        where = f'{graph.path}:{graph.name}/{layer.name} ({layer.class_name})'
        inputs = [tensors[n] for n in layer.inbound]
        for t in inputs:  # a per-element input quantizer allocates as many values as its input has
            ctx.limits.check('elements', _elements(t.value), f'the input of this layer ({tuple(t.value.shape)})', where)
        try:
            tensors[layer.name] = specs[layer.name].build(layer.name, inputs, ctx)
        except (ValueError, TypeError) as err:  # Keras/HGQ2 refusing a shape or argument the saved config implies
            raise SourceFileError(
                'the layer cannot be built from its saved config (its shapes or arguments do not fit the graph)',
                where=where, received=' '.join(str(err).split())[:300],
                fix='check that the file is an unmodified model saved by its framework',
            ) from None
        except RecursionError:
            raise SourceFileError('the model is too deep for Keras to build', where=where, fix='split it, or lower the number of layers') from None
        ctx.limits.check('elements', _elements(tensors[layer.name].value), f'the output of this layer ({tuple(tensors[layer.name].value.shape)})', where)
    outputs = [materialize(tensors[n], ctx) for n in graph.outputs]
    for name, t in zip(graph.outputs, outputs):
        ctx.ref(name, ctx.refs.get(t.source, TensorRef(t.source)))
    inputs = [tensors[n].value for n in graph.inputs]
    return keras.Model(inputs, [t.value for t in outputs], name=graph.name)
