"""Heterogeneous-bit-width fine-tuning: HGQ2's EBOPs-regularised training with a rising beta.

Every kernel weight and every activation feature of an imported model has its own trainable bit width; the
imported formats are their starting values, so before the first step the model computes exactly what the
source computed. Each epoch records (EBOPs, validation metric) and keeps the Pareto front (on disk with
``out_dir``: checkpoints + pareto.json); the result is the smallest-EBOPs front epoch whose validation metric
stays within ``tolerance`` of the imported model's, calibrated with ``trace_minmax``.

Failure modes are handled, not left to the user: when an epoch collapses (loss not finite, or the metric far
below the imported model's), the run restores the last good weights and backs beta off tenfold; when it
collapses from the imported weights themselves, it also adds a fractional bit to every quantizer. With
``out_dir`` an interrupted run resumes from its last epoch (``resume=True``). ``diagnose=True`` repeats the run
with HGQ2's ``dummy`` (float) quantizers, to tell a quantization problem from a model or optimiser problem.

Importing this module is cheap (numpy only); Keras and hgq are imported when ``finetune`` runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .inspect import calibrate, fixed_point_quantizers, set_beta
from .models import copy_model

BACK_OFF = 0.1  # beta multiplier after a collapse


@dataclass
class EpochRecord:
    epoch: int
    beta: float
    loss: float
    ebops: int
    val_metric: float
    pareto: bool = False
    event: str = ''


@dataclass
class FinetuneResult:
    model: Any  # the chosen keras.Model (a copy; the input model is left as it was)
    metric: str
    baseline_metric: float
    baseline_ebops: int
    chosen_epoch: int | None  # None: no epoch met the tolerance, the imported weights were kept
    history: list[EpochRecord] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # names inside out_dir
    diagnosis: str = ''
    out_dir: str = ''

    @property
    def chosen(self) -> EpochRecord | None:
        return next((r for r in self.history if r.epoch == self.chosen_epoch), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            'metric': self.metric,
            'baseline_metric': self.baseline_metric,
            'baseline_ebops': self.baseline_ebops,
            'chosen_epoch': self.chosen_epoch,
            'history': [asdict(r) for r in self.history],
            'events': self.events,
            'files': self.files,
            'diagnosis': self.diagnosis,
        }


def metric_value(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Higher is better: accuracy (argmax agreement) or negative mean squared error."""
    if metric == 'accuracy':
        return float(np.mean(np.argmax(y_pred, -1) == np.argmax(y_true, -1)))
    return -float(np.mean((np.asarray(y_pred, np.float64) - y_true) ** 2))


def collapsed(metric: str, baseline: float, record: EpochRecord) -> bool:
    """Loss not finite, or the metric far below the imported model's (20 points of accuracy, 4x the mse)."""
    if not np.isfinite(record.loss):
        return True
    if metric == 'accuracy':
        return record.val_metric < baseline - 0.2
    return record.val_metric < 4 * baseline - 1e-12


def pareto_front(points: list[tuple[int, float]]) -> list[int]:
    """Indices of the (EBOPs lower-better, metric higher-better) points that no other point dominates; of equal
    points only the first is kept."""
    keep = []
    for a, (ea, ma) in enumerate(points):
        dominated = any((eb <= ea and mb >= ma) and (eb < ea or mb > ma or b < a) for b, (eb, mb) in enumerate(points) if b != a)
        if not dominated:
            keep.append(a)
    return keep


def dummy_copy(model: Any) -> Any:
    """The same network with every quantizer replaced by HGQ2's ``dummy`` (float) quantizer."""
    import keras

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get('class_name') == 'QuantizerConfig':
                place = value.get('config', {}).get('place', 'datalane')
                return {**value, 'config': {'q_type': 'dummy', 'place': place}}
            return {k: strip(v) for k, v in value.items()}
        return value

    def clone(layer: Any) -> Any:
        return type(layer).from_config(strip(layer.get_config()))

    floated = keras.models.clone_model(model, clone_function=clone)
    for src, dst in zip(model.layers, floated.layers):
        for attr in ('kernel', 'bias'):
            if getattr(src, attr, None) is not None and getattr(dst, attr, None) is not None:
                getattr(dst, attr).assign(np.asarray(getattr(src, attr)))
    return floated


def _write_json(path: Path, value: Any) -> None:
    from .outputs import atomic_write_text

    atomic_write_text(path, json.dumps(value, indent=2, default=float) + '\n')


def _save_weights(model: Any, path: Path) -> None:
    tmp = path.with_name(f'.{path.name}.tmp.weights.h5')
    model.save_weights(tmp)
    os.replace(tmp, path)


