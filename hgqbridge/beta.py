"""The automatic beta rule, the learning-rate schedule and the time/epoch budget of a fine-tuning run.

HGQ2 minimises ``task_loss + beta * EBOPs``. The two terms are on unrelated scales (a cross-entropy of 0.1 next to
10^5 EBOPs), so a fixed beta range is right for one model and useless for the next. The rule here measures the
scale on the model itself before the first step:

    beta_eq = L_val / EBOPs_0

where ``L_val`` is the task loss of the starting model on the *validation* split and ``EBOPs_0`` its EBOPs after
calibration: at ``beta_eq`` the EBOPs term equals the loss the model must keep. (The training loss would be the
wrong scale: a small QKeras model often has memorised its training split, loss ~0.002, which makes beta vanish.)
Beta then rises log-linearly from ``LOW * beta_eq`` (the EBOPs term is a third of the validation loss: it trims
bits that carry nothing) to ``HIGH * beta_eq`` (300 times the loss at the starting size: it dominates even after
the model has shrunk 10-30x), so each run sweeps from "accuracy first" to "size first" and the Pareto front
records every trade on the way. ``L_val`` is floored at 1 % of the chance-level loss (ln C for C classes, the
target variance for mse), so a perfect model does not get beta = 0. Measured on the four QKeras fixtures
(jet tagger: L_val 0.21, EBOPs 2.2e5, beta_eq 9.8e-7) it reproduces the range the benchmark had set by hand.

Experts can still give ``beta_min``/``beta_max``; a sweep scales the automatic range per trial.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

#: beta_min = LOW * beta_eq, beta_max = HIGH * beta_eq.
LOW = 0.3
HIGH = 300.0
#: the learning rate falls from its start to this fraction of it (half a cosine) over the run.
LR_FLOOR = 0.3

_UNITS = {'s': 1.0, 'm': 60.0, 'min': 60.0, 'h': 3600.0}


@dataclass(frozen=True)
class BetaRange:
    beta_min: float
    beta_max: float
    rule: str  # how it was set, for the report


def task_loss(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    """The loss the run trains on: categorical cross-entropy (accuracy) or mean squared error."""
    y64, p64 = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    if metric == 'accuracy':
        return float(np.mean(-np.sum(y64 * np.log(np.clip(p64, 1e-7, 1.0)), axis=-1)))
    return float(np.mean((p64 - y64) ** 2))


def chance_loss(metric: str, y: np.ndarray) -> float:
    """The loss of a model that knows nothing: ln(C) for C classes, the variance of the targets for mse."""
    if metric == 'accuracy':
        return math.log(max(int(np.asarray(y).shape[-1]), 2))
    return float(np.var(np.asarray(y, np.float64))) or 1.0


def auto_beta(loss: float, ebops: float, chance: float, scale: float = 1.0) -> BetaRange:
    """The rule of this module; ``scale`` multiplies both ends (a sweep trial's choice)."""
    floor = 0.01 * chance
    ref = max(loss, floor) if np.isfinite(loss) else chance
    eq = ref / max(float(ebops), 1.0)
    lo, hi = LOW * eq * scale, HIGH * eq * scale
    used = 'validation loss' if ref == loss else 'floor: 1% of the chance-level loss'
    return BetaRange(
        lo,
        hi,
        f'automatic: beta_eq = L_val/EBOPs_0 = {ref:.4g}/{int(ebops)} = {eq:.3g} ({used}); '
        f'beta {LOW:g}x..{HIGH:g}x beta_eq' + (f', scaled x{scale:g}' if scale != 1.0 else ''),
    )


def beta_at(epoch: int, epochs: int, beta: BetaRange) -> float:
    """Log-linear from beta_min at the first epoch to beta_max at the last."""
    if epochs <= 1:
        return beta.beta_min
    t = min(max(epoch / (epochs - 1), 0.0), 1.0)
    return float(math.exp(math.log(beta.beta_min) + t * (math.log(beta.beta_max) - math.log(beta.beta_min))))


def lr_at(epoch: int, epochs: int, lr: float) -> float:
    """Half a cosine from ``lr`` to ``LR_FLOOR * lr``: large steps while beta is small, fine steps at the end."""
    t = min(max(epoch / max(epochs - 1, 1), 0.0), 1.0)
    return float(lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))))


def parse_budget(text: str) -> float:
    """'90s', '10m', '1.5h' (or bare seconds) -> seconds; ValueError for anything else."""
    match = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*', text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f'{text!r} is not a time budget; write e.g. 90s, 10m or 1.5h')
    return float(match.group(1)) * _UNITS[match.group(2) or 's']


def planned_epochs(epochs: int, budget_s: float | None, seconds_per_epoch: float | None) -> int:
    """How many more epochs: ``epochs``, or fewer when the time left allows fewer (at least 1)."""
    if budget_s is None or not seconds_per_epoch:
        return epochs
    return min(epochs, max(1, int(budget_s / seconds_per_epoch)))


def auto_batch(n: int) -> int:
    """About 40 optimiser steps per epoch (16 to 1024 samples a batch): a bit width moves by roughly one learning
    rate per Adam step, so a small training split with large batches would barely move any in a run."""
    return int(min(max(n // 40, 16), 1024))
