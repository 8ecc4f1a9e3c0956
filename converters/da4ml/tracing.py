"""How far HGQ2's da4ml tracer is, and one constant-matrix solve per distinct problem instead of one per position.

Nearly all of a da4ml export's time is da4ml's constant-matrix-vector-multiplication solver
(``da4ml.cmvm.solve``, compiled code): it finds the adder graph of every ``x @ W``. HGQ2's tracer unrolls a
convolution into one ``x @ W`` per output position, so the same kernel is solved again for each position
(bench/export_scaling.py measured it). ``solve`` is a deterministic function of its arguments (the matrix, the
input intervals and latencies, the options), so ``solve_once`` keeps each solution for the rest of the trace and
hands it out again for an identical problem: positions whose inputs have the same ranges (every interior one)
share one solve. The solution is applied to each position's own inputs as before; the export still proves the
traced logic bit-exact against the Keras model.

``layer_progress`` reports the layer being traced and how many solves it has done (``deploy/progress.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..deploy.progress import Progress


def _key(kernel: np.ndarray, kwargs: dict[str, Any]) -> tuple:
    options = tuple(sorted((k, v) for k, v in kwargs.items() if k not in ('qintervals', 'latencies')))
    intervals = tuple(tuple(float(x) for x in q) for q in kwargs.get('qintervals') or ())
    latencies = tuple(float(x) for x in kwargs.get('latencies') or ())
    return kernel.shape, kernel.tobytes(), intervals, latencies, options


@contextlib.contextmanager
def traced(progress: Progress, core: Any) -> Iterator[dict[str, int]]:
    """While active: da4ml's solver is called once per distinct problem, and every layer the tracer replays and
    every solve are reported on ``progress``. Yields counters: ``solves`` (run) and ``reused``."""
    import da4ml.trace.fixed_variable_array as fva
    from hgq._dais_tracer.layers._base import ReplayOperationBase

    names = [layer.name for layer in core.layers if type(layer).__name__ != 'InputLayer']
    counts = {'solves': 0, 'reused': 0}
    state: dict[str, Any] = {'layer': '', 'done': 0, 'expected': 0}
    cache: dict[tuple, Any] = {}
    original_solve, original_call = fva.solve, ReplayOperationBase.__call__

    def where() -> str:
        index = names.index(state['layer']) + 1 if state['layer'] in names else 0
        head = f'layer {index}/{len(names)} {state["layer"]}' if index else str(state['layer'])
        if not state['expected']:
            return head
        reused = f' ({counts["reused"]} solves reused so far)' if counts['reused'] else ''
        return f'{head}: {state["done"]}/{state["expected"]} matrix products{reused}'

    def solve(kernel: np.ndarray, **kwargs: Any) -> Any:
        key = _key(np.asarray(kernel), kwargs)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = original_solve(kernel, **kwargs)
            counts['solves'] += 1
        else:
            counts['reused'] += 1
        state['done'] += 1
        progress.step(where())
        return hit

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        op = self.op
        outer = dict(state)
        state.update(layer=getattr(op, 'name', type(op).__name__), done=0, expected=_products(op))
        progress.step(where())
        try:
            return original_call(self, *args, **kwargs)
        finally:
            state.update(outer)

    fva.solve = solve
    ReplayOperationBase.__call__ = call  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        fva.solve = original_solve
        ReplayOperationBase.__call__ = original_call  # type: ignore[method-assign]


def _products(layer: Any) -> int:
    """How many ``x @ W`` HGQ2's tracer does for a dense or convolutional layer: one per output position (0:
    not known, e.g. for layers without a kernel)."""
    if not hasattr(layer, 'kernel'):
        return 0
    try:
        shape = tuple(int(d) for d in layer.output.shape[1:-1])
    except (AttributeError, ValueError, TypeError):
        return 0
    return int(np.prod(shape)) if shape else 1
