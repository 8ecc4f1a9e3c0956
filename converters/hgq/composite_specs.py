"""Specs for layers that need HGQ2's dedicated classes or several layers: separable convolutions, batch
normalization, average pooling, two-step quantizers, chains, recurrent layers, leaky ReLU.

Like the specs in ``specs.py`` they are pure data until ``build`` adds genuine ``hgq.layers`` to the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.numerics import bn_scale_offset, is_pow2, reciprocal_exact

from .specs import Spec
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


@dataclass(frozen=True, eq=False)
class SeparableSpec:
    """A depthwise convolution (HGQ2 QConv*D with groups, no bias) whose output feeds, unquantized as in
    QKeras, a 1x1 pointwise convolution carrying the bias and the activation. The source layer's tensor is
    the pointwise output."""

    depthwise: Spec
    pointwise: Spec

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        inner = self.depthwise.build(f'{name}_depthwise', inputs, ctx)
        return self.pointwise.build(name, [Tensor(inner.value, name, quantized=inner.quantized)], ctx)


@dataclass(frozen=True, eq=False)
class BatchNormSpec:
    """Inference batch normalization ``x * inv + (beta - mean * inv)``, ``inv = gamma / sqrt(var + eps)``, with
    the source's (already quantized) parameters. HGQ2's QBatchNormalization gets gamma = inv, beta = offset,
    mean 0, variance 1, epsilon 0, so it multiplies by exactly the float32 scale and offset the source uses;
    its kernel and bias quantizers get per-channel formats holding them exactly. A float scale that is not a
    power of two makes the source's own float32 arithmetic round: such a layer is measured, not required exact."""

    gamma: np.ndarray | None
    beta: np.ndarray | None
    mean: np.ndarray
    variance: np.ndarray
    epsilon: float
    axis: int = -1  # must be the last axis; Keras 2 saves it resolved (e.g. [3])

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        return bn_scale_offset(self.gamma, self.beta, self.mean, self.variance, self.epsilon)

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        from hgq.layers import QBatchNormalization

        (t,) = inputs
        rank = len(t.value.shape)
        if self.axis not in (-1, rank - 1):
            raise LayerProblem(
                f'batch normalization over axis {self.axis} of a rank-{rank} tensor is not converted',
                'normalize the last (channels) axis',
            )
        iq, enable_iq = take_input_quantizer(t, ctx, name)
        inv, offset = self.scale_offset()
        if ctx.policy is not None:  # a float source: policy formats (or dummy quantizers), never the 24-bit exact ones
            kq_fmt = None if ctx.policy.dummy else ctx.policy.weight_format(inv)
            bq_fmt = None if ctx.policy.dummy else ctx.policy.weight_format(offset)
        else:
            kq_fmt, bq_fmt = (FormatArray(*(getattr(FormatArray.covering(v[None]), a)[0] for a in 'kif')) for v in (inv, offset))
        layer = QBatchNormalization(
            epsilon=0.0,
            kq_conf=quantizer_config(kq_fmt, 'weight'),
            bq_conf=quantizer_config(bq_fmt, 'bias'),
            iq_conf=quantizer_config(iq, 'datalane') if enable_iq else None,
            enable_iq=enable_iq,
            name=name,
        )
        out = layer(t.value)
        layer.bn_gamma.assign(inv)
        layer.bn_beta.assign(offset)
        layer.moving_mean.assign(np.zeros_like(inv))
        layer.moving_variance.assign(np.ones_like(inv))
        assign_formats(layer.kq, kq_fmt)
        assign_formats(layer.bq, bq_fmt)
        exact_scale = is_pow2(inv) and ctx.policy is None
        if ctx.policy is not None:
            ctx.inexact[name] = 'float source batch normalization' + (
                ' (dummy quantizers)' if ctx.policy.dummy else ', quantized'
            )
        elif not exact_scale:
            ctx.inexact[name] = 'batch normalization with a non-power-of-two float32 scale: the source rounds in float32'
            ctx.note(
                name,
                "batch normalization: exact float32 scale and offset, but the source's float32 products round; matched to measured error",
            )
        ctx.ref(name, TensorRef(name))
        return Tensor(out, name, quantized=bool(exact_scale) and (enable_iq or t.quantized))


