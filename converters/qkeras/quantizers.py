"""QKeras quantizers: a small grammar for strings and dicts, typed specs, and the exact fixed-point mapping.

Nothing here evaluates text. ``quantized_relu(6, 2)`` and
``{"class_name": "quantized_bits", "config": {...}}`` both become typed objects (``QuantizedBits``,
``QuantizedRelu``, ``FloatActivation``) whose ``fixed_format(position)`` returns the HGQ2 format under which
HGQ2 computes exactly what QKeras computes, or raises ``LayerProblem`` with the reason.

The mapping (../shared/reference/qkeras-semantics.md §1.1, §1.8), verified against real QKeras by the tests:
``quantized_bits(bits, integer, symmetric, keep_negative, alpha∈{None, 1})`` →
``kif(k=keep_negative, i=integer, f=bits-k-integer)``, RND_CONV, SAT (SAT_SYM when symmetric and signed);
``quantized_relu(bits, integer)`` → ``kif(0, integer, bits-integer)``, RND_CONV, SAT.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem, QuantizerSyntaxError
from hgqbridge.fixed import FixedFormat, FormatArray

from ..hgq.composite_specs import ClippedQuantizeSpec, LeakyQuantizeSpec
from ..hgq.specs import Spec
from .emulation import auto_scaled_bits, scaled_bits, sign_bits
from .grammar import parse_string
from .precomputed import Binary, QuantizedPo2, QuantizedReluPo2, StochasticBinary, StochasticTernary, Ternary
from .qbase import ActivationPlan, FormatQuantizer, WeightPlan, check_common, check_integer, effective_alpha, exact_formats
from .registry import QUANTIZERS


@dataclass(frozen=True)
class FloatActivation:
    """A plain (float) Keras activation named by a string: relu, linear, softmax, ..."""

    name: str

    def fixed_format(self, position: str) -> FixedFormat | None:
        return None


@dataclass(frozen=True)
class QuantizedBits(FormatQuantizer):
    """qkeras.quantized_bits, with its positional argument order."""

    MAPPING = (
        'alpha 1 (or None off kernels): kif(keep_negative, integer, bits-keep_negative-integer), RND_CONV, SAT (SAT_SYM '
        "if symmetric), exact for |x| < 2^(24-f) (QKeras's float32 x + (xq - x)); kernel alpha auto/auto_po2/numbers "
        "computed once as QKeras does; 1-bit alpha='auto' refused (QKeras's weights are NaN)"
    )

    bits: int = 8
    integer: int = 0
    symmetric: int = 0
    keep_negative: bool = True
    alpha: Any = None
    use_stochastic_rounding: bool = False
    scale_axis: Any = None
    qnoise_factor: float = 1.0
    var_name: Any = None
    use_ste: bool = True
    use_variables: bool = False
    elements_per_scale: Any = None
    min_po2_exponent: Any = None
    max_po2_exponent: Any = None
    post_training_scale: Any = None
    semantics: str = '0.9.0'  # 'head' for configs written by QKeras HEAD / qkeras-v3 (they carry post_training_scale)

    def effective_alpha(self, position: str) -> Any:
        return effective_alpha(self.alpha, position)

    def float_rounded(self, position: str) -> bool:
        """True when the weights get a non-power-of-two scale, so QKeras's float32 sums over them round."""
        alpha = self.effective_alpha(position)
        if self.post_training_scale is not None:
            scale = np.abs(np.asarray(self.post_training_scale, dtype=np.float64)).ravel()
            return not all(v > 0 and float(np.log2(v)).is_integer() for v in scale)
        if alpha is None or alpha == 'auto_po2':
            return False
        if alpha == 'auto':
            return True
        a = float(alpha)
        return not (a > 0 and float(np.log2(a)).is_integer())

    def weight_plan(self, w: np.ndarray, position: str) -> WeightPlan:
        """Fixed formats quantize at run time; scaled ones (alpha auto/auto_po2/number) are computed here once."""
        alpha = self.effective_alpha(position)
        check_common(self.bits, self.qnoise_factor)
        check_integer(self.integer)
        if self.bits == 1 and alpha == 'auto':  # zero levels: scale = max|w| * 2 / 0 = inf, weights inf * 0
            raise LayerProblem(
                "quantized_bits(1) with alpha='auto' has zero levels: QKeras computes its weights as inf * 0 = NaN",
                "give the 1-bit quantizer alpha=1 (or use binary()); with alpha='auto_po2' QKeras's weights are 0",
            )
        if self.bits == 1 and self.keep_negative and not isinstance(alpha, str):  # QKeras's sign path: alpha * sign(w)
            q = sign_bits(w, None if alpha is None else float(alpha))
            return q, exact_formats(q, position)
        if alpha is None or (not isinstance(alpha, str) and float(alpha) == 1.0):
            return w, self.fixed_format(position)
        frozen = None
        if self.post_training_scale is not None:
            frozen = np.asarray(self.post_training_scale, dtype=np.float32)
            if not isinstance(alpha, str) or not np.all(np.isfinite(frozen)) or frozen.size not in (1, w.shape[-1]):
                raise LayerProblem(
                    f'post_training_scale {self.post_training_scale!r} needs an auto alpha and one finite scale per output channel',
                    'fix the quantizer in the model',
                )
        if isinstance(alpha, str):  # 'auto' or 'auto_po2' (effective_alpha refuses anything else)
            q = auto_scaled_bits(w, self.bits, self.integer, bool(self.keep_negative), alpha, self.semantics == 'head', frozen)
        else:
            q = scaled_bits(w, self.bits, self.integer, int(self.symmetric), bool(self.keep_negative), float(alpha))
        return q, exact_formats(q, position)

    def fixed_format(self, position: str) -> FixedFormat:
        check_common(self.bits, self.qnoise_factor)
        check_integer(self.integer)
        alpha = self.effective_alpha(position)
        if isinstance(alpha, str) or (alpha is not None and float(alpha) != 1.0):
            raise LayerProblem(
                f'quantized_bits with alpha={alpha!r} on the {position} scales its values by a data-dependent or '
                'non-unit factor, which this version does not convert',
                'save the model with alpha=1 on this quantizer (QKeras applies alpha="auto_po2" when alpha is None on kernels)',
            )
        k = int(bool(self.keep_negative))
        if self.bits - k < 1:
            raise LayerProblem(
                f'quantized_bits({self.bits}) with keep_negative={bool(k)} is a sign function (a comparison), not a rounding of x',
                'use bits >= 2 for signed quantizers on activations (1-bit weights are converted)',
            )
        overflow = 'SAT_SYM' if (self.symmetric and k) else 'SAT'
        return FixedFormat(k, int(self.integer), int(self.bits) - k - int(self.integer), 'RND_CONV', overflow)


