"""Weights-only QKeras quantizers whose values are computed once, exactly as QKeras computes them.

Power-of-two (quantized_po2, quantized_relu_po2), binary and ternary quantizers (and their stochastic forms,
which are the plain ones at inference) map weights to values that no rounding of a fixed-point format
produces, so they are not HGQ2 quantizers. Weights are static: the importer computes the quantized weights
with the float32 emulation in ``emulation.py`` and gives HGQ2 per-element formats under which they are exact.
On activations every one of them is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat

from .emulation import binary, po2, relu_po2, ternary
from .qbase import FormatQuantizer, WeightPlan, check_common, effective_alpha, exact_formats


class PrecomputedQuantizer(FormatQuantizer):
    """A weights-only quantizer: ``values`` computes what QKeras computes; activations are refused."""

    ON_ACTIVATIONS = 'it is not a rounding of x to a fixed-point grid'

    def values(self, w: np.ndarray, position: str) -> np.ndarray:
        raise NotImplementedError

    def fixed_format(self, position: str) -> FixedFormat:
        name = type(self).__name__
        raise LayerProblem(
            f'{name} on a {position}: {self.ON_ACTIVATIONS}, so no fixed-point quantizer computes it',
            f'use quantized_bits / quantized_relu on activations ({name} is converted on weights)',
        )

    def float_rounded(self, position: str) -> bool:
        """True when the scale is not a power of two ('auto', a number like 0.75): QKeras's float32 sums round."""
        alpha = effective_alpha(getattr(self, 'alpha', None), position)
        if alpha is None or alpha == 'auto_po2':
            return False
        return alpha == 'auto' or not (float(alpha) > 0 and float(np.log2(float(alpha))).is_integer())

    def weight_plan(self, w: np.ndarray, position: str) -> WeightPlan:
        q = self.values(w, position)
        if not np.all(np.isfinite(q)):
            raise LayerProblem(f'QKeras computes non-finite {position} values with this quantizer', 'fix the quantizer arguments')
        return q, exact_formats(q, position)


@dataclass(frozen=True)
class QuantizedPo2(PrecomputedQuantizer):
    """qkeras.quantized_po2: sign(x) * 2^round(log2|x|). Never 0, so not a fixed-point format on activations."""

    MAPPING = (
        'weights only: computed once as QKeras does (sign * power of two; a code below 2^-126 is 0, as TensorFlow '
        'flushes denormals), per-channel exact formats'
    )

    bits: int = 8
    max_value: Any = None
    use_stochastic_rounding: bool = False
    quadratic_approximation: bool = False
    log2_rounding: str = 'rnd'
    qnoise_factor: float = 1.0
    var_name: Any = None
    use_ste: bool = True
    use_variables: bool = False

    ON_ACTIVATIONS = 'it maps every value, 0 included, to a signed power of two'

    def values(self, w: np.ndarray, position: str) -> np.ndarray:
        check_common(self.bits, self.qnoise_factor)
        if self.log2_rounding not in ('rnd', 'floor'):
            raise LayerProblem(f'unknown log2_rounding {self.log2_rounding!r}', "use 'rnd' or 'floor'")
        if self.max_value is not None and float(self.max_value) < 0:
            raise LayerProblem(f'max_value must be non-negative, got {self.max_value}', 'fix the quantizer in the model')
        return po2(
            w,
            self.bits,
            None if self.max_value is None else float(self.max_value),
            bool(self.quadratic_approximation),
            self.log2_rounding,
        )