def _widen(model: Any) -> None:
    """One more fractional bit for every fixed-point quantizer (after a collapse from the imported weights)."""
    for inner in fixed_point_quantizers(model):
        if hasattr(inner._f, 'assign'):
            inner._f.assign(inner._f + 1.0)


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
    learning_rate: float = 3e-3,
    batch_size: int = 64,
    out_dir: str | Path | None = None,
    resume: bool = False,
    diagnose: bool = False,
    verbose: int = 1,
    seed: int | None = 0,
    force: bool = False,
) -> FinetuneResult:
    """Fine-tune a copy of ``model``; ``seed`` (Keras's global seed) makes runs repeatable, None leaves it.
    ``out_dir``: a new folder (or, with ``force``, one an earlier run wrote); ``resume`` continues in it."""
    import keras
    from hgq.utils.sugar import FreeEBOPs, PieceWiseSchedule

    from .datafiles import check_training_data
    from .outputs import output_folder

    shapes = tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:])
    data = check_training_data({'x': x, 'y': y, 'x_val': x_val, 'y_val': y_val}, *shapes, metric, 'training data')
    x, y, x_val, y_val = data['x'], data['y'], data['x_val'], data['y_val']
    if seed is not None:
        keras.utils.set_random_seed(seed)
    out = output_folder(Path(out_dir), force, resume) if out_dir is not None else None
    work = copy_model(model)
    baseline = metric_value(metric, y_val, work.predict([x_val], verbose=0))
    baseline_ebops = calibrate(work, x)
    work.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss='categorical_crossentropy' if metric == 'accuracy' else 'mse'
    )
    schedule = PieceWiseSchedule([(0, beta_min, 'log'), (max(epochs - 1, 1), beta_max, 'constant')])
    state: dict[str, Any] = {'next_epoch': 0, 'beta_scale': 1.0, 'history': [], 'events': []}
    if out is not None:
        (out / 'checkpoints').mkdir(parents=True, exist_ok=True)
        if resume and (out / 'state.json').exists():
            state = _resume_state(out, work, epochs)
    history = [EpochRecord(**r) for r in state['history']]
    snapshots: dict[int, list[np.ndarray]] = {}  # epoch -> weights, for front members and the last good epoch
    last_good: list[np.ndarray] = work.get_weights()  # the imported weights, or where a resumed run stopped

    def beta_of(epoch: int) -> float:
        return float(schedule(epoch)) * state['beta_scale']

    class Beta(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            set_beta(work, beta_of(epoch))

    for epoch in range(state['next_epoch'], epochs):
        fit = work.fit(
            x, y, initial_epoch=epoch, epochs=epoch + 1, batch_size=batch_size, verbose=0, callbacks=[Beta(), FreeEBOPs()]
        )
        logs = {k: v[-1] for k, v in fit.history.items()}
        record = EpochRecord(
            epoch,
            beta_of(epoch),
            float(logs.get('loss', np.nan)),
            int(logs.get('ebops', 0)),
            metric_value(metric, y_val, work.predict([x_val], verbose=0)),
        )
        if collapsed(metric, baseline, record):
            from_start = not any(r.val_metric >= baseline - tolerance for r in history)
            work.set_weights(last_good)
            state['beta_scale'] *= BACK_OFF
            record.event = f'collapse: restored the last good weights, beta x{BACK_OFF:g}'
            if from_start and any('collapse' in r.event for r in history):
                _widen(work)
                record.event += ', one more fractional bit everywhere'
            state['events'].append(f'epoch {epoch + 1}: {record.event}')
        elif record.val_metric >= baseline - tolerance:
            last_good = work.get_weights()
        history.append(record)
        snapshots[epoch] = work.get_weights()
        _update_front(history, snapshots, out, work, epoch)
        if verbose:
            print(
                f'epoch {epoch + 1:>3}/{epochs}: loss {record.loss:.4f}  val {metric} {record.val_metric:.4f}  '
                f'EBOPs {record.ebops:>9}  beta {record.beta:.2e}' + (f'  [{record.event}]' if record.event else ''),
                flush=True,
            )
        if out is not None:
            _save_weights(work, out / 'last.weights.h5')
            state.update(next_epoch=epoch + 1, history=[asdict(r) for r in history])
            _write_json(out / 'state.json', state)

    ok = [r for r in history if r.pareto and not r.event and r.val_metric >= baseline - tolerance]
    chosen = min(ok, key=lambda r: r.ebops) if ok else None
    result_model = copy_model(model)
    if chosen is not None:
        if chosen.epoch in snapshots:
            result_model.set_weights(snapshots[chosen.epoch])
        elif out is not None:  # a resumed run: the front lives on disk
            result_model.load_weights(out / 'checkpoints' / f'epoch_{chosen.epoch:04d}.weights.h5')
    calibrate(result_model, x)
    result = FinetuneResult(
        result_model, metric, baseline, int(baseline_ebops), chosen.epoch if chosen else None, history, state['events']
    )
    if diagnose:
        result.diagnosis = _diagnose(model, x, y, x_val, y_val, metric, baseline, tolerance, epochs, learning_rate, batch_size)
    if out is not None:
        result.out_dir = str(out)
        _write_outputs(result, model, out)
    return result


def _resume_state(out: Path, work: Any, epochs: int) -> dict[str, Any]:
    """The state of an interrupted run, checked before it is trusted (a broken folder is an error, not a traceback)."""
    from .errors import DataFileError

    def broken(why: str) -> DataFileError:
        return DataFileError(
            f'the interrupted run cannot be resumed: {why}', where=str(out), fix='run again without --resume (with --force)'
        )

    try:
        state = json.loads((out / 'state.json').read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise broken('state.json is not readable JSON') from None
    fields = set(EpochRecord.__dataclass_fields__)
    ok = (
        isinstance(state, dict)
        and isinstance(state.get('next_epoch'), int)
        and 0 <= state['next_epoch'] <= epochs
        and isinstance(state.get('beta_scale'), (int, float))
        and np.isfinite(state['beta_scale'])
        and state['beta_scale'] > 0
        and isinstance(state.get('history'), list)
        and isinstance(state.get('events'), list)
        and all(isinstance(r, dict) and set(r) == fields for r in state['history'])
        and len(state['history']) == state['next_epoch']
    )
    if not ok:
        raise broken('state.json does not describe a run of this length')
    try:
        work.load_weights(out / 'last.weights.h5')
    except Exception as err:
        raise broken(f'last.weights.h5 does not fit the model ({type(err).__name__})') from None
    return state


def _update_front(history: list[EpochRecord], snapshots: dict, out: Path | None, work: Any, epoch: int) -> None:
    """Mark the Pareto front (collapsed epochs never belong); keep checkpoints for front members only."""
    eligible = [r for r in history if not r.event]
    front = {eligible[i].epoch for i in pareto_front([(r.ebops, r.val_metric) for r in eligible])}
    for r in history:
        r.pareto = r.epoch in front
    for e in list(snapshots):
        if e not in front:
            del snapshots[e]
    if out is None:
        return
    if epoch in front:
        _save_weights(work, out / 'checkpoints' / f'epoch_{epoch:04d}.weights.h5')
    for path in (out / 'checkpoints').glob('epoch_*.weights.h5'):
        if int(path.name[6:10]) not in front:
            path.unlink()
    rows = [
        {
            'epoch': r.epoch,
            'ebops': r.ebops,
            'val_metric': r.val_metric,
            'checkpoint': f'checkpoints/epoch_{r.epoch:04d}.weights.h5',
        }
        for r in history
        if r.pareto
    ]
    _write_json(out / 'pareto.json', sorted(rows, key=lambda row: row['ebops']))


def _diagnose(
    model: Any,
    x: Any,
    y: Any,
    x_val: Any,
    y_val: Any,
    metric: str,
    baseline: float,
    tolerance: float,
    epochs: int,
    learning_rate: float,
    batch_size: int,
) -> str:
    """Train a float (dummy-quantizer) copy the same way; compare what it reaches with the quantized run."""
    import keras

    floated = dummy_copy(model)
    floated.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss='categorical_crossentropy' if metric == 'accuracy' else 'mse'
    )
    start = metric_value(metric, y_val, floated.predict([x_val], verbose=0))
    floated.fit(x, y, epochs=max(1, epochs // 2), batch_size=batch_size, verbose=0)
    reached = metric_value(metric, y_val, floated.predict([x_val], verbose=0))
    if reached < start - tolerance:
        return (
            f'model or optimiser problem: the same training degrades even the float (dummy-quantizer) copy, from '
            f'{start:.4f} to {reached:.4f}; lower the learning rate or check the data'
        )
    return (
        f'quantization is the limit: the float (dummy-quantizer) copy goes from {start:.4f} to {reached:.4f} under the '
        f'same training (imported quantized model: {baseline:.4f}); lower beta or start from wider formats'
    )


def _write_outputs(result: FinetuneResult, imported: Any, out: Path) -> None:
    from .plots import bit_widths_png, pareto_png

    result.model.save(out / '.model.keras.tmp.keras')
    os.replace(out / '.model.keras.tmp.keras', out / 'model.keras')
    result.files = {
        'model': 'model.keras',
        'pareto_front': 'pareto.json',
        'history': 'history.json',
        'pareto_png': pareto_png(result, out / 'pareto.png').name,
        'bit_widths_png': bit_widths_png(imported, result.model, out / 'bit_widths.png').name,
    }
    _write_json(out / 'history.json', [asdict(r) for r in result.history])
    _write_json(out / 'report.json', result.to_dict())