@dataclass(frozen=True)
class QuantizedRelu(FormatQuantizer):
    """qkeras.quantized_relu, with its positional argument order."""

    MAPPING = (
        'kif(0, integer, bits-integer), RND_CONV, SAT; use_sigmoid: kif(0, i+1, bits-1-i) then min(., 2^i - 2^(i-bits)); '
        'negative_slope 2^-s: kif(0, i, f) + slope * kif(1, i, f-s) of the negative side, f = bits-1-i; refused: '
        'use_sigmoid together with negative_slope'
    )

    bits: int = 8
    integer: int = 0
    use_sigmoid: int = 0
    negative_slope: float = 0.0
    use_stochastic_rounding: bool = False
    relu_upper_bound: Any = None
    is_quantized_clip: bool = True
    qnoise_factor: float = 1.0
    var_name: Any = None
    use_ste: bool = True
    use_variables: bool = False
    enable_fast_inference: bool = False

    def fixed_format(self, position: str) -> FixedFormat:
        check_common(self.bits, self.qnoise_factor)
        check_integer(self.integer)
        if self.use_sigmoid or self.negative_slope:
            raise LayerProblem(
                f'quantized_relu with {"use_sigmoid" if self.use_sigmoid else "negative_slope"} needs two quantization steps, '
                f"which are converted only in a QActivation or a layer's activation= (not on a {position})",
                'use quantized_bits or a plain quantized_relu there',
            )
        # relu_upper_bound acts only with is_quantized_clip=False, which QKeras does not save: ignored, as in QKeras.
        return FixedFormat(0, int(self.integer), int(self.bits) - int(self.integer), 'RND_CONV', 'SAT')

    def two_step(self) -> Spec | None:
        """The exact two-step emulation of use_sigmoid / negative_slope (None for the plain one-format relu).

        use_sigmoid: RNDC(x*2^f)/2^f on f = bits-1-integer, clipped to [0, 2^i - 2^(i-bits)] (the top is
        half a step off the grid). negative_slope = 2^-s: the positive side is kif(0, i, f), the negative
        side slope * RNDC(x*2^(f-s))/2^(f-s) clipped at -slope*2^i (qkeras/quantizers.py quantized_relu)."""
        if not self.use_sigmoid and not self.negative_slope:
            return None
        check_common(self.bits, self.qnoise_factor)
        check_integer(self.integer)
        if self.bits < 2:
            raise LayerProblem(
                f'quantized_relu({self.bits}) with use_sigmoid or negative_slope rounds ties like no fixed-point format',
                'use bits >= 2',
            )
        if self.use_sigmoid and self.negative_slope:
            raise LayerProblem('quantized_relu with both use_sigmoid and negative_slope is not converted', 'use one of them')
        i, f = int(self.integer), int(self.bits) - 1 - int(self.integer)
        if self.use_sigmoid:
            return ClippedQuantizeSpec(FixedFormat(0, i + 1, f, 'RND_CONV', 'SAT'), 2.0**i - 2.0 ** (i - self.bits))
        ns = float(self.negative_slope)
        if not (ns > 0 and float(np.log2(ns)).is_integer()):
            raise LayerProblem(
                f'negative_slope must be a power of two (QKeras asserts it), got {self.negative_slope}',
                'use negative_slope 2^-s, as QKeras requires',
            )
        s = -int(np.log2(ns))
        if i + f - s < 0:
            raise LayerProblem(
                f'quantized_relu({self.bits}, {self.integer}, negative_slope=2^-{s}): its negative side would have '
                f'{i + f - s} integer plus fractional bits, which no fixed-point format has',
                f'use at least {s + 1 - i} bits, or a negative_slope of at least 2^-{i + f}',
            )
        return LeakyQuantizeSpec(FixedFormat(0, i, f, 'RND_CONV', 'SAT'), FixedFormat(1, i, f - s, 'RND_CONV', 'SAT'), ns)


