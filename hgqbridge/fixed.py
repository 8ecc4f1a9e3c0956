"""FixedFormat: one fixed-point format, its numpy reference quantizer and its ap_fixed spelling.

Conventions are HGQ2's ``kif``: ``k`` sign bit (0/1), ``i`` integer bits excluding the sign, ``f`` fractional
bits (either may be negative). Width ``W = k + i + f``, ``ap_fixed<W, k + i>``. Overflow modes: ``SAT``
clips to ``[-k 2^i, 2^i - 2^-f]``, ``SAT_SYM`` to ``±(2^i - 2^-f)``, ``WRAP`` wraps. Rounding: ``TRN`` floor,
``RND`` half up, ``RND_CONV`` half to even (QKeras's ``tf.round``). Saturation happens before rounding,
as in HGQ2; the bounds lie on the grid, so the order does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ROUND_MODES = ('TRN', 'RND', 'RND_CONV')
OVERFLOW_MODES = ('SAT', 'SAT_SYM', 'WRAP')


def quantize_kif(x: np.ndarray | float, k: Any, i: Any, f: Any, round_mode: str, overflow: str) -> np.ndarray:
    """The exact fixed-point quantization of ``x`` (float64) with per-element ``k, i, f`` (broadcast against x):
    saturate (SAT: ``[-k 2^i, 2^i - 2^-f]``, SAT_SYM: ``±(2^i - 2^-f)``), round (TRN floor, RND half up, RND_CONV
    half to even), or wrap (WRAP: modulo ``2^(k+i+f)`` steps). Elements of zero or negative width are 0."""
    x = np.asarray(x, dtype=np.float64)
    k, i, f = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(k, i, f, x)[:3])
    step = 2.0**-f
    if overflow != 'WRAP':
        high = 2.0**i - step
        low = -high * k if overflow == 'SAT_SYM' else -(2.0**i) * k
        x = np.clip(x, low, high)
    scaled = x * 2.0**f
    if round_mode == 'TRN':
        q = np.floor(scaled)
    elif round_mode == 'RND':
        q = np.floor(scaled + 0.5)
    else:
        q = np.round(scaled)  # numpy rounds half to even
    if overflow == 'WRAP':
        span = 2.0 ** (k + i + f)
        offset = k * 2.0 ** (i + f)
        q = np.mod(q + offset, span) - offset
    return np.where(k + i + f > 0, q * step, 0.0)


@dataclass(frozen=True)
class FixedFormat:
    k: int
    i: int
    f: int
    round: str = 'RND_CONV'
    overflow: str = 'SAT'

    def __post_init__(self) -> None:
        if self.k not in (0, 1):
            raise ValueError(f'k must be 0 or 1, got {self.k}')
        if self.round not in ROUND_MODES or self.overflow not in OVERFLOW_MODES:
            raise ValueError(f'unknown rounding/overflow mode {self.round}/{self.overflow}')

    @property
    def width(self) -> int:
        return self.k + self.i + self.f

    @property
    def step(self) -> float:
        return 2.0**-self.f

    @property
    def high(self) -> float:
        return 2.0**self.i - self.step

    @property
    def low(self) -> float:
        if self.overflow == 'SAT_SYM':
            return -self.high * self.k
        return -(2.0**self.i) * self.k

    def quantize(self, x: np.ndarray | float) -> np.ndarray:
        """The exact quantized value of ``x`` (computed in float64)."""
        return quantize_kif(x, self.k, self.i, self.f, self.round, self.overflow)

    def holds(self, other: FixedFormat) -> bool:
        """True when quantizing with this format leaves every value of ``other`` unchanged."""
        if other.width == 0:
            return True
        exact_grid = self.f >= other.f
        return exact_grid and self.low <= other.low and self.high >= other.high

    def ap_type(self) -> str:
        """The Vivado/Vitis HLS type, e.g. ``ap_fixed<8,1,AP_RND_CONV,AP_SAT>``."""
        base = 'ap_fixed' if self.k else 'ap_ufixed'
        modes = {'TRN': 'AP_TRN', 'RND': 'AP_RND', 'RND_CONV': 'AP_RND_CONV'}[self.round]
        ovf = {'SAT': 'AP_SAT', 'SAT_SYM': 'AP_SAT_SYM', 'WRAP': 'AP_WRAP'}[self.overflow]
        return f'{base}<{self.width},{self.k + self.i},{modes},{ovf}>'

    def __str__(self) -> str:
        return self.ap_type()

    @classmethod
    def parse(cls, text: str) -> FixedFormat:
        """Read ``fixed<W,I>``, ``ufixed<W,I>`` or ``ap_fixed<W,I[,ROUND[,OVERFLOW]]>`` (defaults TRN, SAT)."""
        t = text.strip().replace(' ', '')
        unsigned = t.startswith(('ufixed<', 'ap_ufixed<'))
        if not (t.endswith('>') and '<' in t and t.split('<')[0] in ('fixed', 'ufixed', 'ap_fixed', 'ap_ufixed')):
            raise ValueError(f'expected fixed<W,I> or ap_fixed<W,I,ROUND,OVERFLOW>, got {text!r}')
        args = t[t.index('<') + 1 : -1].split(',')
        try:
            width, integer = int(args[0]), int(args[1])
        except (ValueError, IndexError):
            raise ValueError(f'expected two integers W,I in {text!r}') from None
        rnd = args[2].removeprefix('AP_') if len(args) > 2 else 'TRN'
        ovf = args[3].removeprefix('AP_') if len(args) > 3 else 'SAT'
        k = 0 if unsigned else 1
        if width < 1 or width > 64:
            raise ValueError(f'width must be 1..64, got {width} in {text!r}')
        return cls(k, integer - k, width - integer, rnd, ovf)

    def union(self, other: FixedFormat) -> FixedFormat:
        """The smallest format holding both (this one's rounding and overflow)."""
        return FixedFormat(max(self.k, other.k), max(self.i, other.i), max(self.f, other.f), self.round, self.overflow)

    @classmethod
    def covering(
        cls, x: np.ndarray, max_f: int = 24, overflow: str = 'SAT', round: str = 'TRN', inexact_ok: bool = False
    ) -> FixedFormat:
        """The narrowest format holding every value of ``x`` exactly, with at most ``max_f`` fractional bits.

        A value that needs more fractional bits (2^-64 with max_f 32, a denormal) or is not finite raises
        ValueError: a format that rounds it would not hold it. ``inexact_ok=True`` caps f at ``max_f`` instead
        (for data that is meant to be rounded, such as raw inputs on a firmware port)."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f'no fixed-point format holds {x[~np.isfinite(x)].ravel()[0]!r}')
        needed = fraction_bits(x)
        f = max(needed, -max_f)
        if f > max_f:
            if not inexact_ok:
                worst = x.ravel()[int(np.argmax(_fraction_bits_each(x.ravel())))]
                raise ValueError(f'{float(worst)!r} needs {needed} fractional bits, more than the {max_f} allowed')
            f = max_f
        if not np.any(x):
            return cls(0, 0, 0, round, overflow)
        high, low = float(x.max()), float(x.min())
        k = int(low < 0)
        i = -f
        while high >= 2.0**i or -(2.0**i) * k > low:  # on the 2^-f grid, x <= 2^i - 2^-f is x < 2^i (exact in floats)
            i += 1
        return cls(k, i, f, round, overflow)


def _fraction_bits_each(x: np.ndarray) -> np.ndarray:
    """Per element of a finite float64 array: the fractional bits its value needs (the exponent of its lowest
    set bit, negated); 0 needs none (-2000)."""
    mant, exp = np.frexp(x)
    m = np.abs(mant * 2.0**53).astype(np.int64)  # exact: a float64 mantissa has 53 bits
    low_bit = np.log2((m & -m).astype(np.float64), where=m != 0, out=np.zeros(x.shape))
    return np.where(m != 0, 53 - exp - low_bit, -2000).astype(np.int64)


def fraction_bits(x: np.ndarray) -> int:
    """The fractional bits a format needs to hold every (finite) value of ``x`` exactly; -2000 for all zeros."""
    x = np.asarray(x, dtype=np.float64)
    return int(_fraction_bits_each(x.ravel()).max()) if x.size else -2000


#: HGQ2 quantizes in float32: 2^f, 2^-f and every value times 2^f must be finite normal float32 numbers.
FLOAT32_MAX_F = 126


@dataclass(frozen=True, eq=False)
class FormatArray:
    """Per-channel (or per-element) formats: k, i, f arrays broadcastable to a weight's shape."""

    k: np.ndarray
    i: np.ndarray
    f: np.ndarray
    round: str = 'RND_CONV'
    overflow: str = 'SAT'

    def widest(self) -> FixedFormat:
        return FixedFormat(int(self.k.max()), int(self.i.max()), int(self.f.max()), self.round, self.overflow)

    def uniform(self) -> FixedFormat | None:
        """The one format every element has, or None when the elements differ."""
        if all(np.all(v == v.flat[0]) for v in (self.k, self.i, self.f) if v.size):
            return self.widest()
        return None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Elementwise quantization with each element's own format and this array's rounding and overflow modes."""
        return quantize_kif(x, self.k, self.i, self.f, self.round, self.overflow)

    @classmethod
    def covering(cls, values: np.ndarray, max_f: int = FLOAT32_MAX_F) -> FormatArray:
        """One format per channel (last axis) holding every value of that channel exactly, in HGQ2's float32
        arithmetic. A value no such format holds (non-finite, a denormal, a channel whose range spans more than
        126 binary orders of magnitude) raises ValueError, naming the channel: never a silently rounding format."""
        values = np.asarray(values, dtype=np.float64)
        flat = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values.reshape(-1, 1)
        fmts = []
        for c in range(flat.shape[1]):
            try:
                fmt = FixedFormat.covering(flat[:, c], max_f=max_f)
            except ValueError as err:
                raise ValueError(f'channel {c}: {err}') from None
            if fmt.i + fmt.f > FLOAT32_MAX_F + 1 or fmt.i > FLOAT32_MAX_F:  # codes below 2^127: finite in float32
                raise ValueError(
                    f'channel {c}: its values need steps of 2^{-fmt.f} up to 2^{fmt.i}, more than float32 arithmetic holds exactly'
                )
            fmts.append(fmt)
        shape = (1,) * (values.ndim - 1) + (len(fmts),) if values.ndim > 1 else (len(fmts),)
        k, i, f = (np.array([getattr(m, a) for m in fmts]).reshape(shape) for a in 'kif')
        return cls(k, i, f)
