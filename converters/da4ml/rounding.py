"""Round-half-to-even (RND_CONV) for da4ml, which itself only rounds with TRN and RND.

QKeras rounds half to even, so a QKeras-exact HGQ2 model uses RND_CONV quantizers, and da4ml 0.6's
``FixedVariable.quantize`` asserts ``round_mode in ('TRN', 'RND')``. On a value ``x`` whose own grid is
``2^-F`` (every da4ml variable has one) and a target grid ``2^-f`` with ``f < F``, half-to-even rounding is
exactly

    RND_CONV_f(x) = TRN_f(x + 2^-(f+1) - 2^-F + b * 2^-F),   b = (TRN_f(x) - TRN_{f-1}(x)) * 2^f  in {0, 1}

(``b`` is the parity of the truncated result; with it a tie rounds up only when that would make the result
even, and every non-tie rounds to nearest). It costs two truncations, two constant additions and a shift,
all ordinary da4ml operations, so the traced logic, the C++ emulator and the generated RTL/HLS all compute
it. Saturation (SAT, SAT_SYM) clips first, as HGQ2 does; the bounds lie on the grid.

``rnd_conv_support()`` lets HGQ2's da4ml tracer use this: it swaps the ``quantize`` that
``hgq._dais_tracer.layers._base`` calls for one that handles RND_CONV here and passes every other mode on
unchanged, and restores it on exit. tests/converters/da4ml/test_rounding.py proves the identity against
HGQ2's own RND_CONV on every tie.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from hgqbridge.fixed import FixedFormat


def quantize_variable(v: Any, k: int, i: int, f: int, overflow: str) -> Any:
    """RND_CONV quantization of one da4ml FixedVariable to kif(k, i, f) with the given overflow mode."""
    from da4ml.trace import FixedVariable

    k, i, f = int(k), int(i), int(f)
    if k + i + f <= 0:
        return FixedVariable(0, 0, 1, hwconf=v.hwconf, opr='const')
    if v.low == v.high:  # a constant: quantize its value directly
        value = FixedFormat(k, i, f, 'RND_CONV', overflow).quantize(np.asarray(v.low, dtype=np.float64))
        return FixedVariable.from_const(float(value), hwconf=v.hwconf, _factor=1)
    if overflow in ('SAT', 'SAT_SYM'):
        fmt = FixedFormat(k, i, f, 'RND_CONV', overflow)
        v = v.max_of(fmt.low).min_of(fmt.high)
        overflow = 'WRAP'  # in range now; rounding cannot leave it because the bounds lie on the grid
    own_f = int(v.kif[2])
    if f >= own_f:
        return v.quantize(k, i, f, overflow, 'TRN')
    wide_i = max(int(v.kif[1]), i) + 2
    parity = v.quantize(1, wide_i, f, 'WRAP', 'TRN') - v.quantize(1, wide_i, f - 1, 'WRAP', 'TRN')
    shifted = v + (2.0 ** -(f + 1) - 2.0**-own_f) + parity * 2.0 ** (f - own_f)
    return shifted.quantize(k, i, f, overflow, 'TRN')


def quantize(x: Any, k: Any, i: Any, f: Any, overflow_mode: str = 'WRAP', round_mode: str = 'TRN') -> Any:
    """Drop-in for ``da4ml.trace.ops.quantize`` that also accepts ``round_mode='RND_CONV'``."""
    from da4ml.trace import FixedVariableArray
    from da4ml.trace.ops import quantize as da4ml_quantize

    if round_mode.upper() != 'RND_CONV':
        return da4ml_quantize(x, k, i, f, overflow_mode=overflow_mode, round_mode=round_mode)
    shape = x.shape
    ks, is_, fs = (np.broadcast_to(np.asarray(a), shape).ravel() for a in (k, i, f))
    out = [quantize_variable(v, kk, ii, ff, overflow_mode.upper()) for v, kk, ii, ff in zip(x._vars.ravel(), ks, is_, fs)]
    return FixedVariableArray(np.array(out, dtype=object).reshape(shape), x.solver_options, hwconf=x.hwconf)


@contextlib.contextmanager
def rnd_conv_support() -> Iterator[None]:
    """While active, HGQ2's da4ml tracer can mirror RND_CONV quantizers (see the module docstring)."""
    import hgq._dais_tracer.layers._base as tracer_base

    original = tracer_base.quantize
    tracer_base.quantize = quantize
    try:
        yield
    finally:
        tracer_base.quantize = original
