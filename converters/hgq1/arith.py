"""HGQ1's arithmetic, in float32 numpy exactly as HGQ 0.2.6 computes it (fixtures/hgq1/README.md, sections 2-6), and
the exact fixed-point formats that hold its results.

HGQ1's saved-model quantizer (``HGQ.forward`` at inference) rounds to ``f = round_half_even(clip(fbw, bw_clip))``
fractional bits, ``floor(x * 2^f + 0.5) / 2^f`` (or ``floor``) in float32, with no sign, integer or overflow
handling at all. Weights are static, so they are quantized once, here, the float32 way (``x * 2^f + 0.5`` rounds
in float32 once ``|x * 2^f| >= 2^22``, and 0.49999997 rounds to 1, as in HGQ1), and HGQ2 gets per-element formats
under which those values are exact. Activations are quantized at run time by HGQ2's own ``RND`` / ``TRN``
quantizers, which compute the same float32 operations.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray

F32 = np.float32
#: HGQ1's default ``bw_clip`` (``utils/utils.py``): the width variable is clipped to it at every call.
BW_CLIP = (-23.0, 23.0)
#: ``rnd_strategy`` at inference (``quantizer/quantizer.py:158-159``): everything but floor rounds to nearest.
ROUNDING = {
    'standard_round': 'RND',
    'stochastic_round': 'RND',
    'fast_uniform_noise_injection': 'RND',
    'floor': 'TRN',
    0: 'RND',
    1: 'RND',
    2: 'RND',
    3: 'TRN',
}
#: What HGQ1 reloads batch-normalization layers with: ``epsilon`` is not saved (``layers/batchnorm_base.py``).
BN_EPSILON = F32(1e-3)


def bw_clip(conf: dict) -> tuple[float, float] | None:
    """A quantizer config's ``bw_clip`` (None: no clipping)."""
    clip = conf.get('bw_clip', BW_CLIP)
    if clip in (None, False):
        return None
    if not (isinstance(clip, (list, tuple)) and len(clip) == 2 and all(isinstance(v, (int, float)) for v in clip)):
        raise LayerProblem('bw_clip must be two numbers', 're-save the model with HGQ1', received=clip)
    return float(clip[0]), float(clip[1])


def fractional_bits(fbw: np.ndarray, clip: tuple[float, float] | None) -> np.ndarray:
    """``round_half_even(clip(fbw))``: the fractional bits of each element (int64)."""
    fbw = np.asarray(fbw, dtype=F32)
    if not np.all(np.isfinite(fbw)):
        raise LayerProblem('a bit width is NaN or infinite', 're-save the model with HGQ1')
    if clip is not None:
        fbw = np.clip(fbw, F32(clip[0]), F32(clip[1]))
    return np.round(fbw).astype(np.int64)


def bias_bits(act_fbw: np.ndarray) -> np.ndarray:
    """``bias_forward``: the pre-activation widths reduced by max over every axis but the last, then rounded (no clip)."""
    fbw = np.asarray(act_fbw, dtype=F32)
    return fractional_bits(np.max(fbw.reshape(-1, fbw.shape[-1]), axis=0), None)


def quantize(x: np.ndarray, f: np.ndarray, round_mode: str) -> np.ndarray:
    """HGQ1's quantizer on ``x`` with ``f`` fractional bits (broadcast): ``floor(x * 2^f + 0.5) / 2^f`` (``RND``) or
    ``floor(x * 2^f) / 2^f`` (``TRN``), every step in float32; HGQ1's ``x + (xq - x)`` equals ``xq`` exactly."""
    scale = np.ldexp(F32(1), np.asarray(f, dtype=np.int32)).astype(F32)
    v = (np.asarray(x, dtype=F32) * scale).astype(F32)
    q = np.floor(v) if round_mode == 'TRN' else np.floor((v + F32(0.5)).astype(F32))
    return (q / scale).astype(F32)


def strategy(conf: dict, bias_covers: bool) -> str:
    """A quantizer config's ``rnd_strategy`` at inference as a rounding mode: 'RND' (half up) or 'TRN' (floor);
    ``'auto'`` rounds where the bias can absorb the rounding offset (``can_bias_cover_rnd``), else floors."""
    value = conf.get('rnd_strategy', 'standard_round')
    if value == 'auto':
        return 'RND' if bias_covers else 'TRN'
    if isinstance(value, bool) or value not in ROUNDING:
        raise LayerProblem(
            'unknown rnd_strategy', f'use one of {", ".join(repr(k) for k in ROUNDING if isinstance(k, str))}', received=value
        )
    return ROUNDING[value]


def bias_covers_rounding(bias: np.ndarray | None, act_fbw: np.ndarray) -> bool:
    """``HLayerBase.can_bias_cover_rnd`` for channels-last layers: a 1-D bias and one width per channel (or one)."""
    if bias is None or bias.ndim != 1:
        return False
    shape = act_fbw.shape
    return int(np.prod(shape)) == 1 or (int(np.prod(shape[:-1])) == 1 and tuple(shape[-1:]) == bias.shape)


