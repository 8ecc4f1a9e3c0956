"""FixedFormat: the numpy reference quantizer and the ap_fixed spelling."""

import re

import numpy as np
import pytest

from hgqbridge.fixed import FixedFormat


@pytest.mark.parametrize(
    'fmt, x, expected',
    [
        # half to even: 1.5 LSB -> 2 LSB, 0.5 LSB -> 0, 2.5 LSB -> 2 LSB
        (FixedFormat(1, 0, 7), [1.5 / 128, 0.5 / 128, -0.5 / 128, 2.5 / 128], [2 / 128, 0, 0, 2 / 128]),
        (FixedFormat(1, 0, 7, 'RND'), [0.5 / 128, -0.5 / 128, 2.5 / 128], [1 / 128, 0, 3 / 128]),
        (FixedFormat(1, 0, 7, 'TRN'), [0.9 / 128, -0.1 / 128], [0, -1 / 128]),
        # SAT: [-2^i, 2^i - 2^-f]; SAT_SYM: +-(2^i - 2^-f)
        (FixedFormat(1, 3, 4), [100.0, -100.0], [8 - 1 / 16, -8.0]),
        (FixedFormat(1, 3, 4, overflow='SAT_SYM'), [100.0, -100.0], [8 - 1 / 16, -(8 - 1 / 16)]),
        # unsigned: negatives saturate to 0
        (FixedFormat(0, 0, 4), [-3.0, 0.09375, 2.0], [0.0, 0.125, 0.9375]),
        # negative i and negative f
        (FixedFormat(1, -2, 5), [1.0, -1.0], [0.21875, -0.25]),
        (FixedFormat(1, 6, -3), [4.0, 12.0, 20.0], [0.0, 16.0, 16.0]),
        # WRAP
        (FixedFormat(1, 2, 0, 'TRN', 'WRAP'), [4.0, 5.0, -5.0], [-4.0, -3.0, 3.0]),
    ],
)
def test_quantize(fmt: FixedFormat, x: list, expected: list) -> None:
    assert np.array_equal(fmt.quantize(np.array(x)), np.array(expected))


@pytest.mark.parametrize(
    'fmt, text',
    [
        (FixedFormat(1, 0, 7), 'ap_fixed<8,1,AP_RND_CONV,AP_SAT>'),
        (FixedFormat(0, 2, 4), 'ap_ufixed<6,2,AP_RND_CONV,AP_SAT>'),
        (FixedFormat(1, 3, 4, 'RND_CONV', 'SAT_SYM'), 'ap_fixed<8,4,AP_RND_CONV,AP_SAT_SYM>'),
        (FixedFormat(1, 5, 10, 'TRN', 'WRAP'), 'ap_fixed<16,6,AP_TRN,AP_WRAP>'),
    ],
)
def test_ap_type_round_trips(fmt: FixedFormat, text: str) -> None:
    assert fmt.ap_type() == text
    assert FixedFormat.parse(text) == fmt


def test_parse_short_forms() -> None:
    assert FixedFormat.parse('fixed<16,6>') == FixedFormat(1, 5, 10, 'TRN', 'SAT')
    assert FixedFormat.parse('ufixed<8,0>') == FixedFormat(0, 0, 8, 'TRN', 'SAT')
    for bad in ('int8', 'fixed<16>', 'fixed<a,b>', 'fixed<0,0>', 'fixed<16,6,AP_FOO>'):
        with pytest.raises(ValueError):
            FixedFormat.parse(bad)


def test_covering_is_exact_and_minimal() -> None:
    x = np.array([-3.25, 0.5, 7.0])
    fmt = FixedFormat.covering(x)
    assert (fmt.k, fmt.i, fmt.f) == (1, 3, 2)
    assert np.array_equal(fmt.quantize(x), x)
    assert FixedFormat.covering(np.array([0.0, 1.5])) == FixedFormat(0, 1, 1, 'TRN', 'SAT')