@dataclass(frozen=True)
class QuantizedTanh(FormatQuantizer):
    """qkeras.quantized_tanh: hard tanh clip(x, -1, 1) rounded to bits-1 fractional bits."""

    MAPPING = 'hard (use_real_tanh=False), bits >= 2: kif(1, 0, bits-1), RND_CONV, SAT (SAT_SYM if symmetric), on x'

    bits: int = 8
    use_stochastic_rounding: bool = False
    symmetric: bool = False
    use_real_tanh: bool = False

    def fixed_format(self, position: str) -> FixedFormat:
        check_common(self.bits, 1.0)
        if self.use_real_tanh:
            raise LayerProblem(
                'quantized_tanh(use_real_tanh=True) computes a real tanh, not a fixed-point function', 'use the hard tanh'
            )
        if self.bits < 2:
            raise LayerProblem('quantized_tanh(1) has no fractional bit to round to', 'use bits >= 2')
        return FixedFormat(1, 0, self.bits - 1, 'RND_CONV', 'SAT_SYM' if self.symmetric else 'SAT')


@dataclass(frozen=True)
class QuantizedSigmoid(FormatQuantizer):
    """qkeras.quantized_sigmoid: hard sigmoid clip(x/2 + 1/2, 0, 1) rounded to bits fractional bits.

    Exactly ``(Q(x) + 1) / 2`` with Q = kif(1, 0, bits-1), RND_CONV: adding the even integer 2^(bits-1)
    before halving keeps half-to-even ties (bits >= 2); symmetric's lower bound 2^-bits is SAT_SYM's.
    """

    MAPPING = 'hard, bits >= 2: kif(1, 0, bits-1) RND_CONV SAT (SAT_SYM if symmetric) on x, then affine (x/2 + 1/2)'

    bits: int = 8
    symmetric: bool = False
    use_real_sigmoid: bool = False
    use_stochastic_rounding: bool = False

    def fixed_format(self, position: str) -> FixedFormat:
        check_common(self.bits, 1.0)
        if self.use_real_sigmoid:
            raise LayerProblem(
                'quantized_sigmoid(use_real_sigmoid=True) computes a real sigmoid, not a fixed-point function',
                'use the hard sigmoid',
            )
        if self.bits < 2:
            raise LayerProblem('quantized_sigmoid(1) rounds ties differently from any fixed-point quantizer', 'use bits >= 2')
        if position != 'activation':
            raise LayerProblem(f'quantized_sigmoid on a {position} is not converted', 'use quantized_bits for weights')
        return FixedFormat(1, 0, self.bits - 1, 'RND_CONV', 'SAT_SYM' if self.symmetric else 'SAT')

    def activation_plan(self) -> ActivationPlan:
        return self.fixed_format('activation'), (0.5, 0.5)


