"""Benchmark: original model vs the bridge's fine-tuned one, next to what a user would do instead.

Per task, all on the test split (half of x_val, seeded: hgqbridge.evaluation; the validation half chooses):
  original       the imported QKeras model (or the float Keras model quantized at 8 bits)
  bridge         hgqbridge.finetune with the automatic beta, ``--budget`` seconds
  scratch        HGQ2 from scratch: the same architecture, fresh weights, HGQ2's default quantizers, the same
                 loop (HGQ2's recipe: Adam, FreeEBOPs, a rising beta) and the same wall-clock budget; the point of
                 its Pareto front taken at the original's validation accuracy (the smallest within the tolerance,
                 else the most accurate), so that the two are compared at equal accuracy
  uniform        the original uniformly re-quantized: every fractional width cut by 1, 2, 3 ... bits, the
                 fewest bits whose validation accuracy stays within the tolerance (AutoQKeras-style, no retraining)
Columns: test accuracy +- standard error, EBOPs, LUT and latency estimates (alkaid's; ``--lut da4ml`` for da4ml 0.6's),
wall time, runs, ratios.

    python bench/finetune.py --budget 60 [--tasks jet_tagger,digits_mlp] [--scaling] [--lut alkaid|da4ml]
    python bench/finetune.py --update --tasks mnist1d_cnn      # re-run some tasks, keep the other rows

``--scaling`` adds the 4-run sweep with 1 and 2 local workers and the loop's per-epoch overhead against a bare
``model.fit`` with the same callbacks. Writes bench/results/finetune.json with the machine's details. Not a test:
numbers depend on the machine, its load and training noise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine  # bench/machine.py (a script's folder is on its path)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / 'fixtures'
#: task -> (source file, data file, bit widths of the original, convert options)
TASKS: dict[str, tuple[str, str, str, dict]] = {
    'jet_tagger': (
        'qkeras/jet_tagger.h5',
        'qkeras/jet_tagger.data.npz',
        'QKeras 6-bit weights/activations (hls4ml tutorial shape)',
        {},
    ),
    'jet_synthetic': ('qkeras/jet_synthetic.h5', 'qkeras/jet_synthetic.data.npz', 'QKeras 6-bit, synthetic jet-like data', {}),
    'digits_mlp': ('qkeras/digits_mlp.h5', 'qkeras/digits_mlp.data.npz', 'QKeras MLP, sklearn digits (real)', {}),
    'digits_cnn': ('qkeras/digits_cnn.h5', 'qkeras/digits_cnn.data.npz', 'QKeras CNN, sklearn digits (real)', {}),
    'keras_float_jet': ('keras/k2_jet_bn.h5', 'keras/k2_jet_bn.data.npz', 'float Keras 2 model, --bits 8 policy', {'bits': 8}),
    'mnist1d_cnn': (
        'qkeras/mnist1d_cnn.h5',
        'qkeras/mnist1d_cnn.data.npz',
        'QKeras 1D CNN, 6-bit, MNIST-1D (generated offline; 4,000 test samples)',
        {},
    ),
}


#: The tools whose traced logic gives the LUT and latency estimates (alkaid: latency in ns; da4ml: adder depth).
LUT_TOOLS = ('alkaid', 'da4ml')


def estimate(model: Any, x: Any, tool: str) -> dict:
    """EBOPs and the tool's LUT / latency estimates of a model as the firmware sees it."""
    import importlib

    from hgqbridge.converters.deploy import firmware

    trace = importlib.import_module(f'hgqbridge.converters.{tool}.export').trace

    inputs = firmware.prepare(model, x[:64])
    row: dict[str, Any] = {'ebops': firmware.calibrate(inputs.core, inputs)}
    try:
        comb = trace(inputs.core, inputs)
        row.update(lut=float(comb.cost), latency=[float(v) for v in comb.latency], lut_tool=tool)
    except Exception as err:  # a bench row records why there is no estimate
        row.update(lut=None, latency=None, note=f'no {tool} estimate: {getattr(err, "received", None) or type(err).__name__}')
    return row


def scored(label: str, model: Any, sp: Any, seconds: float, runs: int, tool: str) -> dict:
    from hgqbridge.evaluation import score

    s = score('accuracy', sp.y_test, model.predict(sp.x_test, verbose=0), 'test')
    return {
        'variant': label,
        'test_accuracy': round(s.value, 4),
        'se': round(s.se, 4),
        **estimate(model, sp.x_val, tool),
        'seconds': round(seconds, 1),
        'runs': runs,
    }