@dataclass(frozen=True)
class QuantizedReluPo2(PrecomputedQuantizer):
    """qkeras.quantized_relu_po2: 2^round(log2 relu(x)); x <= 0 gives 2^min_exp (not 0) unless negative_slope."""

    MAPPING = (
        'weights only: computed once as QKeras does (powers of two, x <= 0 -> 2^min_exp, below 2^-126: 0 as '
        'TensorFlow flushes denormals), per-element exact formats; refused: quadratic_approximation on kernels '
        "(TensorFlow's float32 log decides sqrt(w)'s ties)"
    )
    ON_ACTIVATIONS = 'it maps 0 and every negative value to 2^min_exp, never to 0'

    bits: int = 8
    max_value: Any = None
    negative_slope: float = 0.0
    use_stochastic_rounding: bool = False
    quadratic_approximation: bool = False
    log2_rounding: str = 'rnd'
    qnoise_factor: float = 1.0
    var_name: Any = None
    use_ste: bool = True
    use_variables: bool = False

    def values(self, w: np.ndarray, position: str) -> np.ndarray:
        check_common(self.bits, self.qnoise_factor)
        if self.log2_rounding not in ('rnd', 'floor'):
            raise LayerProblem(f'unknown log2_rounding {self.log2_rounding!r}', "use 'rnd' or 'floor'")
        ns = float(self.negative_slope or 0.0)
        if ns < 0 or (ns and not float(np.log2(ns)).is_integer()):
            raise LayerProblem(
                f'negative_slope must be 0 or a power of two, got {self.negative_slope}', 'fix the quantizer in the model'
            )
        if self.max_value is not None and float(self.max_value) < 0:
            raise LayerProblem(f'max_value must be non-negative, got {self.max_value}', 'fix the quantizer in the model')
        if self.quadratic_approximation and position == 'kernel':
            raise LayerProblem(
                'quantized_relu_po2 with quadratic_approximation on a kernel: the exponent of sqrt(w) rounds at ties '
                "that TensorFlow's float32 log decides differently from any reproduction here (a 6-bit kernel of "
                "QKeras's own min_max test differs), so the weights cannot be proven equal",
                'use quadratic_approximation=False on kernels (quantized_po2 with it converts)',
            )
        max_value = None if self.max_value is None else float(self.max_value)
        return relu_po2(w, self.bits, max_value, ns, bool(self.quadratic_approximation), self.log2_rounding)


@dataclass(frozen=True)
class Binary(PrecomputedQuantizer):
    """qkeras.binary: alpha * sign(x) with 0 -> +1 ({0, 1} with use_01); alpha None on kernels -> 'auto_po2'."""

    MAPPING = 'weights only: computed once as QKeras does (alpha None/number/auto/auto_po2, use_01), per-element exact formats'
    ON_ACTIVATIONS = 'it is a comparison (x >= 0), not a rounding of x'

    use_01: bool = False
    alpha: Any = None
    use_stochastic_rounding: bool = False

    def values(self, w: np.ndarray, position: str) -> np.ndarray:
        return binary(w, bool(self.use_01), effective_alpha(self.alpha, position))


@dataclass(frozen=True)
class StochasticBinary(PrecomputedQuantizer):
    """qkeras.stochastic_binary: random in training, exactly binary(alpha=alpha) at inference."""

    MAPPING = 'weights only: binary(alpha) at inference, computed once'
    ON_ACTIVATIONS = Binary.ON_ACTIVATIONS

    alpha: Any = None
    temperature: float = 6.0
    use_real_sigmoid: bool = True

    def values(self, w: np.ndarray, position: str) -> np.ndarray:
        return binary(w, False, effective_alpha(self.alpha, position))


@dataclass(frozen=True)
class Ternary(PrecomputedQuantizer):
    """qkeras.ternary: alpha * sign(x) * (|x| >= threshold), threshold 0.33 or learned by 'auto'/'auto_po2'."""

    MAPPING = 'weights only: computed once as QKeras does (alpha None/number/auto/auto_po2, threshold), per-element exact formats'
    ON_ACTIVATIONS = 'it is a pair of comparisons (|x| >= threshold), not a rounding of x'

    alpha: Any = None
    threshold: Any = None
    use_stochastic_rounding: bool = False
    number_of_unrolls: int = 5

    def values(self, w: np.ndarray, position: str) -> np.ndarray:
        alpha = effective_alpha(self.alpha, position)
        if isinstance(alpha, str) and self.threshold is not None:
            raise LayerProblem(f'ternary with alpha={alpha!r} takes no threshold (QKeras asserts it)', 'remove threshold')
        if self.threshold is not None and not isinstance(self.threshold, (int, float)):
            raise LayerProblem(f'threshold must be a number, got {self.threshold!r}', 'fix the quantizer in the model')
        unrolls = self.number_of_unrolls
        if not isinstance(unrolls, int) or not 0 <= unrolls <= 100:
            raise LayerProblem(
                f'number_of_unrolls must be an integer from 0 to 100, got {unrolls!r}', 'fix the quantizer in the model'
            )
        return ternary(w, alpha, None if self.threshold is None else float(self.threshold), unrolls)


@dataclass(frozen=True)
class StochasticTernary(PrecomputedQuantizer):
    """qkeras.stochastic_ternary: random in training, exactly ternary(alpha, threshold) at inference."""

    MAPPING = 'weights only: ternary(alpha, threshold) at inference, computed once'
    ON_ACTIVATIONS = Ternary.ON_ACTIVATIONS

    alpha: Any = None
    threshold: Any = None
    temperature: float = 8.0
    use_real_sigmoid: bool = True
    number_of_unrolls: int = 5

    def values(self, w: np.ndarray, position: str) -> np.ndarray:
        return Ternary(self.alpha, self.threshold, False, self.number_of_unrolls).values(w, position)
