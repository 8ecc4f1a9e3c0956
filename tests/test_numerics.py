"""The numbers several converters compute, each once: powers of two, batch-norm scale and offset, 1/area, finiteness."""

from __future__ import annotations

import numpy as np
import pytest

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat
from hgqbridge.numerics import bn_scale_offset, finite, is_pow2, reciprocal_exact


@pytest.mark.parametrize(
    'values, expected',
    [
        ([1.0, 0.5, -4.0, 0.0, 2.0**-30], True),
        ([0.75], False),
        ([3.0], False),
        ([np.inf], False),
        ([np.nan], False),
        ([], True),
    ],
)
def test_is_pow2(values: list[float], expected: bool) -> None:
    assert is_pow2(np.array(values)) is expected


def test_bn_scale_offset_is_tensorflows_order() -> None:
    """rsqrt(var + eps) * gamma, then beta - mean * scale, each step rounded to float32 (the order TF uses)."""
    rng = np.random.default_rng(0)
    gamma, beta, mean = (rng.normal(size=1000).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.1, 4, 1000).astype(np.float32)
    scale, offset = bn_scale_offset(gamma, beta, mean, var, 1e-3)
    f32 = np.float32
    expect = (f32(1) / np.sqrt((var + f32(1e-3)).astype(f32))).astype(f32) * gamma
    assert scale.dtype == offset.dtype == np.float32
    assert np.array_equal(scale, expect.astype(f32)) and np.array_equal(offset, (beta - (mean * scale).astype(f32)).astype(f32))
    assert not np.array_equal(scale, (gamma / np.sqrt(var + f32(1e-3))).astype(f32))  # the other order differs in some channels
    no_gamma, no_beta = bn_scale_offset(None, None, mean, var, 1e-3)
    assert np.array_equal(no_beta, -(mean * no_gamma).astype(f32))


def test_reciprocal_exact() -> None:
    assert reciprocal_exact(FixedFormat(1, 0, 7).quantize, 4) * 4 == 1.0
    assert reciprocal_exact(FixedFormat(1, 0, 3).quantize, 9) * 9 != 1.0


def test_finite_names_the_weight() -> None:
    finite('the kernel', np.ones(3), None)
    with pytest.raises(LayerProblem, match='the kernel contains NaN or Inf'):
        finite('the kernel', np.array([1.0, np.inf]))
