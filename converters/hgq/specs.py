"""Specs for single layers: what a handler returns for one source layer, pure data until ``build`` adds genuine
``hgq.layers`` (or the Keras layer that moves values) to the model. Specs made of several layers are in
``composite_specs.py``; how quantizers travel between them is in ``tensors.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hgqbridge.fixed import FixedFormat, FormatArray

from .policy import FloatPolicy
from .tensors import (
    BuildContext,
    Format,
    Tensor,
    TensorRef,
    assign_formats,
    materialize,
    quantize_now,
    quantizer_config,
    take_input_quantizer,
)


class Spec(Protocol):
    """What every handler returns: a description of the HGQ2 layers for one source layer."""

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor: ...


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int | None, ...]

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        return Tensor(keras.Input(self.shape[1:], name=name), name, model_input=True)


@dataclass(frozen=True)
class QuantizeSpec:
    """A quantizer on a tensor (QKeras QActivation with a fixed-point quantizer; per element, a FormatArray: an
    HGQ1 quantizer). One with an affine transform after it (hard sigmoid) becomes its own ``hgq.layers.Quantizer``;
    a plain one waits for the next layer's iq."""

    fmt: Format
    affine: tuple[float, float] | None = None
    #: the source computes ``x + (xq - x)`` in float32, which is the quantized value only for |x| below this bound
    exact_below: float | None = None

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        (t,) = inputs
        t = materialize(t, ctx)
        if self.exact_below is not None:
            ctx.exact_below[name] = self.exact_below
            ctx.note(
                name,
                f"exact for inputs |x| < {self.exact_below:g} (2^{round(np.log2(self.exact_below))}): beyond, the source's "
                'float32 x + (xq - x) returns a float32 neighbour of x instead of the quantized value',
            )
        if self.affine is not None:
            return quantize_now(t, self.fmt, self.affine, name, name, ctx)
        return Tensor(t.value, name, pending=self.fmt, pending_layer=name, quantized=t.quantized)


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
    Keras activation, reported as not bit-exact, unless a float policy quantizes it: a QUnaryFunctionLUT (a
    table between a quantized input and a quantized output). Softmax stays float even then, with the reason."""

    activation: str

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        if self.activation == 'relu' and ctx.policy is not None and not ctx.policy.dummy and ctx.policy.overflow == 'SAT':
            # a float source's ReLU becomes an unsigned saturating quantizer, max(0, x) quantized, applied by the
            # next layer's input quantizer (integer bits from calibration): one quantizer every target computes
            t = materialize(inputs[0], ctx)
            fmt = FixedFormat(0, 3, ctx.policy.bits - 3, 'RND', 'SAT')
            ctx.note(
                name, f'ReLU of a float source: an unsigned saturating quantizer {fmt} (max(0, x), integer bits from calibration)'
            )
            return Tensor(t.value, name, pending=fmt, pending_layer=name, quantized=True)
        if self.activation == 'relu':
            t = materialize(inputs[0], ctx)
            ctx.ref(name, TensorRef(name))
            return Tensor(keras.layers.ReLU(name=name)(t.value), name, quantized=t.quantized)
        quantize = ctx.policy is not None and not ctx.policy.dummy
        if quantize and self.activation != 'softmax':
            return self._quantized(name, inputs[0], ctx)
        t = materialize(inputs[0], ctx)
        layer = keras.layers.Activation(self.activation, name=name)
        ctx.inexact[name] = f'float {self.activation}'
        if quantize:  # softmax of a float source
            ctx.note(
                name,
                'softmax kept float: no quantized softmax is proven bit-exact in firmware (QSoftmax is a table layer); '
                'as the output head it is not exported, the firmware outputs the logits (argmax unchanged)',
            )
        else:
            ctx.note(name, f'float {self.activation}: kept float (not bit-exact, not deployable as such)')
        ctx.ref(name, TensorRef(name))
        return Tensor(layer(t.value), name)

    def _quantized(self, name: str, t: Tensor, ctx: BuildContext) -> Tensor:
        from hgq.layers import QUnaryFunctionLUT

        policy = ctx.policy or FloatPolicy()
        iq, enable_iq = take_input_quantizer(t, ctx, name)
        if iq is None and not enable_iq:  # already quantized upstream: the table still needs an input format
            iq, enable_iq = policy.activation_format(), True
        ctx.inexact[name] = f'{self.activation} of a float source, quantized'
        out = policy.activation_format()
        layer = QUnaryFunctionLUT(
            self.activation, iq_conf=quantizer_config(iq, 'datalane'), oq_conf=quantizer_config(out, 'datalane'), name=name
        )
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
    out_fmt: Format | None = None  # the quantizer given as activation= (HGQ1: its per-element pre-activation one)
    out_affine: tuple[float, float] | None = None  # its affine transform (hard sigmoid)
    float_rounded: bool = False  # the source's own float32 arithmetic rounds (non-power-of-two weight scale)
    #: the source's activation= computes ``z + (zq - z)`` in float32: the quantized value only for sums |z| below this
    exact_below: float | None = None

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        from hgq.layers import QConv1D, QConv2D, QDense

        (t,) = inputs
        iq, enable_iq = take_input_quantizer(t, ctx, name)
        kernel_fmt, bias_fmt = self.kernel_fmt, self.bias_fmt
        if self.kernel_fmt is None and ctx.policy is not None:
            ctx.inexact[name] = (
                'float source layer, quantized' if not ctx.policy.dummy else 'float source layer (dummy quantizers)'
            )
            if not ctx.policy.dummy:
                kernel_fmt = ctx.policy.weight_format(self.kernel)
                bias_fmt = ctx.policy.weight_format(self.bias) if self.bias is not None else None
                ctx.note(name, f'float weights: {ctx.policy.bits}-bit per-channel formats covering their range')
        elif self.kernel_fmt is None:
            ctx.inexact[name] = 'float weights'
            ctx.note(name, 'float weights in the source: kept float (HGQ2 dummy quantizers); quantize before export')
        elif isinstance(self.kernel_fmt, FormatArray):
            ctx.note(
                name,
                'weights quantized once as the source quantizes them, with per-channel (or per-element) formats holding them exactly',
            )
        if self.float_rounded:
            ctx.inexact[name] = 'non-power-of-two weight scale: QKeras sums these products in float32 and rounds'
            ctx.note(
                name,
                "non-power-of-two weight scale: exact weights, but QKeras's own float32 sums round; matched to measured error",
            )
        if self.exact_below is not None and self.out_affine is None:
            ctx.note(
                name,
                f"exact while the layer's sums stay below |z| < {self.exact_below:g} (2^{round(np.log2(self.exact_below))}): "
                "beyond, the source's float32 z + (zq - z) in activation= returns a float32 neighbour of z",
            )
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
        if enable_iq:
            assign_formats(layer.iq, iq)
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
    commutes with it (quantizers are monotone and map 0 to 0), so the consumer still applies it. A pending
    per-element quantizer (FormatArray) moves with the values through Flatten, Reshape and Permute (its formats
    are reshaped or transposed the same way) and is applied here, as a Quantizer layer, before anything else."""

    keras_class: str
    args: tuple[tuple[str, Any], ...] = ()

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        (t,) = inputs
        moved = self._moved(t.pending, tuple(t.value.shape[1:])) if isinstance(t.pending, FormatArray) else t.pending
        if moved is None:
            t = materialize(t, ctx)
        out = getattr(keras.layers, self.keras_class)(**dict(self.args), name=name)(t.value)
        if t.pending is None:
            ctx.ref(name, TensorRef(name))
            return Tensor(out, name, quantized=t.quantized, model_input=t.model_input)
        ctx.ref(t.source, TensorRef(name, 'quantized-input', t.pending))
        return Tensor(out, name, pending=moved, pending_layer=t.pending_layer, quantized=t.quantized)

    def _moved(self, fmt: FormatArray, shape: tuple[int, ...]) -> FormatArray | None:
        """The per-element formats of the moved values, or None where they do not move with them (pooling)."""
        args = dict(self.args)
        moves = {
            'Flatten': lambda a: a.reshape(1, -1),
            'Reshape': lambda a: a.reshape(1, *args.get('target_shape', ())),
            'Permute': lambda a: np.transpose(a, (0, *args.get('dims', ()))),
        }
        move = moves.get(self.keras_class)
        if move is None:
            return None
        k, i, f = (move(np.broadcast_to(v, (1, *shape))) for v in (fmt.k, fmt.i, fmt.f))
        return FormatArray(k, i, f, fmt.round, fmt.overflow)