def fma32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a * b + c`` rounded once to float32, to nearest, ties to even (XLA's fused multiply-add), in exact rational
    arithmetic: a per-channel vector, so element by element is cheap."""
    shape = np.broadcast_shapes(np.shape(a), np.shape(b), np.shape(c))
    out = np.empty(shape, F32)
    for n, (x, y, z) in enumerate(np.broadcast(*(np.asarray(v, dtype=F32) for v in (a, b, c)))):
        exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        near = F32(float(exact))
        candidates = (np.nextafter(near, F32(-np.inf)), near, np.nextafter(near, F32(np.inf)))
        out.flat[n] = min(candidates, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.asarray(v).view(np.int32)) & 1))
    return out


def fused_batchnorm(
    kernel: np.ndarray, bias: np.ndarray | None, stats: dict[str, np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray | None]:
    """``HBatchNormBase.fused_kernel`` / ``fused_bias`` at inference (XLA, float32, epsilon 1e-3): ``s = gamma *
    rsqrt(var + eps)`` (rsqrt as 1/sqrt), ``kernel * s``, ``fma(-mean, s, bias) + beta``. Without gamma/variance
    (scale=False) the kernel stays and the bias uses ``s = rsqrt(1 + eps)``; without beta/mean (center=False) the
    bias stays."""
    gamma, var, beta, mean = (stats.get(k) for k in ('bn_gamma', 'moving_variance', 'bn_beta', 'moving_mean'))
    one = np.ones(kernel.shape[-1], F32)
    g, v = (gamma, var) if gamma is not None and var is not None else (one, one)
    scaled = gamma is not None and var is not None
    s = (g * (F32(1) / np.sqrt(v + BN_EPSILON))).astype(F32)
    fused_kernel = (kernel.astype(F32) * s).astype(F32) if scaled else kernel.astype(F32)
    if beta is None or mean is None or bias is None:
        return fused_kernel, bias
    return fused_kernel, (fma32(-mean, s, bias) + beta.astype(F32)).astype(F32)


def _ceil_log2(v: np.ndarray) -> np.ndarray:
    """``ceil(log2(v))`` for positive v, exactly (from the binary exponent); -inf-like (-10**6) for v <= 0."""
    m, e = np.frexp(np.where(v > 0, v, 1.0))
    return np.where(v > 0, np.where(m == 0.5, e - 1, e), -(10**6))


def formats_for(lo: np.ndarray, hi: np.ndarray, f: np.ndarray, round_mode: str, overflow: str) -> FormatArray:
    """The per-element formats with ``f`` fractional bits holding every value in ``[lo, hi]`` (on the 2^-f grid):
    ``k = lo < 0``, the fewest integer bits ``i`` with ``-k 2^i <= lo`` and ``2^i - 2^-f >= hi`` (HGQ1's
    ``get_bits_exact``). An element whose range is {0} gets width 0 (``i = -f``), keeping its ``f``."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in (lo, hi))
    f = np.broadcast_to(np.asarray(f, dtype=np.int64), np.broadcast_shapes(lo.shape, hi.shape, np.shape(f)))
    lo, hi = np.broadcast_to(lo, f.shape), np.broadcast_to(hi, f.shape)
    k = (lo < 0).astype(np.int64)
    i = np.maximum(_ceil_log2(hi + np.ldexp(1.0, -f)), _ceil_log2(-lo))
    i = np.maximum(i, -f - k)
    return FormatArray(k, i.astype(np.int64), f.copy(), round_mode, overflow)


def exact_formats(values: np.ndarray, f: Any, round_mode: str = 'RND', overflow: str = 'SAT') -> FormatArray:
    """Per-element formats with ``f`` fractional bits under which ``values`` (already on their 2^-f grid) are exact."""
    v = np.asarray(values, dtype=np.float64)
    return formats_for(v, v, np.broadcast_to(np.asarray(f, dtype=np.int64), v.shape), round_mode, overflow)


def grid_bits(values: np.ndarray) -> np.ndarray:
    """The fewest fractional bits of each (finite) value: the position of its lowest set bit; 0 for zeros."""
    v = np.asarray(values, dtype=np.float64)
    m, e = np.frexp(v)
    mant = np.abs(m * 2.0**53).astype(np.int64)
    low = mant & -mant  # the lowest set bit of the 53-bit mantissa
    tz = np.where(mant != 0, np.log2(np.where(mant != 0, low, 1)).astype(np.int64), 0)
    return np.where(v != 0, 53 - e - tz, 0).astype(np.int64)


def uniform_or_array(fmt: FormatArray) -> FixedFormat | FormatArray:
    """A format array whose elements are all alike as the one format they share."""
    return fmt.uniform() or fmt