@dataclass(frozen=True)
class AveragePoolSpec:
    """Average pooling (HGQ2 QAveragePooling*D / QGlobalAveragePooling*D, input quantized by its iq). A window
    area that is not a power of two, or 'same' padding (border windows divide by their valid count), divides
    in float32 in the source: measured, not required exact (``float_divide`` says why; for a global pooling it
    is decided here, from the input shape). ``average_fmt``: QKeras's average_quantizer, which must keep
    1/area exact. ``out_fmt``: a quantizer given as activation=."""

    rank: int  # 1 or 2
    args: tuple[tuple[str, Any], ...]  # pool_size, strides, padding; empty for a global pooling
    global_pool: bool = False
    float_divide: str = ''
    out_fmt: FixedFormat | None = None
    average_fmt: Any = None

    def _global_divide(self, shape: tuple[int, ...]) -> str:
        area = int(np.prod(shape[1:-1]))
        if self.average_fmt is not None and reciprocal_exact(self.average_fmt.quantize, area) * area != 1.0:
            raise LayerProblem(
                f'average_quantizer {self.average_fmt} does not hold 1/{area} exactly, so QKeras scales the average by a '
                'factor that is not 1',
                'give average_quantizer enough fractional bits to hold 1/pool_area, or remove it',
            )
        return f'a pool area of {area} is not a power of two: the source divides in float32' if area & (area - 1) else ''

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        from hgq.layers import QAveragePooling1D, QAveragePooling2D, QGlobalAveragePooling1D, QGlobalAveragePooling2D

        (t,) = inputs
        why = self._global_divide(tuple(t.value.shape)) if self.global_pool else self.float_divide
        iq, enable_iq = take_input_quantizer(t, ctx, name)
        pools = {
            (False, 1): QAveragePooling1D,
            (False, 2): QAveragePooling2D,
            (True, 1): QGlobalAveragePooling1D,
            (True, 2): QGlobalAveragePooling2D,
        }
        layer = pools[self.global_pool, self.rank](
            **dict(self.args), iq_conf=quantizer_config(iq, 'datalane') if enable_iq else None, enable_iq=enable_iq, name=name
        )
        out = layer(t.value)
        if why:
            ctx.inexact[name] = why
            ctx.note(name, f'{why}; matched to measured error')
        quantized = not why and (enable_iq or t.quantized)
        if self.out_fmt is None:
            ctx.ref(name, TensorRef(name))
            return Tensor(out, name, quantized=quantized)
        return Tensor(out, name, pending=self.out_fmt, pending_layer=f'{name}_activation', quantized=True)


@dataclass(frozen=True)
class ClippedQuantizeSpec:
    """``min(Q(x), top)``: a ``hgq.layers.Quantizer`` then a Keras ``ReLU(max_value=top)`` (QKeras
    quantized_relu with use_sigmoid, whose top value lies half a step below the next grid point)."""

    fmt: FixedFormat
    top: float

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        q = quantize_now(materialize(inputs[0], ctx), self.fmt, None, f'{name}_q', f'{name}_q', ctx)
        out = keras.layers.ReLU(max_value=self.top, name=name)(q.value)
        ctx.ref(name, TensorRef(name))
        return Tensor(out, name, quantized=True)


@dataclass(frozen=True)
class LeakyQuantizeSpec:
    """QKeras's leaky quantized_relu, whose negative side rounds on a grid ``1/slope`` times coarser and stops
    at ``-slope * 2^integer``: ``Q_pos(x) + ReLU(max_value=0, negative_slope=slope)(Q_neg(x))`` with two
    ``hgq.layers.Quantizer`` (Q_pos unsigned, so 0 for x < 0) and an HGQ2 QAdd."""

    pos: FixedFormat
    neg: FixedFormat
    slope: float

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras
        from hgq.layers import QAdd

        t = materialize(inputs[0], ctx)
        pos = quantize_now(t, self.pos, None, f'{name}_pos', f'{name}_pos', ctx)
        neg = quantize_now(t, self.neg, None, f'{name}_neg', f'{name}_neg', ctx)
        neg = keras.layers.ReLU(max_value=0.0, negative_slope=self.slope, name=f'{name}_slope')(neg.value)
        out = QAdd(enable_iq=False, name=name)([pos.value, neg])
        ctx.ref(name, TensorRef(name))
        return Tensor(out, name, quantized=True)


