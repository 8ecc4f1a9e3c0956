"""QKeras's data-dependent weight quantizers, emulated in float32 numpy exactly as QKeras 0.9.0 computes them.

``alpha='auto'`` / ``'auto_po2'`` (which QKeras applies silently to kernels saved with alpha=None) scale each
output channel by a factor computed from the weights themselves. The weights are static, so the importer
computes the quantized weights once, here, and gives HGQ2 a per-channel format under which they are exact
(``FormatArray.covering``). Every step mirrors qkeras/quantizers.py ``quantized_bits.__call__`` and
``_get_scale`` in float32, including the straight-through ``x + (xq - x)`` output; the round-trip tests
compare the result with QKeras's own outputs.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
EPS = F32(1e-7)  # keras.backend.epsilon()
LOG2 = F32(np.log(2.0))


def _po2(scale: np.ndarray) -> np.ndarray:
    """K.pow(2, round(log(scale + eps) / log(2))) in float32, rounding half to even like tf.math.round."""
    return np.power(F32(2.0), np.round(np.log(scale + EPS) / LOG2)).astype(F32)


def _axes(ndim: int) -> tuple[int, ...]:
    """_get_scaling_axis(None, ndim) for channels_last: every axis but the last (rank 1: per element)."""
    return tuple(range(ndim - 1))


def _least_squares(x: np.ndarray, z: np.ndarray, po2: bool) -> np.ndarray:
    axes = _axes(x.ndim)
    if axes:
        qx = np.mean(x * z, axis=axes, keepdims=True, dtype=F32)
        qq = np.mean(z * z, axis=axes, keepdims=True, dtype=F32)
    else:  # rank 1: QKeras skips the averaging, one scale per element
        qx, qq = x * z, z * z
    scale = (qx / (qq + EPS)).astype(F32)
    return _po2(scale) if po2 else scale


def auto_scaled_bits(w: np.ndarray, bits: int, integer: int, keep_negative: bool, alpha: str) -> np.ndarray:
    """quantized_bits(bits, integer, symmetric=1, keep_negative, alpha='auto'|'auto_po2') applied to w."""
    x0 = np.asarray(w, dtype=F32)
    m = F32(2.0 ** (bits - int(keep_negative)))
    m_i = F32(2.0**integer)
    x = x0 / m_i
    levels = F32((2 ** (bits - 1) - 1) * 2)
    axes = _axes(x.ndim) or (0,)
    scale = (np.max(np.abs(x), axis=axes, keepdims=True) * F32(2)) / levels
    half = F32(levels / 2)

    def codes(s: np.ndarray) -> np.ndarray:
        v = np.floor(np.abs(x) / s + F32(0.5))
        return (np.sign(x) * np.where(v < half, v, half)).astype(F32)

    z = codes(scale)
    if alpha == 'auto_po2':
        scale = _po2(scale)
        for _ in range(5):  # as QKeras: the final z comes from the last iteration's scale, not the updated one
            z = codes(scale)
            scale = _least_squares(x, z, po2=True)
    xq = (scale * m) * (m_i * z / m)
    anchor = m_i * x
    return (anchor + (xq - anchor)).astype(F32)


def scaled_bits(w: np.ndarray, bits: int, integer: int, symmetric: int, keep_negative: bool, alpha: float) -> np.ndarray:
    """quantized_bits with a numeric alpha: alpha * Q(w) (w itself is not divided by alpha)."""
    x = np.asarray(w, dtype=F32)
    k = int(keep_negative)
    m = F32(2.0 ** (bits - k))
    m_i = F32(2.0**integer)
    p = x * m / m_i
    xq = m_i * np.clip(np.round(p), F32(k * (-m + symmetric)), m - F32(1)) / m
    xq = F32(alpha) * xq.astype(F32)
    return (x + (xq - x)).astype(F32)


def po2(w: np.ndarray, bits: int, max_value: float | None, quadratic: bool, log2_rounding: str) -> np.ndarray:
    """quantized_po2 applied to w: sign(w) * 2^round(log2|w|) with QKeras's exponent range (0 maps to +2^min)."""
    need_sign = 1 if max_value is None or max_value > 1 else 0
    effective = bits - 1 - need_sign
    min_exp, max_exp = -(2**effective), 2**effective - 1
    if quadratic:
        max_exp = 2 * (max_exp // 2)
    x = np.asarray(w, dtype=F32)
    sign = np.sign(x)
    sign = sign + (F32(1) - np.abs(sign))
    x_abs = np.abs(x)
    x_filter = np.where(x_abs < EPS, EPS, x_abs)
    if max_value is not None:
        x_filter = np.where(x_filter >= F32(max_value), F32(max_value), x_filter)
    x_in = np.sqrt(x_filter) if quadratic else x_filter
    y = (np.log(x_in) / LOG2).astype(F32)
    e = np.floor(y) if log2_rounding == 'floor' else np.round(y)
    exponent = F32(2 if quadratic else 1) * np.clip(y + (e - y), F32(min_exp), F32(max_exp))
    exponent = np.where(x_abs < EPS, F32(min_exp), exponent)
    xq = (sign * np.power(F32(2.0), exponent)).astype(F32)
    return (x + (xq - x)).astype(F32)
