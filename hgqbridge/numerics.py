"""Numbers that several converters compute: each written once, here, in the order the source frameworks use.

* ``is_pow2``: whether values are (signed) powers of two, the condition under which a float32 product is exact.
* ``bn_scale_offset``: inference batch normalization ``x * scale + offset`` with ``scale = rsqrt(var + eps) *
  gamma`` and ``offset = beta - mean * scale``, in float32, as TensorFlow's ``tf.nn.batch_normalization`` (Keras 2
  and 3, QKeras's QBatchNormalization and its folded convolutions) computes them; ``rsqrt`` is taken as
  ``1 / sqrt`` in float32, which is what the firmware sees (a scale that is not a power of two makes the source's
  own float32 products round, so such layers are measured, not required exact, whatever ulp rsqrt has).
* ``reciprocal_exact``: whether an average pooling's ``1 / area`` survives a quantizer unchanged.
* ``finite``: NaN and infinity in weights, refused by name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import LayerProblem

F32 = np.float32


def is_pow2(values: Any) -> bool:
    """True when every non-zero value is plus or minus a power of two (zeros allowed, non-finite values not)."""
    v = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    v = v[v != 0]
    if not np.all(np.isfinite(v)):
        return False
    return bool(np.all(np.frexp(v)[0] == 0.5))


def bn_scale_offset(
    gamma: np.ndarray | None, beta: np.ndarray | None, mean: np.ndarray, variance: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) in float32, in TensorFlow's order: ``inv = 1/sqrt(var + eps)``, ``inv *= gamma``,
    ``offset = beta - mean * inv`` (``-mean * inv`` without beta)."""
    inv = (F32(1) / np.sqrt((np.asarray(variance, F32) + F32(epsilon)).astype(F32))).astype(F32)
    if gamma is not None:
        inv = (inv * np.asarray(gamma, F32)).astype(F32)
    shift = (np.asarray(mean, F32) * inv).astype(F32)
    offset = -shift if beta is None else (np.asarray(beta, F32) - shift).astype(F32)
    return inv, offset.astype(F32)


def reciprocal_exact(quantize: Any, area: int) -> float:
    """What ``quantize`` (a format's quantizer) makes of ``1 / area``; the caller compares it with ``1 / area``."""
    return float(np.asarray(quantize(np.array([1.0 / area]))).ravel()[0])


def finite(name: str, *arrays: np.ndarray | None) -> None:
    """Refuse weights with NaN or infinity, naming them."""
    if any(a is not None and not np.all(np.isfinite(a)) for a in arrays):
        raise LayerProblem(f'{name} contains NaN or Inf', fix='re-train or re-save the model')
