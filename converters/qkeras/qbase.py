"""The shared shape of a typed QKeras quantizer: what a weight or an activation becomes in HGQ2."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray

#: What a weight becomes: the values HGQ2 stores, and the format(s) its kernel quantizer applies to them.
WeightPlan = tuple[np.ndarray, FixedFormat | FormatArray]
#: What an activation quantizer becomes: a format, and an affine (scale, shift) applied after it, if any.
ActivationPlan = tuple[FixedFormat, tuple[float, float] | None]


class FormatQuantizer:
    """Shared behaviour of quantizers that are one fixed-point format (no affine, weights quantized at run time)."""

    def fixed_format(self, position: str) -> FixedFormat:
        raise NotImplementedError

    def activation_plan(self) -> ActivationPlan:
        return self.fixed_format('activation'), None

    def weight_plan(self, w: np.ndarray, position: str) -> WeightPlan:
        return w, self.fixed_format(position)

    def float_rounded(self, position: str) -> bool:
        return False

    def two_step(self) -> Any:
        """The spec of an activation that needs two quantization steps (QKeras's leaky or sigmoid-clipped
        quantized_relu), or None for a quantizer that is one format."""
        return None


def exact_formats(values: np.ndarray, position: str) -> FormatArray:
    """Per-channel formats under which HGQ2 holds the precomputed ``values`` exactly, or a LayerProblem naming the
    value no format holds (never a format that silently rounds it)."""
    try:
        return FormatArray.covering(values)
    except ValueError as err:
        raise LayerProblem(
            f'QKeras computes {position} values that no fixed-point format holds exactly in HGQ2 float32 arithmetic ({err})',
            'rescale the weights, or give the quantizer a range that keeps its values within 2^-126 .. 2^126',
        ) from None


#: Positions where QKeras's ``_set_trainable_parameter`` rewrites alpha=None to 'auto_po2' (layer kernels, and
#: the gamma and variance quantizers of QBatchNormalization).
WEIGHT_POSITIONS = ('kernel', 'depthwise', 'pointwise', 'recurrent', 'gamma', 'variance')
MAX_BITS = 64


def check_integer(integer: Any) -> int:
    """A quantizer's ``integer`` argument as an int, or a LayerProblem (NaN, infinity, fractions, absurd sizes)."""
    whole = isinstance(integer, int) or (isinstance(integer, float) and math.isfinite(integer) and integer.is_integer())
    if isinstance(integer, bool) or not whole or abs(integer) > MAX_BITS:
        raise LayerProblem(
            f'integer must be a whole number from -{MAX_BITS} to {MAX_BITS}, got {integer!r}', 'fix the quantizer in the model'
        )
    return int(integer)


def check_common(bits: Any, qnoise_factor: Any) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
        raise LayerProblem(f'bits must be an integer from 1 to {MAX_BITS}, got {bits!r}', 'fix the quantizer in the model')
    if qnoise_factor is not None and (not isinstance(qnoise_factor, (int, float)) or float(qnoise_factor) != 1.0):
        raise LayerProblem(
            f'qnoise_factor={qnoise_factor} mixes float and quantized values at inference',
            'set qnoise_factor=1 (the default) before saving',
        )


def effective_alpha(alpha: Any, position: str) -> Any:
    """A quantizer's alpha as QKeras uses it: None on a kernel becomes 'auto_po2' (``_set_trainable_parameter``);
    anything but None, 'auto', 'auto_po2' or a non-zero finite number is a LayerProblem."""
    if alpha is None and position in WEIGHT_POSITIONS:
        return 'auto_po2'
    if isinstance(alpha, str):
        if alpha not in ('auto', 'auto_po2'):
            raise LayerProblem(f'unknown alpha {alpha!r}', "use None, a number, 'auto' or 'auto_po2'")
        return alpha
    numeric = isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
    if alpha is not None and not (numeric and np.isfinite(alpha) and alpha != 0):
        raise LayerProblem(
            f"alpha must be None, a non-zero finite number, 'auto' or 'auto_po2', got {alpha!r}", 'fix the quantizer in the model'
        )
    return alpha
