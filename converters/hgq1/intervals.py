"""Interval arithmetic over HGQ1 layers, in numpy: the range of every value a layer can output, given the ranges of
its inputs. It is what makes the integer bits of a saved HGQ1 model (which holds none) sound: a quantizer whose
integer bits cover the range of its input never overflows, so it computes what HGQ1's unbounded one computes.

Every bound is outward: sums are taken in float64 around the midpoint and widened by a bound on their own rounding
error, bounds enter float32 rounding toward the outside, and the quantizers (monotone) map the ends to the ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem

from .arith import quantize
from .registry import Interval

F32 = np.float32
#: Beyond this a bound is not a number any fixed-point format of HGQ2 (or float32 arithmetic) holds exactly.
LARGEST = 2.0**60


def outward32(interval: Interval) -> Interval:
    """The interval with its ends rounded outward to float32."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in interval)
    lo32, hi32 = lo.astype(F32).astype(np.float64), hi.astype(F32).astype(np.float64)
    lo32 = np.where(lo32 > lo, np.nextafter(lo32.astype(F32), F32(-np.inf)).astype(np.float64), lo32)
    hi32 = np.where(hi32 < hi, np.nextafter(hi32.astype(F32), F32(np.inf)).astype(np.float64), hi32)
    return lo32, hi32


def quantized(interval: Interval, f: np.ndarray, round_mode: str) -> Interval:
    """The range of HGQ1's quantizer output on inputs in ``interval`` (it is monotone)."""
    lo, hi = outward32(interval)
    if not (np.all(np.abs(lo) <= LARGEST) and np.all(np.abs(hi) <= LARGEST)):
        raise LayerProblem(
            f'the range of this layer exceeds 2^60 on the inputs assumed ({float(np.max(np.abs(hi))):.3g})',
            'give --calibration data, or a narrower --input-format',
        )
    return quantize(lo, f, round_mode).astype(np.float64), quantize(hi, f, round_mode).astype(np.float64)


def linear(
    interval: Interval, apply: Callable[[np.ndarray, np.ndarray], np.ndarray], w: np.ndarray, b: np.ndarray | None
) -> Interval:
    """The range of ``apply(x, w) + b`` (apply linear in x: a matmul or a convolution) for x in ``interval``:
    midpoint and radius, then widened by a bound on float64's own rounding of the sums."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in interval)
    w = np.asarray(w, dtype=np.float64)
    bias = np.zeros(w.shape[-1]) if b is None else np.asarray(b, dtype=np.float64)
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    centre = apply(mid, w) + bias
    radius = apply(rad, np.abs(w))
    fan_in = w.size // w.shape[-1]
    guard = (apply(np.abs(mid) + rad, np.abs(w)) + np.abs(bias)) * (fan_in + 4) * 2.0**-50
    return centre - radius - guard, centre + radius + guard


def dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Keras Dense on the last axis (any rank)."""
    return np.matmul(x, w)


def _same_pads(sizes: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...], dilation: tuple[int, ...]) -> list:
    pads = []
    for n, k, s, d in zip(sizes, kernel, strides, dilation):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _per_axis(rank: int, *values: Any) -> list[tuple[int, ...]]:
    """Each of ``values`` (an int or a tuple) as one entry per spatial axis, with a leading 1 for rank 1 (computed
    as 2-D over a unit first axis)."""
    out = []
    for v in values:
        v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
        v = v * rank if len(v) == 1 else v
        out.append((1, *v) if rank == 1 else v)
    return out


