"""Comparisons shared by verification and export: stress inputs, mismatch counts, float errors in ulps."""

from __future__ import annotations

import numpy as np

from hgqbridge.compare import count_mismatches, stress_inputs, ulps_of_max


def test_stress_inputs_are_four_times_the_data_in_float32() -> None:
    x = np.array([[0.5, -1.25]], dtype=np.float64)
    s = stress_inputs(x)
    assert s.dtype == np.float32 and np.array_equal(s, np.array([[2.0, -5.0]], np.float32))


def test_count_mismatches_flattens_the_firmware_output() -> None:
    ref = np.zeros((2, 3))
    fw = np.zeros(6)
    fw[4] = 1
    assert count_mismatches(ref, fw) == (1, 6)


def test_ulps_of_max_is_scale_free() -> None:
    ref = np.array([1.0, 0.5], np.float32)
    assert ulps_of_max(ref, float(np.spacing(np.float32(1.0)))) == 1.0
    assert ulps_of_max(ref * 1024, float(np.spacing(np.float32(1024.0))) * 3) == 3.0
    assert ulps_of_max(np.zeros(2), 0.0) == 0.0
