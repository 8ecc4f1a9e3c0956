"""QONNX quantizers as fixed-point formats (https://github.com/fastmachinelearning/qonnx, docs/qonnx-custom-ops).

``Quant`` / ``IntQuant(x, scale, zeropt, bitwidth; signed, narrow, rounding_mode)`` (the same op) computes
``clip(round(x / scale + zeropt), min, max) - zeropt) * scale`` with min/max the integer range of ``bitwidth``
bits (``narrow`` drops the most negative code, or the top one when unsigned). With a power-of-two scale
``2^-f`` and a zero zero-point that is exactly the fixed-point quantizer ``kif(signed, bitwidth - signed - f,
f)``, SAT (SAT_SYM when narrow and signed); ROUND is half-to-even (``numpy.round``, RND_CONV) and FLOOR is
truncation (TRN). Per-channel scales give per-channel formats (weights only).

``BipolarQuant(x, scale)`` is ``scale * (x >= 0 ? 1 : -1)``. On weights it is computed once. On activations it is
exactly ``2 s q(x) + s`` with ``q = kif(1, 0, 0)`` TRN SAT, whose only values are -1 and 0: ``floor(x)`` saturated
to [-1, 0] is 0 for every ``x >= 0`` (-0.0 included: floor(-0.0) = -0.0, and ``2 s (-0.0) + s = s``) and -1 for
every ``x < 0``; the affine ``(2s, s)`` maps them to ``+s`` and ``-s``, both exact in float32 for a power-of-two
``s`` (``-2s + s`` and ``2s * 0 + s`` round nowhere).

ONNX ``QuantizeLinear`` -> [``Clip``] -> ``DequantizeLinear`` (QCDQ, as Brevitas ``export_onnx_qcdq`` writes it)
computes ``(clip(saturate(round_half_even(x / s) + z), lo, hi) - z) * s``; with ``s = 2^-f`` and ``z = 0`` that is
``kif(signed, b - signed - f, f)`` RND_CONV, with ``b`` and the range from the zero-point's integer type
(int8: [-128, 127], uint8: [0, 255]) narrowed by the Clip: SAT for [-2^(b-1), 2^(b-1) - 1] or [0, 2^b - 1],
SAT_SYM for [-(2^(b-1) - 1), 2^(b-1) - 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray

#: QONNX rounding modes that are fixed-point rounding modes (HALF_UP, UP, DOWN, CEIL... round away from or toward zero)
ROUNDING = {'ROUND': 'RND_CONV', 'HALF_EVEN': 'RND_CONV', 'FLOOR': 'TRN'}


def po2_exponents(scale: np.ndarray) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise LayerProblem(
            f'the scale must be positive and finite, got {s.ravel()[:4]}', 're-export with positive, finite scales'
        )
    e = np.log2(s)
    if not np.all(e == np.round(e)):
        raise LayerProblem(
            f'scale {s.ravel()[:4]} is not a power of two, so Quant is not a fixed-point format',
            'use power-of-two scales (Brevitas: scaling_impl_type="po2"/restrict_scaling_type=POWER_OF_TWO)',
        )
    return np.round(e).astype(np.int64)


def quant_format(
    consts: dict[str, np.ndarray], inputs: list[str], attrs: dict[str, Any], weight: bool
) -> FixedFormat | FormatArray:
    """The format Quant applies, from its constant scale / zero-point / bit-width inputs."""
    if len(inputs) != 4 or not all(i in consts for i in inputs[1:]):
        raise LayerProblem(
            'Quant needs constant scale, zero-point and bit-width inputs', 'fold the quantizer parameters into initializers'
        )
    scale, zeropt, bits = consts[inputs[1]], consts[inputs[2]], consts[inputs[3]]
    if np.any(zeropt != 0):
        raise LayerProblem(
            f'a non-zero zero-point ({zeropt.ravel()[:4]}) is not a fixed-point format',
            'use zero zero-points (symmetric quantization)',
        )
    if bits.size != 1 or float(bits.ravel()[0]) != int(bits.ravel()[0]) or not 1 <= int(bits.ravel()[0]) <= 32:
        raise LayerProblem(
            f'bitwidth must be one whole number from 1 to 32, got {bits.ravel()[:4]}',
            're-export with one integer bit width per quantizer',
        )
    rounding = str(attrs.get('rounding_mode', 'ROUND')).upper()
    if rounding not in ROUNDING:
        raise LayerProblem(f'rounding_mode {rounding!r} is not converted', f'use {" or ".join(ROUNDING)}')
    signed, narrow, b = int(attrs.get('signed', 1)), int(attrs.get('narrow', 0)), int(bits.ravel()[0])
    if narrow and not signed:
        raise LayerProblem(
            'narrow unsigned Quant (largest code 2^b - 2) is not a fixed-point format', 'use narrow=0 for unsigned quantizers'
        )
    overflow = 'SAT_SYM' if narrow else 'SAT'
    exps = po2_exponents(scale)
    if exps.size == 1:
        f = -int(exps.ravel()[0])
        return FixedFormat(signed, b - signed - f, f, ROUNDING[rounding], overflow)
    if not weight:
        raise LayerProblem('a per-channel scale on activations is not converted', 'use one scale per activation tensor')
    if rounding != 'ROUND':
        raise LayerProblem(f'per-channel weight scales with rounding_mode {rounding!r} are not converted', 'use ROUND')
    fs = -exps
    return FormatArray(np.full_like(fs, signed), b - signed - fs, fs, ROUNDING[rounding], overflow)


def quant_values(w: np.ndarray, fmt: FixedFormat | FormatArray) -> np.ndarray:
    """Quant applied to a constant (float32, as QONNX's executor returns it)."""
    return np.asarray(fmt.quantize(np.asarray(w, dtype=np.float64)), dtype=np.float32)


def bipolar_weights(w: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, FormatArray]:
    """BipolarQuant on a constant: ``scale * (w >= 0 ? 1 : -1)``, with per-channel formats that hold it."""
    po2_exponents(scale)  # any positive scale is exact as a value; a power of two keeps the format small
    values = (np.where(np.asarray(w) >= 0, 1.0, -1.0) * np.asarray(scale, dtype=np.float64)).astype(np.float32)
    return values, FormatArray.covering(values)


def bipolar_activation(scale: np.ndarray) -> tuple[FixedFormat, tuple[float, float]]:
    """BipolarQuant on activations: the 1-bit step ``kif(1, 0, 0)`` TRN SAT and the affine ``(2 s, s)``."""
    s = np.asarray(scale, dtype=np.float64)
    if s.size != 1:
        raise LayerProblem('a per-channel BipolarQuant scale on activations is not converted', 'use one scale per tensor')
    po2_exponents(s)
    value = float(s.ravel()[0])
    return FixedFormat(1, 0, 0, 'TRN', 'SAT'), (2.0 * value, value)


#: The integer types QuantizeLinear writes: (signed, bits).
QDQ_TYPES = {'int8': (1, 8), 'uint8': (0, 8), 'int16': (1, 16), 'uint16': (0, 16)}


def qdq_format(scale: np.ndarray, zero: np.ndarray | None, zero_type: str, clip: list[float] | None) -> FixedFormat:
    """The format of QuantizeLinear -> [Clip] -> DequantizeLinear with a power-of-two scale and zero zero-point."""
    if zero_type not in QDQ_TYPES:
        raise LayerProblem(f'QuantizeLinear to {zero_type} is not converted', 'quantize to int8 or uint8')
    if zero is not None and np.any(np.asarray(zero) != 0):
        raise LayerProblem(
            f'a non-zero zero-point ({np.ravel(zero)[:4]}) is not a fixed-point format', 'use zero zero-points (symmetric)'
        )
    exps = po2_exponents(scale)
    if exps.size != 1:
        raise LayerProblem('a per-axis scale on activations is not converted', 'use one scale per activation tensor')
    f = -int(exps.ravel()[0])
    signed, bits = QDQ_TYPES[zero_type]
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if clip is not None:
        low, high = max(low, clip[0]), min(high, clip[1])
    for b in range(1, bits + 1):
        if (low, high) == (0, 2**b - 1):
            return FixedFormat(0, b - f, f, 'RND_CONV', 'SAT')
        if (low, high) == (-(2 ** (b - 1)), 2 ** (b - 1) - 1):
            return FixedFormat(1, b - 1 - f, f, 'RND_CONV', 'SAT')
        if b > 1 and (low, high) == (-(2 ** (b - 1)) + 1, 2 ** (b - 1) - 1):
            return FixedFormat(1, b - 1 - f, f, 'RND_CONV', 'SAT_SYM')
    raise LayerProblem(
        f'the integer range [{low}, {high}] is not that of a fixed-point format',
        'clip the codes to [-2^(b-1), 2^(b-1) - 1], [-(2^(b-1) - 1), 2^(b-1) - 1] or [0, 2^b - 1]',
    )