def conv(x: np.ndarray, w: np.ndarray, args: dict) -> np.ndarray:
    """Keras Conv1D/Conv2D (channels last, groups 1) in float64, as a sum over the kernel's taps."""
    rank = w.ndim - 2
    x, w = (x[:, None], w[None]) if rank == 1 else (x, w)
    ksize = w.shape[:2]
    strides, dilation = _per_axis(rank, args.get('strides', 1), args.get('dilation_rate', 1))
    if args.get('padding') == 'same':
        x = np.pad(x, ((0, 0), *_same_pads(x.shape[1:3], ksize, strides, dilation), (0, 0)))
    rows = (x.shape[1] - (ksize[0] - 1) * dilation[0] - 1) // strides[0] + 1
    cols = (x.shape[2] - (ksize[1] - 1) * dilation[1] - 1) // strides[1] + 1
    out = np.zeros((x.shape[0], rows, cols, w.shape[-1]))
    for a in range(ksize[0]):
        for c in range(ksize[1]):
            r0, c0 = a * dilation[0], c * dilation[1]
            patch = x[:, r0 : r0 + (rows - 1) * strides[0] + 1 : strides[0], c0 : c0 + (cols - 1) * strides[1] + 1 : strides[1]]
            out += patch @ w[a, c]
    return out[:, 0] if rank == 1 else out


def _windows(x: np.ndarray, pool: tuple[int, ...], strides: tuple[int, ...], padding: str, fill: float) -> np.ndarray:
    """Every pooling window's values, stacked on a new first axis (padding filled with ``fill``)."""
    rank = len(pool)
    x = x[:, None] if rank == 1 else x
    pool, strides = _per_axis(rank, pool, strides)
    if padding == 'same':
        x = np.pad(x, ((0, 0), *_same_pads(x.shape[1:3], pool, strides, (1, 1)), (0, 0)), constant_values=fill)
    rows, cols = (x.shape[1] - pool[0]) // strides[0] + 1, (x.shape[2] - pool[1]) // strides[1] + 1
    wins = np.stack(
        [
            x[:, a : a + (rows - 1) * strides[0] + 1 : strides[0], c : c + (cols - 1) * strides[1] + 1 : strides[1]]
            for a in range(pool[0])
            for c in range(pool[1])
        ]
    )
    return wins[:, :, 0] if rank == 1 else wins


def pooled(interval: Interval, args: dict, kind: str) -> Interval:
    """Max pooling maps the ends' maxima to the output's ends; an average lies between its window's least and
    largest values (so this holds for 'same' padding's border windows too)."""
    lo, hi = interval
    pool, strides, padding = args['pool_size'], args['strides'], args['padding']
    top = _windows(hi, pool, strides, padding, -np.inf).max(0)
    if kind == 'max':
        return _windows(lo, pool, strides, padding, -np.inf).max(0), top
    return _windows(lo, pool, strides, padding, np.inf).min(0), top


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(v, -700, 700)))


#: Monotone activations, applied to the ends; softmax lies in [0, 1] whatever its inputs.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    'linear': lambda v: v,
    'relu': lambda v: np.maximum(v, 0.0),
    'tanh': np.tanh,
    'sigmoid': _sigmoid,
}
#: The range an activation's output cannot leave.
CLAMPS = {'relu': (0.0, np.inf), 'tanh': (-1.0, 1.0), 'sigmoid': (0.0, 1.0), 'softmax': (0.0, 1.0)}


def activated(interval: Interval, name: str) -> Interval:
    lo, hi = interval
    if name == 'softmax':
        return np.zeros_like(lo), np.ones_like(hi)
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise LayerProblem(
            f'no range is known for activation {name!r}, so its integer bits cannot be derived',
            'give --calibration data (the integer bits are then traced)',
        )
    return fn(lo), fn(hi)


def reduce_to(interval: Interval, shape: tuple[int, ...]) -> Interval:
    """The interval over every element that shares one width of shape ``shape`` (a quantizer's ``activation_bw``,
    broadcast against the tensor): min and max over the broadcast axes."""
    lo, hi = interval
    full = np.broadcast_shapes(lo.shape, hi.shape)
    lo, hi = np.broadcast_to(lo, full), np.broadcast_to(hi, full)
    if len(shape) != len(full):
        raise LayerProblem(f'the bit widths have shape {shape}, the tensor {full[1:]}', 're-save the model with HGQ1')
    axes = tuple(n for n, (s, t) in enumerate(zip(shape, full)) if s == 1 and t != 1)
    return lo.min(axis=axes, keepdims=True), hi.max(axis=axes, keepdims=True)
