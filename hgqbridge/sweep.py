"""Many fine-tunes as Ray Tune trials, merged into one Pareto front.

    out/inputs/model.keras, data.npz    what every trial reads (copied once; on a cluster, out/ must be shared)
    out/ray/sweep/                      Ray Tune's experiment state: what ``resume`` restores
    out/trials/run_NN/                  each trial's own fine-tuning folder (hgqbridge.runfiles layout)
    out/pareto.json, pareto.png         the global front over every trial's front
    out/model.keras, report.json        the chosen model: smallest EBOPs within tolerance on validation

Each trial is ``hgqbridge.finetune`` with its own beta scale (of the automatic range), seed and learning rate.
By default Ray runs embedded on this machine with ``workers`` processes (one CPU each); ``address`` runs the same
sweep on an existing Ray cluster (``ray start --head`` or a managed one), whose nodes must have hgqbridge
installed and see ``out/`` at the same path. An interrupted sweep resumes with Ray Tune's own restore: finished
trials are kept, unfinished ones continue from their last epoch (finetune's own resume).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .sweepmerge import SweepResult

#: the trial grid, cycled: (beta scale of the automatic range, learning-rate factor). Run 0 is plain finetune.
GRID = [(1.0, 1.0), (3.0, 1.0), (0.3, 1.0), (10.0, 1.0), (1.0, 2.0), (3.0, 0.5), (30.0, 1.0), (0.1, 1.0)]


def trial_configs(runs: int, learning_rate: float) -> list[dict]:
    return [
        {'run': n, 'beta_scale': GRID[n % len(GRID)][0], 'learning_rate': learning_rate * GRID[n % len(GRID)][1], 'seed': n}
        for n in range(runs)
    ]


def _trial(config: dict) -> None:
    """One Ray Tune trial: a fine-tune in out/trials/run_NN, each epoch reported to Tune."""
    import tensorflow as tf
    from ray import tune

    from . import finetune
    from .models import load_model

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    config = config['trial']
    out = Path(config['out'])
    data = dict(np.load(out / 'inputs' / 'data.npz'))
    folder = out / 'trials' / f'run_{config["run"]:02d}'
    resume = (folder / 'state.json').exists()
    result = finetune(
        load_model(out / 'inputs' / 'model.keras'),
        data.pop('x'),
        data.pop('y'),
        data.pop('x_val'),
        data.pop('y_val'),
        **data,
        **config['options'],
        beta_scale=config['beta_scale'],
        learning_rate=config['learning_rate'],
        seed=config['seed'],
        out_dir=folder,
        resume=resume,
        force=not resume,
        verbose=0,
        on_epoch=lambda r: tune.report({'epoch': r.epoch, 'ebops': r.ebops, 'val_metric': r.val_metric, 'done': 0}),
    )
    chosen = result.chosen
    tune.report(
        {
            'epoch': len(result.history),
            'ebops': result.chosen_ebops,
            'val_metric': chosen.val_metric if chosen else result.baseline_metric,
            'done': 1,
        }
    )


class _Progress:
    """One line per finished trial and the best point so far (built lazily: ray.tune.Callback is heavy)."""

    @staticmethod
    def make(reference: float, tolerance: float, metric: str) -> Any:
        from ray import tune

        class Progress(tune.Callback):  # type: ignore[misc]
            best: tuple[int, float] | None = None
            done = 0

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                r = trial.last_result or {}
                ebops, val = int(r.get('ebops', 0)), float(r.get('val_metric', np.nan))
                if val >= reference - tolerance and (self.best is None or ebops < self.best[0]):
                    self.best = (ebops, val)
                self.done += 1
                cfg = trial.config.get('trial', trial.config)
                best = f'EBOPs {self.best[0]} at val {metric} {self.best[1]:.4f}' if self.best else 'none within tolerance yet'
                print(
                    f'trial {self.done}/{len(trials)} run_{cfg.get("run", 0):02d} (beta x{cfg.get("beta_scale", 1):g}, '
                    f'lr {cfg.get("learning_rate", 0):.2g}): EBOPs {ebops}, val {metric} {val:.4f}; best so far: {best}',
                    flush=True,
                )

        return Progress()


def _inputs(model: Any, data: dict[str, np.ndarray], out: Path) -> None:
    (out / 'inputs').mkdir(parents=True, exist_ok=True)
    model.save(out / 'inputs' / 'model.keras')
    known = {k: v for k, v in data.items() if k in ('x', 'y', 'x_val', 'y_val', 'x_test', 'y_test')}
    np.savez(out / 'inputs' / 'data.npz', **known)  # type: ignore[arg-type]  # numpy's stub: allow_pickle


def sweep(
    model: Any,
    data: dict[str, np.ndarray],
    out_dir: str | Path,
    *,
    runs: int = 4,
    workers: int = 1,
    address: str | None = None,
    epochs: int | None = None,
    budget: float | None = None,
    tolerance: float = 0.005,
    metric: str = 'accuracy',
    learning_rate: float = 3e-3,
    resume: bool = False,
    force: bool = False,
    verbose: int = 1,
) -> SweepResult:
    """Run ``runs`` fine-tunes as Ray Tune trials and merge their fronts; see the module docstring."""
    from ray import tune

    from .errors import HGQBridgeError
    from .outputs import output_folder

    t0 = time.perf_counter()
    if runs < 1 or workers < 1:
        raise HGQBridgeError(
            'a sweep needs at least one run and one worker',
            received=f'runs={runs}, workers={workers}',
            fix='--runs 4 --workers 2',
        )
    out = output_folder(Path(out_dir), force, resume).resolve()
    experiment = out / 'ray' / 'sweep'
    restoring = resume and tune.Tuner.can_restore(str(experiment))
    if not restoring:
        _inputs(model, data, out)
    _start_ray(address, workers)
    try:
        options = {'epochs': epochs, 'budget': budget, 'tolerance': tolerance, 'metric': metric}
        configs = [{**c, 'out': str(out), 'options': options} for c in trial_configs(runs, learning_rate)]
        reference = _reference(out)
        run_config = tune.RunConfig(
            name='sweep',
            storage_path=str(out / 'ray'),
            verbose=0,
            callbacks=[_Progress.make(reference['value'], tolerance, metric)] if verbose else [],
        )
        trainable = tune.with_resources(_trial, {'cpu': 1})
        if restoring:
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={'trial': tune.grid_search(configs)},
                tune_config=tune.TuneConfig(max_concurrent_trials=workers if address is None else None),
                run_config=run_config,
            )
        grid = tuner.fit()
        trials = [grid[n] for n in range(len(grid))]
        finished = len([r for r in trials if r.error is None and (r.metrics or {}).get('done') == 1])
        if finished < runs:
            raise HGQBridgeError(
                f'the sweep stopped after {finished} of {runs} trials (interrupted, or a trial failed)',
                where=str(out),
                received='; '.join(f'{type(r.error).__name__}' for r in trials if r.error is not None) or 'an interruption',
                fix='run the same command again with --resume: finished trials are kept',
            )
    finally:
        import ray

        ray.shutdown()
    from .sweepmerge import merge

    return merge(out, runs, tolerance, metric, time.perf_counter() - t0, reference['value'])


def _reference(out: Path) -> dict[str, float]:
    """The starting model's validation metric (what every trial's tolerance is measured against), cached."""
    path = out / 'inputs' / 'reference.json'
    if path.exists():
        return dict(json.loads(path.read_text()))
    from .finetune import finetune
    from .models import load_model

    data = dict(np.load(out / 'inputs' / 'data.npz'))
    probe = finetune(
        load_model(out / 'inputs' / 'model.keras'),
        data.pop('x'),
        data.pop('y'),
        data.pop('x_val'),
        data.pop('y_val'),
        **data,
        epochs=0,
        verbose=0,
    )
    value = {'value': probe.baseline_metric}
    path.write_text(json.dumps(value))
    return value


def _start_ray(address: str | None, workers: int) -> None:
    import ray

    env = {'TF_CPP_MIN_LOG_LEVEL': '3', 'OMP_NUM_THREADS': '1', 'KERAS_BACKEND': 'tensorflow', 'RAY_DEDUP_LOGS': '0'}
    os.environ.setdefault('RAY_AIR_NEW_OUTPUT', '0')
    if address is not None:
        ray.init(address=address, runtime_env={'env_vars': env}, log_to_driver=False)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, runtime_env={'env_vars': env}, log_to_driver=False)
