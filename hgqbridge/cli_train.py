"""The training commands of ``hgqbridge``: ``finetune`` (one run) and ``sweep`` (Ray Tune trials), each ending with
``check`` of the chosen model and, with ``--export``, its export and proof. Imports are lazy (``--help`` stays
instant)."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import HGQBridgeError
from .limits import Limits


def _budget(a: argparse.Namespace) -> float | None:
    from .beta import parse_budget

    if a.budget is None:
        return None
    try:
        return parse_budget(a.budget)
    except ValueError as err:
        raise HGQBridgeError('invalid --budget', received=a.budget, fix=str(err)) from None


def _train_data(a: argparse.Namespace) -> dict[str, Any]:
    from .datafiles import load_data

    data = load_data(a.data, ('x', 'y', 'x_val', 'y_val'), Limits.parse(a.limit))
    return {k: v for k, v in data.items() if k in ('x', 'y', 'x_val', 'y_val', 'x_test', 'y_test')}


def _prove(a: argparse.Namespace, model: Any, data: dict[str, Any]) -> int:
    """check the chosen model (against --export's target, else da4ml) and with --export, export and prove it."""
    from .evaluation import make_splits
    from .runfiles import write_json
    from .sweepmerge import prove

    target = a.export or 'da4ml'
    proof = prove(model, target, a.output, make_splits(data).x_test, bool(a.export))
    write_json(a.output / 'deploy.json', proof)
    print(f'check {target}: ' + ('deployable' if proof['deployable'] else 'NOT deployable'))
    if not proof['deployable']:
        print(proof['check'])
    if 'bit_exact' in proof:
        print(f'export {target}: ' + ('bit-exact' if proof['bit_exact'] else 'NOT bit-exact') + f' ({proof["exported"]})')
    return 0 if proof['deployable'] and proof.get('bit_exact', True) else 1


def _start(a: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """What both training commands begin with: the output folder checked (unless resuming into it), the model and
    the training data read."""
    from .models import load_model
    from .outputs import check_output

    if not (a.resume and a.output.is_dir()):
        check_output(a.output, a.force, (a.model, a.data))
    data = _train_data(a)
    return load_model(a.model, Limits.parse(a.limit)), data


def cmd_finetune(a: argparse.Namespace) -> int:
    from . import finetune

    model, data = _start(a)
    result = finetune(
        model,
        **data,
        epochs=a.epochs,
        budget=_budget(a),
        tolerance=a.tolerance,
        metric=a.metric,
        beta_min=a.beta_min,
        beta_max=a.beta_max,
        learning_rate=a.learning_rate,
        batch_size=a.batch_size,
        out_dir=a.output,
        resume=a.resume,
        diagnose=a.diagnose,
        force=a.force,
    )
    print(result.summary())
    for event in result.events:
        print(f'handled: {event}')
    if result.diagnosis:
        print(f'diagnosis: {result.diagnosis}')
    print(f'wrote {a.output}/: ' + ', '.join(result.files.values()))
    return _prove(a, result.model, data)


def cmd_sweep(a: argparse.Namespace) -> int:
    from .sweep import sweep

    model, data = _start(a)
    result = sweep(
        model,
        data,
        a.output,
        runs=a.runs,
        workers=a.workers,
        address=a.address,
        epochs=a.epochs,
        budget=_budget(a),
        tolerance=a.tolerance,
        metric=a.metric,
        learning_rate=a.learning_rate,
        resume=a.resume,
        force=a.force,
    )
    m, s = result.metric, result.scores
    print(f'{result.runs} runs, {len(result.front)} points on the global front, {result.seconds:.0f} s')
    print(f'starting model: test {m} {s["original_test"].text(m)}, EBOPs {result.baseline_ebops}')
    if result.chosen is None:
        print('no point kept the validation metric within tolerance; the starting model is kept')
    else:
        print(
            f'chosen {result.chosen["trial"]} epoch {result.chosen["epoch"] + 1}: test {m} {s["chosen_test"].text(m)}, '
            f'EBOPs {result.chosen_ebops} ({result.baseline_ebops / max(result.chosen_ebops, 1):.1f}x fewer)'
        )
    for warning in result.warnings:
        print(f'warning: {warning}')
    print(f'wrote {a.output}/: model.keras, pareto.json, pareto.png, report.json, trials/')
    return _prove(a, result.model, data)
