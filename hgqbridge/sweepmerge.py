"""After the trials: one global Pareto front, the chosen model, its test score; and the proof that it deploys.

A point of the global front is a (trial, epoch) whose checkpoint a trial wrote; a point is kept only when no
point of any trial has fewer EBOPs and a validation metric as good. The chosen point is the front's smallest
within ``tolerance`` of the starting model on validation; its test score is what the sweep reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import Score, make_splits, noise_warning, score
from .runfiles import pareto_front, write_json


@dataclass
class SweepResult:
    model: Any
    metric: str
    out_dir: str
    front: list[dict] = field(default_factory=list)  # global Pareto points, lowest EBOPs first
    chosen: dict | None = None  # the front point chosen (None: the starting model is kept)
    scores: dict[str, Score] = field(default_factory=dict)
    baseline_ebops: int = 0
    chosen_ebops: int = 0
    runs: int = 0
    seconds: float = 0.0
    trials: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what limits the result (e.g. a validation split too small)

    def to_dict(self) -> dict[str, Any]:
        return {
            'metric': self.metric,
            'runs': self.runs,
            'seconds': self.seconds,
            'baseline_ebops': self.baseline_ebops,
            'chosen_ebops': self.chosen_ebops,
            'chosen': self.chosen,
            'scores': {k: s.to_dict() for k, s in self.scores.items()},
            'front': self.front,
            'trials': self.trials,
            'warnings': self.warnings,
        }


def trial_points(out: Path) -> tuple[list[dict], list[dict]]:
    """Every trial's Pareto points (with the trial's name and its checkpoint path relative to out) and reports."""
    points, reports = [], []
    for folder in sorted((out / 'trials').glob('run_*')):
        report_path, front_path = folder / 'report.json', folder / 'pareto.json'
        if not (report_path.is_file() and front_path.is_file()):
            continue  # a trial that never finished an epoch
        report = json.loads(report_path.read_text())
        reports.append({'trial': folder.name, **{k: report[k] for k in ('chosen_epoch', 'chosen_ebops', 'seconds', 'beta_rule')}})
        for row in json.loads(front_path.read_text()):
            points.append({**row, 'trial': folder.name, 'checkpoint': f'trials/{folder.name}/{row["checkpoint"]}'})
    return points, reports


def global_front(points: list[dict]) -> list[dict]:
    keep = pareto_front([(p['ebops'], p['val_metric']) for p in points])
    return sorted((points[i] for i in keep), key=lambda p: p['ebops'])


def merge(out: Path, runs: int, tolerance: float, metric: str, seconds: float, reference: float) -> Any:
    from .inspect import calibrate
    from .models import load_model
    from .start import training_start

    points, reports = trial_points(out)
    front = global_front(points)
    ok = [p for p in front if p['val_metric'] >= reference - tolerance]
    chosen = min(ok, key=lambda p: p['ebops']) if ok else None
    data = dict(np.load(out / 'inputs' / 'data.npz'))
    sp = make_splits(data)
    start = load_model(out / 'inputs' / 'model.keras')
    model, _ = training_start(start)
    baseline_ebops = calibrate(model, sp.x)
    scores: dict[str, Score] = {
        'original_validation': score(metric, sp.y_val, model.predict([sp.x_val], verbose=0), 'validation'),
        'original_test': score(metric, sp.y_test, model.predict([sp.x_test], verbose=0), 'test'),
    }
    if chosen is not None:
        model.load_weights(out / chosen['checkpoint'])
    chosen_ebops = calibrate(model, sp.x)
    scores['chosen_validation'] = score(metric, sp.y_val, model.predict([sp.x_val], verbose=0), 'validation')
    scores['chosen_test'] = score(metric, sp.y_test, model.predict([sp.x_test], verbose=0), 'test')
    result = SweepResult(model, metric, str(out), front, chosen, scores, int(baseline_ebops), int(chosen_ebops), runs)
    result.seconds, result.trials = round(seconds, 2), reports
    result.warnings = noise_warning(metric, scores['original_validation'], tolerance)
    model.save(out / 'model.keras')
    write_json(out / 'pareto.json', front)
    front_png(points, front, chosen, baseline_ebops, scores['original_validation'].value, metric, out / 'pareto.png')
    write_json(out / 'report.json', result.to_dict())
    return result


def front_png(points: list[dict], front: list[dict], chosen: dict | None, e0: int, m0: float, metric: str, path: Path) -> Path:
    from .plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for trial in sorted({p['trial'] for p in points}):
        mine = [p for p in points if p['trial'] == trial]
        ax.scatter([p['ebops'] for p in mine], [p['val_metric'] for p in mine], s=14, label=f'{trial} front')
    ax.plot([p['ebops'] for p in front], [p['val_metric'] for p in front], 'k--', lw=1, label='global front')
    ax.scatter([e0], [m0], marker='*', s=160, c='red', label='starting model')
    if chosen is not None:
        ax.scatter(
            [chosen['ebops']], [chosen['val_metric']], marker='o', s=120, facecolors='none', edgecolors='red', label='chosen'
        )
    ax.set_xscale('log')
    ax.set_xlabel('EBOPs')
    ax.set_ylabel(f'validation {metric}')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def prove(model: Any, target: str, out: Path, x: np.ndarray, export: bool) -> dict[str, Any]:
    """check (and with ``export``, export with its bit-exact proof) of a chosen model, for the same report."""
    from . import check
    from . import export as export_model

    report = check(model, target)
    proof: dict[str, Any] = {'target': target, 'deployable': report.deployable, 'check': report.to_text()}
    if export and report.deployable:
        done = export_model(model, target, out / 'export', x, force=True)
        proof.update(exported=str(out / 'export'), bit_exact=done.ok, export=done.to_text())
    return proof
