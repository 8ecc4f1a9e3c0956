"""Whether the Keras model's float32 arithmetic is exact: the bound behind the ``float32-sums`` rule.

An HGQ2 model computes in float32 (24 significant bits); the firmware (hls4ml's ap_fixed accumulators, da4ml's
integer adders) computes exactly. The two agree on every input only if every product and every partial sum the
Keras layer forms is a float32 number, whatever the summation order. Every term of output channel ``c`` is a
multiple of ``2^-F_c`` (``F_c``: the largest fractional bits of an input element plus those of the weight's own
value, or of the bias's value) and every partial sum is bounded by ``B_c = sum_j max|x_j| |w_jc| + |b_c|``, so
the layer is exact when ``B_c 2^F_c <= 2^24`` for every channel. ``max|x_j| <= 2^i_j`` holds for every overflow
mode, so the bound holds on any input, not just on data at hand. The actual quantized weights are used (not
their formats), which keeps the bound tight.

``Range`` is what is known about a layer's output values: the largest magnitude and the fractional bits; it is
propagated through the model in layer order, None where it is unknown (an unquantized input, a table layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqbridge.inspect import QuantizerInfo

#: float32's significand: integers up to 2^24 are exact.
FLOAT32_BITS = 24


@dataclass(frozen=True)
class Range:
    """Per-channel (last axis) or scalar: ``amax`` bounds |value|, every value is a multiple of ``2^-frac``."""

    amax: np.ndarray
    frac: np.ndarray
    signed: bool = True  # False: no value is negative

    @staticmethod
    def of(info: QuantizerInfo) -> Range:
        return Range(np.ldexp(1.0, info.i.astype(np.int64)), info.f.astype(np.int64), bool(info.k.max() > 0))

    def per_channel(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(amax, frac) as vectors over the last axis (max over every other axis), length ``n``."""
        a, f = (np.asarray(v) for v in (self.amax, self.frac))
        if a.ndim == 0 or a.shape[-1] != n:
            return np.full(n, float(a.max())), np.full(n, int(f.max()))
        return a.reshape(-1, n).max(axis=0), f.reshape(-1, n).max(axis=0)

    def widest(self) -> Range:
        return Range(np.asarray(float(np.max(self.amax))), np.asarray(int(np.max(self.frac))), self.signed)


def frac_bits(values: np.ndarray) -> np.ndarray:
    """Fractional bits of each value itself (the position of its lowest set bit); very negative for zeros."""
    v = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(v)
    m = np.abs(mantissa * 2.0**53).astype(np.int64)
    low = np.where(m > 0, m & -m, 1)
    trailing = np.log2(low.astype(np.float64)).astype(np.int64)
    return np.where(v != 0, 53 - exponent - trailing, -(1 << 20))


def significant_bits(bound: np.ndarray, frac: np.ndarray) -> int:
    """The most significant bits any channel needs: ceil(log2(bound * 2^frac)), 0 for all-zero channels."""
    scaled = np.ldexp(np.asarray(bound, dtype=np.float64), np.clip(np.asarray(frac), -2000, 2000).astype(np.int64))
    scaled = scaled[scaled > 0]
    return int(np.ceil(np.log2(scaled)).max()) if scaled.size else 0


def matmul_bound(x: Range, kernel: np.ndarray, bias: np.ndarray | None, groups: int = 1) -> tuple[Range, int]:
    """A dense or convolution layer (kernel ``(..., c_in / groups, c_out)``): its output range and the
    significant bits its float32 sums need."""
    k = np.asarray(kernel, dtype=np.float64)
    k = k.reshape(-1, k.shape[-2], k.shape[-1])  # (taps, c_in / groups, c_out)
    if groups == 1:
        amax, frac = x.per_channel(k.shape[1])
    else:  # each output channel reads its group's inputs: the widest input channel stands for all
        amax, frac = x.widest().per_channel(k.shape[1])
    nonzero = k != 0
    bound = np.einsum('tic,i->c', np.abs(k), amax)
    terms = np.where(nonzero, frac[None, :, None] + frac_bits(k), -(1 << 20))
    top = terms.reshape(-1, k.shape[-1]).max(axis=0)
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64).reshape(-1)
        bound = bound + np.abs(b)
        top = np.maximum(top, frac_bits(b))
    return Range(bound, top), significant_bits(bound, top)


def scale_bound(x: Range, scale: np.ndarray, offset: np.ndarray) -> tuple[Range, int]:
    """A batch normalization ``x * scale + offset`` per channel."""
    s, b = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (scale, offset))
    amax, frac = x.per_channel(s.size)
    bound = amax * np.abs(s) + np.abs(b)
    top = np.maximum(np.where(s != 0, frac + frac_bits(s), -(1 << 20)), frac_bits(b))
    return Range(bound, top), significant_bits(bound, top)


def sum_bound(xs: list[Range]) -> tuple[Range, int]:
    """An element-wise sum or difference of several inputs."""
    widest = [x.widest() for x in xs]
    bound = np.asarray(sum(float(x.amax) for x in widest))
    frac = np.asarray(max(int(x.frac) for x in widest))
    return Range(bound, frac), significant_bits(bound, frac)