def uniform(model: Any, sp: Any, tolerance: float) -> Any:
    """Cut every fractional width by the same number of bits while validation accuracy holds."""
    from hgqbridge.evaluation import metric_value
    from hgqbridge.inspect import fixed_point_quantizers
    from hgqbridge.models import copy_model

    base = metric_value('accuracy', sp.y_val, model.predict(sp.x_val, verbose=0))
    best = model
    for cut in range(1, 8):
        trial = copy_model(model)
        for q in fixed_point_quantizers(trial):
            q._f.assign(q._f - float(cut))
        if metric_value('accuracy', sp.y_val, trial.predict(sp.x_val, verbose=0)) < base - tolerance:
            break
        best = trial
    return best


def scratch_model(model: Any) -> Any:
    """The architecture with fresh weights and HGQ2's default (trainable) quantizers."""
    import keras

    from hgqbridge.start import _replace_quantizers

    fresh = keras.models.clone_model(_replace_quantizers(model, 'default'))  # clone_model re-initialises the weights
    return fresh


def at_accuracy(result: Any, out: Path, target: float) -> Any:
    """The front point of a run with validation metric >= ``target`` and the fewest EBOPs, else the most accurate."""
    front = [r for r in result.history if r.pareto]
    ok = [r for r in front if r.val_metric >= target]
    pick = min(ok, key=lambda r: r.ebops) if ok else max(front, key=lambda r: r.val_metric)
    model = result.model
    model.load_weights(out / 'checkpoints' / f'epoch_{pick.epoch:04d}.weights.h5')
    return model


def run_task(name: str, budget: float, tolerance: float, tool: str = 'alkaid') -> list[dict]:
    import numpy as np

    import hgqbridge
    from hgqbridge.evaluation import make_splits

    src, data_file, bits, options = TASKS[name]
    data = dict(np.load(FIX / data_file))
    convert = dict(options)
    if 'bits' in convert:
        convert['calibration'] = FIX / data_file
    model = hgqbridge.convert(FIX / src, **convert)
    sp = make_splits(data)
    rows = [scored('original', model, sp, 0.0, 0, tool)]
    t0 = time.perf_counter()
    bridge = hgqbridge.finetune(model, **data, budget=budget, tolerance=tolerance, verbose=0)
    rows.append(scored('bridge', bridge.model, sp, time.perf_counter() - t0, 1, tool))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = hgqbridge.finetune(
            scratch_model(model), **data, budget=budget, tolerance=1.0, verbose=0, out_dir=Path(tmp) / 'run'
        )
        scratch = at_accuracy(fresh, Path(tmp) / 'run', bridge.scores['original_validation'].value - tolerance)
        rows.append(scored('scratch', scratch, sp, time.perf_counter() - t0, 1, tool))
    t0 = time.perf_counter()
    rows.append(scored('uniform', uniform(model, sp, tolerance), sp, time.perf_counter() - t0, 1, tool))
    o = rows[0]
    for r in rows:
        r.update(task=name, bits=bits)
        r['ebops_ratio'] = round(o['ebops'] / max(r['ebops'], 1), 2)
        r['lut_ratio'] = round(o['lut'] / max(r['lut'], 1), 2) if o.get('lut') and r.get('lut') else None
        r['accuracy_change_pp'] = round(100 * (r['test_accuracy'] - o['test_accuracy']), 2)
    rows[1]['beta_rule'] = bridge.beta_rule
    rows[1]['epochs'] = len(bridge.history)
    if bridge.warnings:
        rows[1]['note'] = '; '.join(filter(None, [rows[1].get('note'), *bridge.warnings]))
    return rows


def scaling(budget: float) -> dict:
    """The same 4-run sweep with 1 and 2 local workers; the loop's per-epoch overhead against a bare fit."""
    import tempfile

    import numpy as np

    import hgqbridge
    from hgqbridge.sweep import sweep

    data = dict(np.load(FIX / 'qkeras/jet_tagger.data.npz'))
    model = hgqbridge.convert(FIX / 'qkeras/jet_tagger.h5')
    walls = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            sweep(model, data, Path(tmp) / 'out', runs=4, workers=workers, epochs=10, verbose=0)
            walls[workers] = round(time.perf_counter() - t0, 1)
    return {'sweep_4_runs_seconds': walls, 'speedup_2_workers': round(walls[1] / walls[2], 2), **overhead(model, data)}


