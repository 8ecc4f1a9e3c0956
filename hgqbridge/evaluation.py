"""Honest evaluation: three disjoint splits and scores with their statistical uncertainty.

train fits the weights and bit widths; validation chooses the epoch (and applies the tolerance); test is only
ever reported. A data file without ``x_test``/``y_test`` gets its test split carved out of the validation split
(a fixed, seeded half), and the report says so: choosing on the same samples that are reported is optimistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CARVE_SEED = 20260218  # the fixed permutation that halves a validation split into validation + test


@dataclass(frozen=True)
class Score:
    """A metric on one split: the value, its standard error and where it comes from."""

    value: float
    se: float
    split: str
    n: int

    def text(self, metric: str) -> str:
        if metric == 'accuracy':
            return f'{100 * self.value:.2f} +- {100 * self.se:.2f} % ({self.split}, n={self.n})'
        return f'{self.value:.5g} +- {self.se:.2g} ({self.split}, n={self.n})'

    def to_dict(self) -> dict:
        return {'value': self.value, 'se': self.se, 'split': self.split, 'n': self.n}


@dataclass
class Splits:
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_source: str  # 'x_test' or how it was carved

    def sizes(self) -> dict[str, int]:
        return {'train': len(self.x), 'validation': len(self.x_val), 'test': len(self.x_test)}

    def to_dict(self) -> dict:
        return {**self.sizes(), 'test_source': self.test_source}


def metric_value(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Higher is better: accuracy (argmax agreement) or negative mean squared error."""
    if metric == 'accuracy':
        return float(np.mean(np.argmax(y_pred, -1) == np.argmax(y_true, -1)))
    return -float(np.mean((np.asarray(y_pred, np.float64) - y_true) ** 2))


def noise_warning(metric: str, validation: Score, tolerance: float) -> list[str]:
    """A warning when the validation split is too small for ``tolerance``: the choice of the smallest model within
    tolerance among many epochs then follows the split's noise, and the test accuracy can fall by more."""
    if metric != 'accuracy' or validation.se <= tolerance:
        return []
    return [
        f'the validation split ({validation.n} samples) measures accuracy to +- {100 * validation.se:.2f} pp, more '
        f'than the tolerance ({100 * tolerance:.2f} pp): choosing the smallest model within tolerance follows that '
        'noise, so its test accuracy can be lower by more than the tolerance. Give a larger x_val (about '
        f'{int(np.ceil(validation.value * (1 - validation.value) / tolerance**2))} samples), or a larger --tolerance'
    ]


def score(metric: str, y_true: np.ndarray, y_pred: np.ndarray, split: str) -> Score:
    """The metric with its standard error: binomial sqrt(p(1-p)/n) for accuracy, std/sqrt(n) of the per-sample
    squared error for mse."""
    n = len(y_true)
    value = metric_value(metric, y_true, y_pred)
    if metric == 'accuracy':
        se = math.sqrt(max(value * (1 - value), 0.0) / max(n, 1))
    else:
        per = np.mean((np.asarray(y_pred, np.float64) - y_true).reshape(n, -1) ** 2, axis=-1)
        se = float(np.std(per, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return Score(value, se, split, n)


def make_splits(data: dict[str, np.ndarray]) -> Splits:
    """The three splits; without x_test the validation split is halved (seeded), never the training split."""
    if 'x_test' in data and 'y_test' in data:
        return Splits(data['x'], data['y'], data['x_val'], data['y_val'], data['x_test'], data['y_test'], 'x_test')
    n = len(data['x_val'])
    order = np.random.default_rng(CARVE_SEED).permutation(n)
    val, test = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    return Splits(
        data['x'],
        data['y'],
        data['x_val'][val],
        data['y_val'][val],
        data['x_val'][test],
        data['y_val'][test],
        f'half of x_val (seeded, {len(test)} of {n} rows; the data has no x_test)',
    )