@dataclass(frozen=True)
class BinarySigmoid(FormatQuantizer):
    """QKeras's binary_sigmoid function: round(clip(x/2 + 1/2, 0, 1)), i.e. 1 for x > 0, else 0 (0.5 ties to 0).

    A saturating unsigned quantizer whose only steps are 0 and 2^-23 (kif(0, -22, 23), RND_CONV) is exactly that
    step for every input with at most 23 fractional bits (QKeras's own float32 ``x/2 + 1/2`` loses anything finer);
    the affine scale 2^23 makes the step 1.
    """

    MAPPING = 'kif(0, -22, 23) RND_CONV SAT, then affine x * 2^23: 1[x > 0], exact for inputs with <= 23 fractional bits'
    STEP = FixedFormat(0, -22, 23, 'RND_CONV', 'SAT')

    def fixed_format(self, position: str) -> FixedFormat:
        if position != 'activation':
            raise LayerProblem(f'{type(self).__name__} on a {position} is not converted', 'use binary() for weights')
        return self.STEP

    def activation_plan(self) -> ActivationPlan:
        return self.fixed_format('activation'), (2.0**23, 0.0)


@dataclass(frozen=True)
class BinaryTanh(BinarySigmoid):
    """QKeras's binary_tanh function: 2 * binary_sigmoid(x) - 1, so +1 for x > 0 and -1 for x <= 0 (0 -> -1)."""

    MAPPING = 'kif(0, -22, 23) RND_CONV SAT, then affine x * 2^24 - 1: +1 for x > 0, -1 for x <= 0'

    def activation_plan(self) -> ActivationPlan:
        return self.fixed_format('activation'), (2.0**24, -1.0)


Quantizer = QuantizedBits | QuantizedRelu | QuantizedTanh | QuantizedSigmoid | FormatQuantizer | FloatActivation

_CLASSES: dict[str, Any] = {
    'quantized_bits': QuantizedBits,
    'quantized_relu': QuantizedRelu,
    'quantized_tanh': QuantizedTanh,
    'quantized_sigmoid': QuantizedSigmoid,
    'quantized_po2': QuantizedPo2,
    'quantized_relu_po2': QuantizedReluPo2,
    'binary': Binary,
    'stochastic_binary': StochasticBinary,
    'ternary': Ternary,
    'stochastic_ternary': StochasticTernary,
    'binary_sigmoid': BinarySigmoid,
    'binary_tanh': BinaryTanh,
}
for _name, _cls in _CLASSES.items():
    QUANTIZERS.register(_name, status=f'exact: {_cls.MAPPING}')(_cls)
for _name in ('quantized_hswish', 'quantized_linear'):
    QUANTIZERS.refuse(_name, 'this quantizer is not converted yet', 'use quantized_bits or quantized_relu')
