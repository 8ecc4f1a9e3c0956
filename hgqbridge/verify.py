"""Bit-exact comparison: a converted model against the source framework's golden outputs, layer by layer.

A golden file (``.npz``, written by the source framework itself, e.g. fixtures/qkeras/make_fixtures.py) holds
``x_normal``, ``x_stress`` (4 x normal, to drive every quantizer into saturation) and the output of every
source layer on both, keyed ``normal::<layer>`` and ``stress::<layer>``. Equality is ``numpy.array_equal``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .compare import INPUT_SETS, stress_inputs, ulps_of_max
from .datafiles import check_input_shape
from .errors import DataFileError
from .report import LayerMatch, VerifyReport


def _resolve(refs: dict[str, Any], name: str) -> Any | None:
    seen = set()
    ref = refs.get(name)
    while ref is not None and ref.via == 'alias' and ref.layer not in seen:
        seen.add(ref.layer)
        ref = refs.get(ref.layer)
    return ref if ref is not None and ref.via != 'alias' else None


def source_tensors(conversion: Any, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The HGQ2 model's value of each named source tensor on inputs ``x`` (inference mode)."""
    import keras

    model = conversion.model
    refs = {n: r for n in names if (r := _resolve(conversion.refs, n)) is not None}
    wanted = []
    for ref in refs.values():
        layer = model.get_layer(ref.layer)
        inp = layer.input[ref.index] if isinstance(layer.input, (list, tuple)) else layer.input
        wanted.append(layer.output if ref.via == 'output' else inp)  # 'iq', 'quantized-input': the input
    probe = keras.Model(model.inputs, wanted)
    values = probe.predict([x], batch_size=max(len(x), 1), verbose=0)
    values = values if isinstance(values, list) else [values]
    out: dict[str, np.ndarray] = {}
    for (name, ref), value in zip(refs.items(), values):
        if ref.via == 'iq':
            layer = model.get_layer(ref.layer)
            iq = layer.cell.iq if hasattr(layer, 'cell') else layer.iq  # a recurrent layer's input quantizer is its cell's
            value = iq(value, training=False)
        elif ref.via == 'quantized-input':
            value = ref.fmt.quantize(keras.ops.convert_to_numpy(value)).astype(np.float32)
        out[name] = np.asarray(keras.ops.convert_to_numpy(value))
    return out


def load_golden(path: Path) -> dict[str, np.ndarray]:
    from .datafiles import read_npz

    if not path.exists():
        raise DataFileError(
            'no golden outputs for verification',
            where=str(path),
            fix='write them with the source framework (see fixtures/qkeras/make_fixtures.py) or pass --golden',
        )
    golden = read_npz(path, 'golden file')
    if 'x_normal' not in golden:
        raise DataFileError('the golden file has no x_normal array', where=str(path), received=sorted(golden)[:8])
    golden.setdefault('x_stress', stress_inputs(golden['x_normal']))
    return golden


def compare_tensors(name: str, ref: np.ndarray, got: np.ndarray, reason: str = '') -> LayerMatch:
    """Compare one tensor; ``reason`` (why it cannot be exact) makes the comparison a measurement only."""
    exact_required = not reason
    if ref.size != got.size:
        return LayerMatch(name, int(ref.size), int(ref.size), float('inf'), exact_required, reason, float('inf'))
    got = got.reshape(ref.shape).astype(ref.dtype)
    differ = ref != got
    diff = float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64)))) if differ.any() else 0.0
    return LayerMatch(name, int(ref.size), int(np.count_nonzero(differ)), diff, exact_required, reason, ulps_of_max(ref, diff))


def verify(conversion: Any, golden_path: Path) -> VerifyReport:
    """Compare every source tensor that has a counterpart in the converted model, in source order."""
    golden = load_golden(golden_path)
    order = []
    for layer in conversion.graph:  # a layer a pass removed is compared right after the layer that holds its tensor
        if layer.class_name != 'InputLayer':
            order.append(layer.name)
        order += [removed for removed, kept in conversion.graph.aliases.items() if kept == layer.name]
    inexact = _inexact_downstream(conversion)
    results: dict[str, list[LayerMatch]] = {}
    first: dict[str, str | None] = {}
    missing: set[str] = set()
    shape = tuple(conversion.model.inputs[0].shape[1:])
    for kind in INPUT_SETS:
        names = [n for n in order if f'{kind}::{n}' in golden]
        x = check_input_shape(golden[f'x_{kind}'], shape, f'{golden_path}: x_{kind}')
        got = source_tensors(conversion, x, names)
        off_grid = _off_input_grid(conversion, x)
        beyond = _beyond_source_range(conversion, golden, kind, inexact)
        reasons = {n: inexact.get(n) or beyond.get(n) or off_grid for n in names}
        matches = [compare_tensors(n, golden[f'{kind}::{n}'], got[n], reasons[n]) for n in names if n in got]
        missing.update(n for n in names if n not in got)
        results[kind] = matches
        first[kind] = next((m.layer for m in matches if m.exact_required and m.mismatches), None)
    exact = all(m.bit_exact for ms in results.values() for m in ms if m.exact_required) and any(results.values())
    return VerifyReport(str(conversion.graph.path), str(golden_path), results, exact, first, sorted(missing))


def _beyond_source_range(conversion: Any, golden: dict[str, np.ndarray], kind: str, known: dict[str, str]) -> dict[str, str]:
    """Layers whose inputs (as the source computed them) reach the |x| beyond which the source's own float32
    arithmetic stops being exact (``Conversion.exact_below``), and every layer computed from them."""
    bounds = getattr(conversion, 'exact_below', None) or {}
    reasons: dict[str, str] = {}
    for layer in conversion.graph:
        if layer.name in bounds and layer.inbound:
            src = conversion.graph.layer(layer.inbound[0])
            values = golden.get(f'x_{kind}') if src.class_name == 'InputLayer' else golden.get(f'{kind}::{src.name}')
            peak = float(np.max(np.abs(values))) if values is not None and values.size else 0.0
            if peak >= bounds[layer.name]:
                reasons[layer.name] = (
                    f"inputs reach |x| = {peak:g}, beyond {bounds[layer.name]:g} where the source's float32 "
                    'x + (xq - x) stops being the quantized value'
                )
        upstream = next((n for n in layer.inbound if n in reasons), None)
        if upstream is not None and layer.name not in reasons and layer.name not in known:
            reasons[layer.name] = f'computed from {upstream}'
    return reasons


def _off_input_grid(conversion: Any, x: np.ndarray) -> str:
    """Why nothing can match when the inputs are off the grid the HGQ2 model rounds raw inputs to (the source reads
    them unrounded); '' when every input value is on it (or the source quantizes its own inputs)."""
    fmt = getattr(conversion, 'raw_input_format', None)
    if fmt is None:
        return ''
    off = int(np.count_nonzero(fmt.quantize(x).astype(np.float32) != x))
    if not off:
        return ''
    return (
        f'{off} of {x.size} input values are not representable in the input format {fmt} that the HGQ2 model rounds '
        'its raw input to (the source reads them unrounded): give inputs on that grid, or convert with --input-format'
    )


def _inexact_downstream(conversion: Any) -> dict[str, str]:
    """Layers that cannot match bit for bit (float softmax, float weights, float-rounded sums) and everything
    computed from them, with the reason: their error is measured, not required to be zero."""
    reasons = dict(conversion.inexact)
    for layer in conversion.graph:
        upstream = next((n for n in layer.inbound if n in reasons), None)
        if upstream is not None and layer.name not in reasons:
            reasons[layer.name] = f'computed from {upstream}'
    return reasons
