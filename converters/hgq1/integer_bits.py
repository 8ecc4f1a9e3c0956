"""The integer bits of a saved HGQ1 model's quantizers, which the file does not hold.

A saved HGQ1 model rounds every activation to its fractional bits and never overflows (its traced ranges are not
weights, so they are not saved; fixtures/hgq1/README.md, section 1). An HGQ2 quantizer needs a sign and integer
bits; it computes what HGQ1 computes exactly while no value leaves its range. They are chosen, per element, in one
of two ways, and the conversion report says which and what range is exact:

* **interval propagation** (no calibration data): the inputs are taken to lie in the range of ``--input-format``
  (default ``ap_fixed<16,6>``, [-32, 32)), and every layer's range follows from its inputs' ranges
  (``intervals.py``, outward bounds). The integer bits cover these ranges, so the HGQ2 model equals HGQ1 on
  *every* input in that range: sound, but wide (worst case over all such inputs);
* **calibration** (``--calibration data.npz``): as HGQ1's own ``trace_minmax(model, x, cover_factor=C)`` derives
  them for its proxy: the model runs on ``x`` (an HGQ2 model whose integer bits cover ``x``'s own range, so it
  computes exactly what HGQ1 computes), each quantizer's per-element min and max are widened about their centre by
  ``C`` (``COVER_FACTOR``), and the integer bits cover them: tight, and exact while values stay in those ranges
  (beyond them HGQ2 saturates where HGQ1 keeps growing). ``C = 1`` gives HGQ1's own proxy widths.

The result goes into each quantizing layer's ``derived`` (``k``, ``i``, shaped like its ``activation_bw``), which
its handler reads; the other layers pass unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from hgqbridge.datafiles import check_input_shape
from hgqbridge.errors import HGQBridgeError, LayerProblem, Problem, UnsupportedError
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph, SourceLayer
from hgqbridge.limits import Limits
from hgqbridge.registry import Registry

from ..hgq.tensors import DEFAULT_INPUT_FORMAT
from .arith import formats_for, quantize
from .intervals import reduce_to
from .registry import LAYERS, Activation, Interval, SavedHandler

F32 = np.float32
#: HGQ1 trace_minmax's cover_factor for calibrated integer bits: each traced range doubled about its centre.
COVER_FACTOR = 2.0


def saved_handler(layer: SourceLayer) -> SavedHandler | None:
    entry = LAYERS.entry(layer.class_name)
    return entry.handler if entry is not None and isinstance(entry.handler, SavedHandler) else None  # type: ignore[return-value]


def _input_shape(layer: SourceLayer) -> tuple[int, ...]:
    shape = layer.config.get('batch_input_shape') or layer.config.get('batch_shape')
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise LayerProblem('the input shape must be static', 'give the model a fixed input shape', received=shape)
    return tuple(shape[1:])


def propagate(graph: SourceGraph, inputs: dict[str, Interval]) -> dict[str, Interval]:
    """Every layer's output range, from the inputs' ranges; one UnsupportedError lists every layer without a rule."""
    bounds: dict[str, Interval] = dict(inputs)
    problems: list[Problem] = []
    for layer in graph:
        if layer.name in bounds:
            continue
        where = f'{graph.name}/{layer.name} ({layer.class_name})'
        handler = saved_handler(layer)
        if any(n not in bounds for n in layer.inbound):
            continue  # an input failed: already reported
        if handler is None:
            problems.append(
                Problem(
                    where,
                    'a layer that is not an HGQ1 layer in a saved HGQ1 model: its range is unknown',
                    'save the model with HGQ1 layers only',
                )
            )
            continue
        try:
            bounds[layer.name] = handler.bounds(layer, [bounds[n] for n in layer.inbound])
        except LayerProblem as err:
            problems.append(Problem(where, err.reason, err.fix))
    if problems:
        raise UnsupportedError('the integer bits of the saved HGQ1 model cannot be derived', problems, where=str(graph.path))
    return bounds


def _widened(lo: np.ndarray, hi: np.ndarray, act: Activation, cover: float) -> Interval:
    """trace_minmax's cover_factor, in float32 as HGQ1 computes it: the range scaled about its centre, its ends
    quantized; it never reaches beyond what the activation outputs (relu >= 0, tanh in [-1, 1]: HGQ1 clamps these
    too), nor cuts what was traced."""
    if cover == 1.0:
        return lo, hi
    lo32, hi32 = lo.astype(F32), hi.astype(F32)
    mean, diff = (lo32 + hi32) / F32(2), (hi32 - lo32) / F32(2)
    wide_lo = quantize(mean - diff * F32(cover), act.f, act.round).astype(np.float64)
    wide_hi = quantize(mean + diff * F32(cover), act.f, act.round).astype(np.float64)
    return np.minimum(np.maximum(wide_lo, act.clamp[0]), lo), np.maximum(np.minimum(wide_hi, act.clamp[1]), hi)


def _with_bits(graph: SourceGraph, ranges: dict[str, Interval], cover: float | None) -> SourceGraph:
    """The graph with each quantizing layer's ``derived`` k and i covering its output's range (per width element;
    ``cover``: traced ranges, widened as trace_minmax's cover_factor widens them)."""
    layers = []
    for layer in graph.layers:
        handler = saved_handler(layer)
        if handler is None or handler.activation is None:
            layers.append(layer)
            continue
        act = handler.activation(layer)
        lo, hi = reduce_to(ranges[layer.name], act.f.shape)
        if cover is not None:
            lo, hi = _widened(lo, hi, act, cover)
        fmt = formats_for(lo, hi, act.f, act.round, 'SAT')
        layers.append(replace(layer, derived={**layer.derived, 'k': fmt.k, 'i': fmt.i}))
    return replace(graph, layers=layers)


def prepare(
    graph: SourceGraph, registries: tuple[Registry, ...], input_format: FixedFormat | None, x: np.ndarray | None, limits: Limits
) -> SourceGraph:
    """A saved HGQ1 model with the integer bits of its quantizers derived (any other graph: unchanged)."""
    quantizers = [layer for layer in graph if (h := saved_handler(layer)) is not None and h.activation is not None]
    if not quantizers:
        return graph
    input_layers = [graph.layer(n) for n in graph.inputs]
    try:
        shapes = {layer.name: _input_shape(layer) for layer in input_layers}
    except LayerProblem as err:
        raise UnsupportedError(
            'the model cannot be converted exactly', [Problem(f'{graph.name}/{graph.inputs[0]}', err.reason, err.fix)]
        ) from None
    if x is None:
        fmt = input_format or DEFAULT_INPUT_FORMAT
        ranges = propagate(graph, {n: (np.full((1, *s), fmt.low), np.full((1, *s), fmt.high)) for n, s in shapes.items()})
        how = 'the --input-format' if input_format is not None else 'the default input format'
        note = (
            f'HGQ1 saved model: the integer bits of its {len(quantizers)} quantizers (the file holds none) cover the range of '
            f'every value for inputs in [{fmt.low + 0.0:g}, {fmt.high:g}] ({how} {fmt}), found by interval propagation: '
            'bit-exact to HGQ1 on every such input (beyond it HGQ2 saturates: give a wider --input-format), but wider '
            'than the data needs (give --calibration for traced ones)'
        )
        return replace(_with_bits(graph, ranges, None), notes=[*graph.notes, note])
    return _calibrated(graph, registries, input_format, x, shapes, limits, len(quantizers))


def _calibrated(
    graph: SourceGraph,
    registries: tuple[Registry, ...],
    input_format: FixedFormat | None,
    x: np.ndarray,
    shapes: dict[str, tuple[int, ...]],
    limits: Limits,
    count: int,
    cover: float = COVER_FACTOR,
) -> SourceGraph:
    from hgqbridge.verify import source_tensors

    from ..hgq.driver import convert_graph

    if len(shapes) != 1:
        raise HGQBridgeError(
            'calibration data for a model with several inputs is not supported',
            where=str(graph.path),
            fix='convert without --calibration (the integer bits then come from interval propagation)',
        )
    ((name, shape),) = shapes.items()
    x = check_input_shape(np.asarray(x), shape, 'calibration data x').astype(np.float32)
    own = propagate(
        graph, {name: (x.min(axis=0, keepdims=True).astype(np.float64), x.max(axis=0, keepdims=True).astype(np.float64))}
    )
    exact_on_x = convert_graph(_with_bits(graph, own, None), registries, input_format, None, limits)
    names = [layer.name for layer in graph if (h := saved_handler(layer)) is not None and h.activation is not None]
    traced = source_tensors(exact_on_x, x, names)
    ranges: dict[str, Interval] = {
        n: (v.min(axis=0, keepdims=True).astype(np.float64), v.max(axis=0, keepdims=True).astype(np.float64))
        for n, v in traced.items()
    }
    note = (
        f'HGQ1 saved model: the integer bits of its {count} quantizers (the file holds none) traced on {len(x)} calibration '
        f'samples as HGQ1 trace_minmax does, ranges widened by cover_factor {cover:g}: bit-exact to HGQ1 while every '
        'quantizer stays within its widened range (beyond it HGQ2 saturates)'
    )
    return replace(_with_bits(graph, ranges, cover), notes=[*graph.notes, note])


def calibrated(
    graph: SourceGraph, registries: tuple[Registry, ...], x: np.ndarray, cover: float, limits: Limits = Limits()
) -> SourceGraph:
    """``prepare`` with calibration data and a chosen cover factor (1.0: HGQ1's own proxy widths)."""
    shapes = {n: _input_shape(graph.layer(n)) for n in graph.inputs}
    count = sum(1 for layer in graph if (h := saved_handler(layer)) is not None and h.activation is not None)
    return _calibrated(graph, registries, None, x, shapes, limits, count, cover)