def test_union() -> None:
    assert FixedFormat(1, 2, 3).union(FixedFormat(0, 5, 1)) == FixedFormat(1, 5, 3)


@pytest.mark.parametrize('round_mode', ['TRN', 'RND', 'RND_CONV'])
@pytest.mark.parametrize('overflow', ['SAT', 'SAT_SYM', 'WRAP'])
def test_format_array_obeys_its_modes(round_mode: str, overflow: str) -> None:
    """Per-element formats quantize exactly as the single format of each element does, in every mode."""
    from hgqbridge.fixed import FormatArray

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 3, (64, 4)), np.arange(-8, 8, 0.125).reshape(-1, 4)])  # ties included
    k, i, f = np.array([[1, 0, 1, 1]]), np.array([[0, 2, 1, -1]]), np.array([[2, 3, 0, 3]])
    got = FormatArray(k, i, f, round_mode, overflow).quantize(x)
    for c in range(4):
        want = FixedFormat(int(k[0, c]), int(i[0, c]), int(f[0, c]), round_mode, overflow).quantize(x[:, c])
        assert np.array_equal(got[:, c], want), (c, round_mode, overflow)


@pytest.mark.parametrize(
    'round_mode, overflow, expected',
    [
        ('TRN', 'SAT', [0.25, 0.75, -1.0]),  # the cases the design review found FormatArray getting wrong
        ('RND_CONV', 'WRAP', [0.5, -0.75, 0.75]),
    ],
)
def test_format_array_by_hand(round_mode: str, overflow: str, expected: list[float]) -> None:
    from hgqbridge.fixed import FormatArray

    fmt = FormatArray(np.array([1]), np.array([0]), np.array([2]), round_mode, overflow)
    assert np.array_equal(fmt.quantize(np.array([0.4, 1.3, -1.3])), np.array(expected))


@pytest.mark.parametrize(
    'values, kif',
    [
        ([2.0**-64], (0, -63, 64)),  # QKeras's po2 code for 0 in an 8-bit quantized_po2: +2^-64
        ([-(2.0**-64), 0.5], (1, 0, 64)),
        ([2.0**64], (0, 65, -64)),
        ([2.0**-126, 1.0], (0, 1, 126)),  # the smallest normal float32 next to 1
        ([0.0, 0.0], (0, 0, 0)),
        ([np.float32(0.1)], (0, -3, 27)),  # a float32 value holds exactly with its own 27 fractional bits
    ],
)
def test_format_array_holds_extreme_values_exactly(values: list, kif: tuple) -> None:
    from hgqbridge.fixed import FormatArray

    x = np.array(values, dtype=np.float32).astype(np.float64)
    fmt = FormatArray.covering(x)
    assert (int(fmt.k[0]), int(fmt.i[0]), int(fmt.f[0])) == kif
    assert np.array_equal(fmt.quantize(x), x)


@pytest.mark.parametrize(
    'values, message',
    [
        ([float(np.float32(1e-45))], 'needs 149 fractional bits'),  # a float32 denormal
        ([float(np.finfo(np.float32).smallest_normal) / 2], 'needs 127 fractional bits'),
        ([2.0**-64, 2.0**64], 'steps of 2^-64 up to 2^65'),  # 2^64 * 2^64 overflows float32
        ([np.inf], 'no fixed-point format holds'),
        ([np.nan], 'no fixed-point format holds'),
    ],
)
def test_format_array_refuses_what_it_cannot_hold(values: list, message: str) -> None:
    from hgqbridge.fixed import FormatArray

    with pytest.raises(ValueError, match=re.escape(message)):
        FormatArray.covering(np.array(values).reshape(-1, 1))


def test_covering_refuses_instead_of_rounding() -> None:
    with pytest.raises(ValueError, match='needs 27 fractional bits, more than the 24'):
        FixedFormat.covering(np.array([np.float32(0.1)], dtype=np.float64))
    capped = FixedFormat.covering(np.array([0.1]), inexact_ok=True)  # data meant to be rounded (a firmware port)
    assert capped.f == 24