@dataclass(frozen=True)
class MergeSpec:
    """Add / Subtract / Multiply / Maximum / Minimum / Average (HGQ2 QAdd / QSubtract / QMultiply / QMaximum /
    QMinimum / QAveragePow2, each input quantized by its own iq when every
    input has a pending quantizer) or Concatenate (Keras; pending inputs materialised)."""

    op: str  # 'add', 'subtract', 'multiply', 'maximum', 'minimum', 'average' or 'concatenate'
    axis: int = -1

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras
        from hgq.layers import QAdd, QAveragePow2, QMaximum, QMinimum, QMultiply, QSubtract

        if self.op == 'concatenate':
            ts = [materialize(t, ctx) for t in inputs]
            out = keras.layers.Concatenate(axis=self.axis, name=name)([t.value for t in ts])
            ctx.ref(name, TensorRef(name))
            return Tensor(out, name, quantized=all(t.quantized for t in ts))
        ops = {'add': QAdd, 'subtract': QSubtract, 'multiply': QMultiply, 'maximum': QMaximum, 'minimum': QMinimum}
        cls = {**ops, 'average': QAveragePow2}[self.op]  # average: 2^k inputs only (the handler refuses others)
        fmts: list[Format | None] = []
        if all(t.pending is not None for t in inputs):
            fmts = [take_input_quantizer(t, ctx, name, i)[0] for i, t in enumerate(inputs)]
            layer = cls(iq_confs=[quantizer_config(fmt, 'datalane') for fmt in fmts], name=name)
        else:
            inputs = [materialize(t, ctx) for t in inputs]
            layer = cls(enable_iq=False, name=name)
        ctx.ref(name, TensorRef(name))
        out = layer([t.value for t in inputs])
        for iq, fmt in zip(layer.iq if fmts else (), fmts):
            assign_formats(iq, fmt)
        return Tensor(out, name, quantized=all(t.quantized or t.pending is not None for t in inputs))
