"""QKeras's data-dependent weight quantizers, emulated in float32 numpy exactly as QKeras 0.9.0 computes them.

``alpha='auto'`` / ``'auto_po2'`` (which QKeras applies silently to kernels saved with alpha=None) scale each
output channel by a factor computed from the weights themselves. The weights are static, so the importer
computes the quantized weights once, here, and gives HGQ2 a per-channel format under which they are exact
(``FormatArray.covering``). Every step mirrors qkeras/quantizers.py ``quantized_bits.__call__`` and
``_get_scale`` in float32, including the straight-through ``x + (xq - x)`` output; the round-trip tests
compare the result with QKeras's own outputs.
"""

from __future__ import annotations

from typing import Any

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


def tf_mean(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """K.mean(x, axis=axes, keepdims=True) as QKeras computes it: TensorFlow's own float32 reduce_mean on the CPU.
    Its summation order (Eigen's vectorised, blocked reduction) is not numpy's pairwise one, and the float32 sums
    differ in the last bits; running the same kernel on the same shape reproduces QKeras's value exactly."""
    import tensorflow as tf

    with tf.device('/CPU:0'):
        return np.asarray(tf.reduce_mean(tf.constant(x, dtype=tf.float32), axis=list(axes), keepdims=True), dtype=F32)


def _least_squares(x: np.ndarray, z: np.ndarray, po2: bool) -> np.ndarray:
    axes = _axes(x.ndim)
    if axes:
        qx = tf_mean((x * z).astype(F32), axes)
        qq = tf_mean((z * z).astype(F32), axes)
    else:  # rank 1: QKeras skips the averaging, one scale per element
        qx, qq = x * z, z * z
    scale = np.asarray(qx / (qq + EPS), dtype=F32)
    return _po2(scale) if po2 else scale


def auto_scaled_bits(
    w: np.ndarray,
    bits: int,
    integer: int,
    keep_negative: bool,
    alpha: str,
    head: bool = False,
    frozen: np.ndarray | None = None,
) -> np.ndarray:
    """quantized_bits(bits, integer, symmetric=1, keep_negative, alpha='auto'|'auto_po2') applied to w.

    ``head``: QKeras's later code (HEAD, qkeras-v3) recomputes the codes with the final auto_po2 scale after the
    loop, where 0.9.0 keeps the codes of the last iteration. ``frozen``: a post_training_scale (HEAD/v3), used
    instead of the data-dependent scale."""
    x0 = np.asarray(w, dtype=F32)
    m = F32(2.0 ** (bits - int(keep_negative)))
    m_i = F32(2.0**integer)
    x = x0 / m_i
    levels = F32((2 ** (bits - 1) - 1) * 2)
    axes = _axes(x.ndim) or (0,)
    half = F32(levels / 2)

    def codes(s: np.ndarray) -> np.ndarray:
        with np.errstate(divide='ignore', invalid='ignore'):
            v = np.floor(np.abs(x) / s + F32(0.5))
        return (np.sign(x) * np.where(v < half, v, half)).astype(F32)

    if frozen is not None:
        scale = (np.asarray(frozen, dtype=F32) / m).astype(F32)
        z = codes(scale)
    else:
        with np.errstate(divide='ignore', invalid='ignore'):  # 1 bit: zero levels; QKeras's scale is inf, its codes 0
            scale = (np.max(np.abs(x), axis=axes, keepdims=True) * F32(2)) * (F32(1) / levels)  # Grappler: x / c -> x * (1/c)
        z = codes(scale)
        if alpha == 'auto_po2':
            scale = _po2(scale)
            for _ in range(5):  # 0.9.0: the final z comes from the last iteration's scale, not the updated one
                z = codes(scale)
                scale = _least_squares(x, z, po2=True)
            if head:
                z = codes(scale)
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
    exponent = _po2_exponent(np.abs(x), min_exp, max_exp, max_value, quadratic, log2_rounding)
    return _ste(x, _sign_one(x) * np.power(F32(2.0), exponent))


def ftz(x: np.ndarray) -> np.ndarray:
    """TensorFlow's CPU kernels run with flush-to-zero and denormals-are-zero: a denormal float32 result (an 8-bit
    quantized_po2's code for 0, 2^-128) is 0 in every op that reads it, so it is 0 in what QKeras computes."""
    x = np.asarray(x, dtype=F32)
    return np.where(np.abs(x) < np.finfo(F32).tiny, F32(0), x).astype(F32)


def _ste(anchor: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """QKeras's forward value ``x + stop_gradient(-x + xq)`` in float32 (not always exactly xq), denormals flushed."""
    anchor = ftz(anchor)
    return ftz(anchor + (-anchor + ftz(xq)))


def _sign_one(x: np.ndarray) -> np.ndarray:
    """tf.sign with 0 → +1 (binary's ``k_sign += 1 - |k_sign|``)."""
    s = np.sign(x).astype(F32)
    return (s + (F32(1) - np.abs(s))).astype(F32)


def _ls_scale(alpha: Any, x: np.ndarray, q: np.ndarray) -> np.ndarray | F32:
    """_get_scale: least squares per output channel for 'auto'/'auto_po2', the number itself otherwise."""
    if alpha in ('auto', 'auto_po2'):
        return _least_squares(x, q, po2=alpha == 'auto_po2')
    return F32(1.0) if alpha is None else F32(alpha)


def sign_bits(w: np.ndarray, alpha: float | None) -> np.ndarray:
    """quantized_bits(1, keep_negative=True) with a fixed alpha: alpha * sign(w), 0 → +1."""
    x = np.asarray(w, dtype=F32)
    return _ste(x, F32(1.0 if alpha is None else alpha) * _sign_one(x))


def binary(w: np.ndarray, use_01: bool, alpha: Any) -> np.ndarray:
    """qkeras.binary (and stochastic_binary at inference) applied to weights."""
    x = np.asarray(w, dtype=F32)
    k = _sign_one(x)
    if use_01:
        k = ((k + F32(1)) / F32(2)).astype(F32)
    if alpha is None:  # the anchor is tanh(x); same sign as k, so the STE sum is exactly k (scale 1)
        return k
    return _ste(x, _ls_scale(alpha, x, k) * k)


def ternary(w: np.ndarray, alpha: Any, threshold: float | None, unrolls: int) -> np.ndarray:
    """qkeras.ternary (and stochastic_ternary at inference) applied to weights."""
    x = np.asarray(w, dtype=F32)
    sign = np.sign(x).astype(F32)
    if alpha in ('auto', 'auto_po2'):
        axes = _axes(x.ndim) or None
        scale = (F32(2) * np.max(np.abs(x), axis=axes, keepdims=True) / F32(3.0)).astype(F32)
        if alpha == 'auto_po2':
            scale = _po2(scale)
        q = np.zeros_like(x)
        for _ in range(unrolls):
            thres = (scale / F32(2.0)).astype(F32)
            r = (x / scale).astype(F32)
            v = (scale * (r + (-r + np.round(r)))).astype(F32)
            q = ((np.abs(v) >= thres).astype(F32) * sign).astype(F32)
            scale = _ls_scale(alpha, x, q)
        return _ste(x, scale * q)
    thres = F32(0.33 if threshold is None else threshold)
    q = ((np.abs(x) >= thres).astype(F32) * sign).astype(F32)
    if alpha is None:  # anchor tanh(x): q is 0 or has its sign, so the STE sum is exactly q
        return q
    return _ste(x, F32(alpha) * q)


def _po2_exponent(
    x_abs: np.ndarray, min_exp: int, max_exp: int, max_value: float | None, quadratic: bool, log2_rounding: str
) -> np.ndarray:
    """_clip_power_of_two: the (clipped) exponent of each |x|; values below 1e-7 get min_exp."""
    x_filter = np.where(x_abs < EPS, EPS, x_abs).astype(F32)
    if max_value is not None:
        x_filter = np.where(x_filter >= F32(max_value), F32(max_value), x_filter).astype(F32)
    x_in = np.sqrt(x_filter) if quadratic else x_filter
    y = (np.log(x_in) / LOG2).astype(F32)
    e = np.floor(y) if log2_rounding == 'floor' else np.round(y)
    clipped = F32(2 if quadratic else 1) * np.clip(y + (e - y), F32(min_exp), F32(max_exp))
    return np.where(x_abs < EPS, F32(min_exp), clipped).astype(F32)


def relu_po2(
    w: np.ndarray, bits: int, max_value: float | None, negative_slope: float, quadratic: bool, log2_rounding: str
) -> np.ndarray:
    """qkeras.quantized_relu_po2 applied to weights (x <= 0 with slope 0 gives 2^min_exp, not 0)."""
    need_sign = 1 if max_value is None or max_value > 1 else 0
    min_exp, max_exp = -(2 ** (bits - need_sign)), 2 ** (bits - need_sign) - 1
    if quadratic:
        max_exp = 2 * (max_exp // 2)
    x = np.asarray(w, dtype=F32)
    ns = F32(negative_slope)
    leaky = np.where(x >= 0, x, x * ns).astype(F32)
    anchor = leaky if max_value is None else np.where(x <= F32(max_value), leaky, F32(max_value)).astype(F32)
    pos = _po2_exponent(np.maximum(x, F32(0)), min_exp, max_exp, max_value, quadratic, log2_rounding)
    neg = _po2_exponent((np.maximum(-x, F32(0)) * ns).astype(F32), min_exp, max_exp, max_value, quadratic, log2_rounding)
    xq = np.where((x >= 0) | (ns == 0), np.power(F32(2.0), pos), -np.power(F32(2.0), neg)).astype(F32)
    return _ste(anchor, xq)