QUANTIZERS.refuse(
    'bernoulli', 'bernoulli draws random numbers at inference, so no deterministic model computes it', 'use quantized_bits'
)
QUANTIZERS.refuse('quantized_ulaw', 'a logarithmic compander is not a fixed-point format', 'use quantized_bits')
# QKeras functions (not classes) that QActivation accepts by name; unquantized, they reach exactly 1.0, which no
# saturating fixed-point format of x holds (its maximum is 2^i - 2^-f), or need a comparison, not a rounding.
QUANTIZERS.refuse(
    'hard_sigmoid',
    'QKeras hard_sigmoid clip(x/2+1/2, 0, 1) reaches exactly 1.0, which no saturating fixed-point format holds',
    'use quantized_sigmoid(bits), which is converted exactly',
)
QUANTIZERS.refuse(
    'hard_tanh',
    'QKeras hard_tanh clip(x, -1, 1) reaches exactly 1.0, which no saturating fixed-point format holds',
    'use quantized_tanh(bits), which is converted exactly',
)
for _name in ('smooth_sigmoid', 'smooth_tanh'):
    QUANTIZERS.refuse(_name, f'{_name} has slope 0.1875 and is not quantized', 'use quantized_sigmoid / quantized_tanh')
QUANTIZERS.freeze()

#: Float activations that map to a Keras layer; anything else is refused by name.
FLOAT_ACTIVATIONS = ('linear', 'relu', 'softmax')


def make_quantizer(name: str, args: list[Any], kwargs: dict[str, Any]) -> Quantizer:
    """Build the typed spec for a quantizer or float activation name; raise LayerProblem if not supported."""
    entry = QUANTIZERS.entry(name)
    if entry is None:
        if not args and not kwargs and name in FLOAT_ACTIVATIONS:
            return FloatActivation(name)
        refusal = QUANTIZERS.refusal(name)
        if refusal is not None:
            raise LayerProblem(f'{name}: {refusal.reason}', refusal.fix)
        raise LayerProblem(
            f'unknown quantizer or activation {name!r}', f'supported: {", ".join(QUANTIZERS.names() + list(FLOAT_ACTIVATIONS))}'
        )
    cls: Any = entry.handler
    names = [f.name for f in fields(cls)]
    if len(args) > len(names):
        raise LayerProblem(
            f'{name} takes at most {len(names)} positional arguments, got {len(args)}', f'its arguments are {", ".join(names)}'
        )
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise LayerProblem(f'{name} has no argument(s) {", ".join(unknown)}', f'valid: {", ".join(names)}')
    values = dict(zip(names, args))
    duplicate = sorted(set(values) & set(kwargs))
    if duplicate:
        raise LayerProblem(f'{name} got {", ".join(duplicate)} both by position and by keyword', 'give each argument once')
    values.update(kwargs)
    return cls(**values)


def parse_quantizer(spec: Any) -> Quantizer | None:
    """A quantizer as found in a saved config (None, string or serialized dict) → typed spec, without eval."""
    if spec is None:
        return None
    if isinstance(spec, str):
        try:
            name, args, kwargs = parse_string(spec)
        except QuantizerSyntaxError as err:
            raise LayerProblem(err.message(), 'fix the quantizer string') from None
        return make_quantizer(name, args, kwargs)
    if isinstance(spec, dict) and isinstance(spec.get('class_name'), str):
        config = spec.get('config') or {}
        if not isinstance(config, dict):
            raise LayerProblem('a quantizer config must be a dict', 're-save the model', received=type(config).__name__)
        config = {k: v for k, v in config.items() if k != 'semantics'}
        if spec['class_name'] == 'quantized_bits' and 'post_training_scale' in config:
            config['semantics'] = 'head'  # only QKeras HEAD / qkeras-v3 save this field, and they compute auto_po2 differently
        return make_quantizer(spec['class_name'], [], config)
    raise LayerProblem(
        f'cannot read a quantizer from {spec!r}', 'expected a string like quantized_bits(6,0,alpha=1) or a serialized dict'
    )


def weight_plan(q: Quantizer | None, w: np.ndarray, position: str) -> tuple[np.ndarray, FixedFormat | FormatArray | None]:
    """How a weight is carried into HGQ2: (values, format), or (values, None) when the source keeps it float."""
    if q is None:
        return w, None
    if isinstance(q, FloatActivation):
        raise LayerProblem(f'the {position} quantizer names a float activation ({q.name})', 'use a quantized_bits quantizer')
    return q.weight_plan(w, position)
