"""What a fine-tuning run keeps on disk: the Pareto front with its checkpoints, the resumable state, the outputs.

out/state.json            where the run is (next epoch, beta range, planned epochs, history): --resume reads it
out/last.weights.h5       the weights after the last finished epoch
out/checkpoints/          one file per Pareto-front epoch (nothing else is kept)
out/pareto.json           the front: epoch, EBOPs, validation metric, checkpoint
out/model.keras, report.json, history.json, pareto.png, bit_widths.png   at the end
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

STATE_KEYS = {'next_epoch', 'beta_scale', 'history', 'events', 'planned', 'beta_min', 'beta_max', 'rule'}


def pareto_front(points: list[tuple[int, float]]) -> list[int]:
    """Indices of the (EBOPs lower-better, metric higher-better) points that no other point dominates; of equal
    points only the first is kept."""
    keep = []
    for a, (ea, ma) in enumerate(points):
        dominated = any((eb <= ea and mb >= ma) and (eb < ea or mb > ma or b < a) for b, (eb, mb) in enumerate(points) if b != a)
        if not dominated:
            keep.append(a)
    return keep


def write_json(path: Path, value: Any) -> None:
    from .outputs import atomic_write_text

    atomic_write_text(path, json.dumps(value, indent=2, default=float) + '\n')


def save_weights(model: Any, path: Path) -> None:
    tmp = path.with_name(f'.{path.name}.tmp.weights.h5')
    model.save_weights(tmp)
    os.replace(tmp, path)


def resume_state(out: Path, work: Any, fields: set[str]) -> dict[str, Any]:
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
    numbers = ('beta_scale', 'beta_min', 'beta_max')
    ok = (
        isinstance(state, dict)
        and set(state) == STATE_KEYS
        and isinstance(state['next_epoch'], int)
        and isinstance(state['planned'], int)
        and 0 <= state['next_epoch'] <= state['planned']
        and all(isinstance(state[k], (int, float)) and np.isfinite(state[k]) and state[k] > 0 for k in numbers)
        and isinstance(state['history'], list)
        and isinstance(state['events'], list)
        and all(isinstance(r, dict) and set(r) == fields for r in state['history'])
        and len(state['history']) == state['next_epoch']
    )
    if not ok:
        raise broken('state.json does not describe a fine-tuning run')
    try:
        work.load_weights(out / 'last.weights.h5')
    except Exception as err:
        raise broken(f'last.weights.h5 does not fit the model ({type(err).__name__})') from None
    return state


def update_front(history: list[Any], snapshots: dict, out: Path | None, work: Any, epoch: int) -> None:
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
        save_weights(work, out / 'checkpoints' / f'epoch_{epoch:04d}.weights.h5')
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
    write_json(out / 'pareto.json', sorted(rows, key=lambda row: row['ebops']))


def write_outputs(result: Any, imported: Any, out: Path) -> None:
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
    write_json(out / 'history.json', [asdict(r) for r in result.history])
    write_json(out / 'report.json', result.to_dict())