def pool_areas(layer: Any) -> tuple[int, ...]:
    """The cell counts a pooling window covers, over every output position ('same' windows at the edges cover
    fewer); a global pooling covers every position; () for other layers."""
    import itertools

    from keras.src.layers.pooling.base_global_pooling import BaseGlobalPooling
    from keras.src.layers.pooling.base_pooling import BasePooling

    if isinstance(layer, BaseGlobalPooling):
        return (int(np.prod(layer.input.shape[1:-1])),)
    if not isinstance(layer, BasePooling):
        return ()
    per_axis = []
    for n, p, s in zip(layer.input.shape[1:-1], layer.pool_size, layer.strides):
        if layer.padding == 'valid':
            per_axis.append({int(p)})
            continue
        out = -(-int(n) // int(s))
        before = max((out - 1) * s + p - n, 0) // 2
        per_axis.append({min(j * s - before + p, n) - max(j * s - before, 0) for j in range(out)})
    return tuple(sorted({int(np.prod(c)) for c in itertools.product(*per_axis)}))


def pool_bound(x: Range, areas: tuple[int, ...]) -> tuple[Range | None, int]:
    """An average pooling: a float32 sum of at most ``max(areas)`` inputs, then a division by the window's cell
    count, exact only when every count is a power of two (else the division rounds: unbounded)."""
    if not areas or any(a & (a - 1) for a in areas):
        return None, -1
    amax, frac = np.asarray(x.amax, dtype=np.float64), np.asarray(x.frac)
    bits = significant_bits(amax * max(areas), frac)
    return Range(amax, frac + int(max(areas)).bit_length() - 1, x.signed), bits


#: HGQ2's and Keras's average poolings (their float32 sum, then the division by the cell count).
AVERAGE_POOLING = frozenset(
    f'{q}{kind}Pooling{d}D' for q in ('Q', '') for kind in ('Average', 'GlobalAverage') for d in (1, 2, 3)
)


def layer_range(layer: Any, cls: str, x: list[Range | None], quantizers: dict[str, Any]) -> tuple[Range | None, int]:
    """(output range, float32 bits needed; -1: cannot be bounded, 0: no float32 arithmetic) for one layer, from
    the ranges of its inputs after its own input quantizers (already applied in ``x``)."""
    if cls in ('QDense', 'QConv1D', 'QConv2D', 'QConv3D', 'QEinsumDense', 'QBatchNormDense'):
        if x[0] is None:
            return None, -1
        bias = getattr(layer, 'qbias', None) if getattr(layer, 'bias', None) is not None else None
        groups = int(getattr(layer, 'groups', 1) or 1)
        return matmul_bound(x[0], np.asarray(layer.qkernel), None if bias is None else np.asarray(bias), groups)
    if cls == 'QBatchNormalization':
        if x[0] is None:
            return None, -1
        scale, offset = (np.asarray(v) for v in layer.qscaler_and_qoffset)
        return scale_bound(x[0], scale, offset)
    if cls in ('QAdd', 'QSubtract', 'Add', 'Subtract'):
        if any(r is None for r in x):
            return None, -1
        return sum_bound([r for r in x if r is not None])
    if cls in AVERAGE_POOLING:
        return (None, -1) if x[0] is None else pool_bound(x[0], pool_areas(layer))
    if cls in ('Concatenate', 'QMaximum', 'QMinimum', 'Maximum', 'Minimum'):
        if any(r is None for r in x):
            return None, 0

        return sum_bound([r for r in x if r is not None])[0].widest(), 0  # a safe (wider) bound
    return None, 0


#: Layers whose output values are their input's (a subset, rearranged, or clipped from below by 0).
PASS_THROUGH = frozenset(
    ('Flatten', 'Reshape', 'Dropout', 'MaxPooling1D', 'MaxPooling2D', 'ZeroPadding1D', 'ZeroPadding2D', 'Permute', 'ReLU')
)


def propagate(
    layer: Any, cls: str, inputs: list[Range | None], quantizers: dict[str, QuantizerInfo | None]
) -> tuple[Range | None, int]:
    """Apply the layer's own quantizers to its input ranges, then ``layer_range``; a layer ending in an output
    quantizer (or being one) produces that quantizer's range."""
    if 'self' in quantizers:
        info = quantizers['self']
        return (Range.of(info) if info is not None else None), 0
    x = list(inputs)
    for n in range(len(x)):
        role = 'input' if 'input' in quantizers and len(x) == 1 else f'input{n}'
        if role in quantizers:
            info = quantizers[role]
            x[n] = Range.of(info) if info is not None else None
    config: dict[str, Any] = layer.get_config() if cls == 'Activation' else {}
    activation = config.get('activation')
    if cls in PASS_THROUGH or activation in ('relu', 'linear'):
        out, bits = (x[0] if x else None), 0
        if out is not None and (cls == 'ReLU' or activation == 'relu'):
            out = Range(out.amax, out.frac, False)  # a ReLU's output is never negative
    else:
        out, bits = layer_range(layer, cls, x, quantizers)
    if 'output' in quantizers:
        info = quantizers['output']
        out = Range.of(info) if info is not None else None
    return out, bits
