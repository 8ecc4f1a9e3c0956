"""Comparing two computations of the same tensor: the inputs that stress them, and how far apart they are.

Shared by verification (source framework vs HGQ2 model) and by every exporter's proof (HGQ2 model vs firmware
model). Bit-exactness is ``numpy.array_equal``; a float error is measured in units in the last place (float32)
of the tensor's largest magnitude, the scale-free size of what float32 rounding does.
"""

from __future__ import annotations

import numpy as np

STRESS_FACTOR = 4
INPUT_SETS = ('normal', 'stress')


def stress_inputs(x: np.ndarray, factor: float = STRESS_FACTOR) -> np.ndarray:
    """Inputs scaled up so that every quantizer saturates somewhere."""
    return (np.asarray(x) * factor).astype(np.float32)


def count_mismatches(reference: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """(values that differ, values compared) between two computations of one tensor."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(other, dtype=np.float64).reshape(ref.shape)
    return int(np.count_nonzero(ref != got)), int(ref.size)


def ulps_of_max(ref: np.ndarray, diff: float) -> float:
    """``diff`` in units in the last place (float32) of ``ref``'s largest magnitude."""
    peak = float(np.max(np.abs(ref))) if ref.size else 0.0
    return diff / float(np.spacing(np.float32(peak)) if peak > 0 else np.finfo(np.float32).tiny)