@dataclass(frozen=True, eq=False)
class ChainSpec:
    """Two specs one after the other (a dense or convolution layer whose ``activation=`` needs a two-step
    quantizer): the first keeps the source layer's name, the second's layers are named ``<name>_activation``,
    and the source layer's tensor is the second's output."""

    first: Spec
    second: Spec

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        inner = self.first.build(name, inputs, ctx)
        ctx.refs.pop(name, None)
        out = self.second.build(f'{name}_activation', [inner], ctx)
        if f'{name}_activation' in ctx.refs:  # else a pending quantizer: the consumer records where it went
            ctx.refs[name] = ctx.refs[f'{name}_activation']
        return Tensor(out.value, name, out.pending, out.pending_layer, out.quantized)


@dataclass(frozen=True, eq=False)
class SimpleRNNSpec:
    """QKeras QSimpleRNN: ``h_t = A(x_t Qk(W) + Qb(b) + Qs(h_{t-1}) Qr(U))`` with a quantizer activation A.
    HGQ2's QSimpleRNN computes exactly this with A as its pre-activation quantizer (``paq``), Qs as its state
    quantizer (``sq``, off when the source has none) and a linear activation."""

    units: int
    kernel: np.ndarray
    recurrent: np.ndarray
    bias: np.ndarray | None
    kernel_fmt: Format | None
    recurrent_fmt: Format | None
    bias_fmt: Format | None
    activation_fmt: FixedFormat
    state_fmt: FixedFormat | None
    return_sequences: bool = False
    go_backwards: bool = False

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        from hgq.layers import QSimpleRNN

        (t,) = inputs
        iq, enable_iq = take_input_quantizer(t, ctx, name)
        layer = QSimpleRNN(
            self.units,
            activation='linear',
            use_bias=self.bias is not None,
            return_sequences=self.return_sequences,
            go_backwards=self.go_backwards,
            iq_conf=quantizer_config(iq, 'datalane') if enable_iq else None,
            enable_iq=enable_iq,
            kq_conf=quantizer_config(self.kernel_fmt, 'weight'),
            rkq_conf=quantizer_config(self.recurrent_fmt, 'weight'),
            bq_conf=quantizer_config(self.bias_fmt, 'bias') if self.bias is not None else None,
            paq_conf=quantizer_config(self.activation_fmt, 'datalane'),
            enable_sq=self.state_fmt is not None,
            sq_conf=quantizer_config(self.state_fmt, 'datalane') if self.state_fmt is not None else None,
            name=name,
        )
        out = layer(t.value)
        cell = layer.cell
        cell.kernel.assign(self.kernel.astype(np.float32))
        cell.recurrent_kernel.assign(self.recurrent.astype(np.float32))
        assign_formats(cell.kq, self.kernel_fmt)
        assign_formats(cell.rkq, self.recurrent_fmt)
        if self.bias is not None:
            cell.bias.assign(self.bias.astype(np.float32))
            assign_formats(cell.bq, self.bias_fmt)
        if self.kernel_fmt is None or self.recurrent_fmt is None:
            ctx.inexact[name] = 'float weights'
            ctx.note(name, 'float weights in the source: kept float (HGQ2 dummy quantizers); quantize before export')
        ctx.ref(name, TensorRef(name))
        return Tensor(out, name, quantized=True)


@dataclass(frozen=True)
class LeakyReluSpec:
    """A float leaky ReLU (ONNX LeakyRelu): Keras ``LeakyReLU``; exact on fixed-point inputs when the slope is a
    power of two (the product only shifts), otherwise the float product is measured, not required exact."""

    slope: float

    def build(self, name: str, inputs: list[Tensor], ctx: BuildContext) -> Tensor:
        import keras

        t = materialize(inputs[0], ctx)
        exact = self.slope > 0 and is_pow2(self.slope)
        if not exact:
            ctx.inexact[name] = f'leaky ReLU slope {self.slope} is not a power of two'
        ctx.ref(name, TensorRef(name))
        return Tensor(
            keras.layers.LeakyReLU(negative_slope=self.slope, name=name)(t.value), name, quantized=exact and t.quantized
        )
