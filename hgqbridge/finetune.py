"""Heterogeneous-bit-width fine-tuning: HGQ2's EBOPs-regularised training with a rising beta.

Every kernel weight and every activation feature of an imported model has its own trainable bit width; the
imported formats are their starting values, so before the first step the model computes exactly what the
source computed. Each epoch records (EBOPs, validation metric); the result is the smallest-EBOPs epoch whose
validation metric stays within ``tolerance`` of the imported model's, calibrated with ``trace_minmax``.

Importing this module is cheap (numpy only); Keras and hgq are imported when ``finetune`` runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpochRecord:
    epoch: int
    beta: float
    loss: float
    ebops: int
    val_metric: float
    pareto: bool = False


@dataclass
class FinetuneResult:
    model: Any  # the chosen keras.Model (a copy; the input model is left as it was)
    metric: str
    baseline_metric: float
    baseline_ebops: int
    chosen_epoch: int | None  # None: no epoch met the tolerance, the imported weights were kept
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def chosen(self) -> EpochRecord | None:
        return next((r for r in self.history if r.epoch == self.chosen_epoch), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            'metric': self.metric, 'baseline_metric': self.baseline_metric, 'baseline_ebops': self.baseline_ebops,
            'chosen_epoch': self.chosen_epoch, 'history': [asdict(r) for r in self.history],
        }


def metric_value(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Higher is better: accuracy (argmax agreement) or negative mean squared error."""
    if metric == 'accuracy':
        return float(np.mean(np.argmax(y_pred, -1) == np.argmax(y_true, -1)))
    return -float(np.mean((np.asarray(y_pred, np.float64) - y_true) ** 2))


def pareto_front(points: list[tuple[int, float]]) -> list[int]:
    """Indices of the (EBOPs lower-better, metric higher-better) points that no other point dominates."""
    keep = []
    for a, (ea, ma) in enumerate(points):
        dominated = any((eb <= ea and mb >= ma) and (eb < ea or mb > ma) for b, (eb, mb) in enumerate(points) if b != a)
        if not dominated:
            keep.append(a)
    return keep


def copy_model(model: Any) -> Any:
    """A deep copy of an HGQ2 model (through Keras's own serialisation; no custom code is loaded)."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def finetune(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int = 30,
    beta_min: float = 1e-7,
    beta_max: float = 1e-4,
    tolerance: float = 0.005,
    metric: str = 'accuracy',
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    verbose: int = 1,
    seed: int | None = 0,
) -> FinetuneResult:
    """Fine-tune a copy of ``model``; ``seed`` (Keras's global seed) makes runs repeatable, None leaves it."""
    import keras
    from hgq.utils.sugar import BetaScheduler, FreeEBOPs, PieceWiseSchedule

    from .converters.hgq.inspect import calibrate

    if seed is not None:
        keras.utils.set_random_seed(seed)
    work = copy_model(model)
    baseline = metric_value(metric, y_val, work.predict([x_val], verbose=0))
    baseline_ebops = calibrate(work, x)
    work.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss='categorical_crossentropy' if metric == 'accuracy' else 'mse',
    )
    schedule = PieceWiseSchedule([(0, beta_min, 'log'), (max(epochs - 1, 1), beta_max, 'constant')])
    history: list[EpochRecord] = []
    snapshots: list[list[np.ndarray]] = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            value = metric_value(metric, y_val, work.predict([x_val], verbose=0))
            history.append(EpochRecord(epoch, float(schedule(epoch)), float(logs.get('loss', np.nan)), int(logs.get('ebops', 0)), value))
            snapshots.append(work.get_weights())
            if verbose:
                print(f'epoch {epoch + 1:>3}/{epochs}: loss {logs.get("loss", np.nan):.4f}  val {metric} {value:.4f}  '
                      f'EBOPs {int(logs.get("ebops", 0)):>9}  beta {schedule(epoch):.2e}', flush=True)

    work.fit(
        x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True,
        callbacks=[BetaScheduler(schedule), FreeEBOPs(), Record()],
    )
    for idx in pareto_front([(r.ebops, r.val_metric) for r in history]):
        history[idx].pareto = True
    ok = [r for r in history if r.pareto and r.val_metric >= baseline - tolerance]
    chosen = min(ok, key=lambda r: r.ebops) if ok else None
    result_model = copy_model(model)
    if chosen is not None:
        result_model.set_weights(snapshots[chosen.epoch])
    calibrate(result_model, x)
    return FinetuneResult(result_model, metric, baseline, int(baseline_ebops), chosen.epoch if chosen else None, history)