def overhead(model: Any, data: dict, epochs: int = 12) -> dict:
    """Seconds per epoch, the median over epochs 2..N (the first one traces the graph): hgqbridge.finetune's loop
    (training plus its own per-epoch work: the validation metric, the front, the collapse guard) against a bare
    hgq2 model.fit with FreeEBOPs and a beta schedule; and the run's one-off setup (calibration, scores, copies)."""
    import statistics

    import keras
    from hgq.utils.sugar import BetaScheduler, FreeEBOPs, PieceWiseSchedule

    import hgqbridge
    from hgqbridge.beta import auto_batch
    from hgqbridge.models import copy_model

    result = hgqbridge.finetune(model, **data, epochs=epochs, verbose=0)
    bridge = statistics.median(r.seconds for r in result.history[1:])
    setup = result.seconds - sum(r.seconds for r in result.history)

    class Timer(keras.callbacks.Callback):
        times: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.times.append(time.perf_counter() - self.t0)

    bare = copy_model(model)
    bare.compile(optimizer=keras.optimizers.Adam(3e-3), loss='categorical_crossentropy')
    schedule = BetaScheduler(PieceWiseSchedule([(0, 1e-7, 'log'), (epochs - 1, 1e-4, 'constant')]))
    timer = Timer()
    bare.fit(
        data['x'],
        data['y'],
        epochs=epochs,
        batch_size=auto_batch(len(data['x'])),
        verbose=0,
        callbacks=[FreeEBOPs(), schedule, timer],
    )
    plain = statistics.median(timer.times[1:])
    return {
        'bridge_seconds_per_epoch': round(bridge, 4),
        'bare_fit_seconds_per_epoch': round(plain, 4),
        'overhead': round(bridge / plain - 1, 3),
        'bridge_setup_seconds': round(setup, 2),
    }


COLS = [
    'task',
    'variant',
    'test_accuracy',
    'se',
    'accuracy_change_pp',
    'ebops',
    'ebops_ratio',
    'lut',
    'lut_ratio',
    'latency',
    'seconds',
    'runs',
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--budget', type=float, default=120.0, help='seconds per fine-tuning run (bridge and scratch)')
    p.add_argument('--tasks', default=','.join(TASKS))
    p.add_argument('--tolerance', type=float, default=0.005)
    p.add_argument('--scaling', action='store_true')
    p.add_argument('--scaling-only', action='store_true', help='only the scaling part, written to OUT/finetune_scaling.json')
    p.add_argument(
        '--update', action='store_true', help="keep the earlier JSON's rows of the tasks not run now; every row names its run"
    )
    p.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results', help='folder for the JSON')
    p.add_argument('--lut', choices=LUT_TOOLS, default='alkaid', help='the LUT/latency estimate: alkaid (default) or da4ml')
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    if a.scaling_only:
        doc = {
            'machine': machine('keras', 'hgq', 'alkaid', 'da4ml', 'ray'),
            'budget_seconds': a.budget,
            'scaling': scaling(a.budget),
        }
        doc['total_seconds'] = round(time.perf_counter() - t0, 1)
        (out / 'finetune_scaling.json').write_text(json.dumps(doc, indent=2) + '\n')
        print(json.dumps(doc['scaling']))
        return 0
    run = {
        'machine': machine('keras', 'hgq', 'alkaid', 'da4ml', 'ray'),
        'command': ' '.join(sys.argv),
        'budget_seconds': a.budget,
        'tolerance': a.tolerance,
    }
    result: dict[str, Any] = {**run, 'runs': [run], 'rows': []}
    tasks = a.tasks.split(',')
    earlier = json.loads((out / 'finetune.json').read_text()) if a.update and (out / 'finetune.json').is_file() else None
    if earlier is not None:  # keep the other tasks' rows; every row names its run (machine, command)
        keys = ('machine', 'command', 'budget_seconds', 'tolerance')
        old_runs = earlier.get('runs') or [{k: earlier.get(k, '?') for k in keys}]
        result['runs'] = [*old_runs, run]
        result['rows'] = [{**r, 'run': r.get('run', 0)} for r in earlier['rows'] if r['task'] not in tasks]
        result.update({k: earlier[k] for k in ('scaling',) if k in earlier and not a.scaling})
    print(' | '.join(COLS), flush=True)
    for name in tasks:  # written after every task: an interrupted bench keeps what it measured
        try:
            rows = run_task(name, a.budget, a.tolerance, a.lut)
        except Exception as err:  # a failing task is a row that says why, not the end of the bench
            rows = [{'task': name, 'variant': 'failed', 'note': f'{type(err).__name__}: {err}'[:300]}]
        for row in rows:
            result['rows'].append({**row, 'run': len(result['runs']) - 1})
            print(' | '.join(str(row.get(c)) for c in COLS) + (f'   ({row["note"]})' if 'note' in row else ''), flush=True)
        result['total_seconds'] = round(time.perf_counter() - t0, 1)
        (out / 'finetune.json').write_text(json.dumps(result, indent=2) + '\n')
    if a.scaling:
        result['scaling'] = scaling(a.budget)
        print(json.dumps(result['scaling']))
    result['total_seconds'] = round(time.perf_counter() - t0, 1)
    (out / 'finetune.json').write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out / "finetune.json"} ({result["total_seconds"]} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
