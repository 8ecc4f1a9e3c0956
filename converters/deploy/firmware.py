"""What every exporter shares: the model as the firmware sees it (a copy: export never changes the model it is
given), its input port and input data, the comparison with the firmware model, the project name, the files
written, and the first diverging layer."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.compare import count_mismatches, stress_inputs
from hgqbridge.errors import ExportError
from hgqbridge.fixed import FixedFormat
from hgqbridge.inspect import calibrate as hgq_calibrate
from hgqbridge.inspect import compute_ebops, consumers, layer_quantizers, quantizer_info
from hgqbridge.inspect import kind as layer_kind
from hgqbridge.models import copy_model, outputs

from .progress import current


@dataclass
class FirmwareInputs:
    """The model as exported (float head stripped), its input port format and the two input sets."""

    core: Any
    port: FixedFormat
    sets: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # the Keras model's outputs per set, once


def project_name(model: Any) -> str:
    """A name every tool accepts for files and HLS/Verilog identifiers: letters, digits and _, starting with a letter."""
    name = ''.join(c if c.isalnum() else '_' for c in model.name)
    return name if name[:1].isalpha() else f'model_{name}'


def prepare(model: Any, x: np.ndarray) -> FirmwareInputs:
    """The model as the firmware sees it: a copy (calibration changes it, the caller's model stays as it was)
    without a trailing float softmax, its input port format and the two input sets."""
    core, notes = strip_float_head(copy_model(model))
    port = input_port_format(core)
    if port is None:
        raise ExportError(
            'the model has no quantizer on its input path, so the firmware input format is undefined',
            where=model.name,
            fix='convert with --input-format, or add an input quantizer',
        )
    raw = {'normal': np.asarray(x, dtype=np.float32), 'stress': stress_inputs(x)}
    # The port carries the data as given (up to 24 fractional bits), so the first quantizer rounds in firmware.
    port = port.union(FixedFormat.covering(np.concatenate([v.ravel() for v in raw.values()]), max_f=24, inexact_ok=True))
    port_q = FixedFormat(port.k, port.i, port.f, 'TRN', 'SAT')
    sets = {}
    for kind, data in raw.items():
        on_port = port_q.quantize(data).astype(np.float32)
        n_off = int(np.count_nonzero(on_port != data))
        if n_off:
            notes.append(
                f'{kind}: {n_off} input values are not representable in the input port format {port}; compared on the values the port carries'
            )
        sets[kind] = on_port
    notes.append(
        f"input port format {port.ap_type().split(',AP_')[0]}> (the first quantizer's widest format, widened to hold the data)"
    )
    return FirmwareInputs(core, port, sets, notes)


def start(model: Any, x: np.ndarray) -> tuple[FirmwareInputs, int, dict[str, float]]:
    """The first steps of every export: inputs prepared, model calibrated; (inputs, EBOPs, seconds so far)."""
    progress = current()
    with progress.phase('prepare'):
        inputs = prepare(model, x)
    t0 = time.perf_counter()
    with progress.phase('calibrate'):
        ebops = calibrate(inputs.core, inputs)
    return inputs, ebops, {'calibrate': time.perf_counter() - t0}


def calibrate(core: Any, inputs: FirmwareInputs) -> int:
    """hgq's trace_minmax over both input sets (sets WRAP quantizers' integer bits); returns total EBOPs."""
    hgq_calibrate(core, np.concatenate(list(inputs.sets.values())))
    return int(sum(compute_ebops(core).values()))


def compare(
    core: Any, inputs: FirmwareInputs, predict: Callable[[np.ndarray], np.ndarray], phase: str = 'compare'
) -> tuple[dict, dict, dict, float]:
    """Firmware model vs the Keras model on every input set: (bit_exact, mismatches, values, seconds). The Keras
    model's outputs are computed once per export (``inputs.reference``) and shared by every firmware model."""
    t0 = time.perf_counter()
    exact, mism, counts = {}, {}, {}
    progress = current()
    with progress.phase(phase):
        for kind, data in inputs.sets.items():
            with progress.phase(f'{phase} {kind}'):
                progress.step(f'{kind} inputs ({len(data)} samples)')
                if kind not in inputs.reference:
                    inputs.reference[kind] = np.asarray(outputs(core, data))
                mism[kind], counts[kind] = count_mismatches(inputs.reference[kind], predict(data))
                exact[kind] = mism[kind] == 0
    return exact, mism, counts, time.perf_counter() - t0


def record_files(report: Any, root: Path, final: Path) -> None:
    """Put the written files (as they will be once ``root`` is renamed to ``final``) and their size in the report."""
    files = [p for p in root.rglob('*') if p.is_file()]
    report.files = sorted(str(final / p.relative_to(root)) for p in files)
    report.bytes_written = sum(p.stat().st_size for p in files)


def model_sizes(core: Any) -> dict[str, int]:
    """Number of weights (kernels and biases; not HGQ2's bit-width variables) and the bits they take."""
    count = bits = 0
    for layer in core.layers:
        for role, q in layer_quantizers(layer).items():
            info = quantizer_info(q) if role in ('kernel', 'bias') else None
            weight = getattr(layer, role, None)
            if weight is None:  # QBatchNormalization: the scale and offset are per channel
                weight = getattr(layer, 'moving_mean', None)
            if info is not None and weight is not None:
                shape = weight.shape
                count += int(np.prod(shape))
                bits += int(np.broadcast_to(info.width, shape).sum())
    return {'weights': count, 'weight bits': bits}


def first_divergence(core: Any, x: np.ndarray, firmware_layers: Mapping[str, np.ndarray]) -> str | None:
    """The first layer (in model order) whose firmware output matches neither the Keras layer's output nor that
    output after the quantizer that reads it (hls4ml fuses a quantizer into the layer before it); or None."""
    import keras

    names = [layer.name for layer in core.layers if layer.name in firmware_layers]
    if not names:
        return None
    probe = keras.Model(core.inputs, [core.get_layer(n).output for n in names])
    values = outputs(probe, x)
    values = values if isinstance(values, list) else [values]
    for name, reference in zip(names, values):
        candidates = [np.asarray(reference)]
        for consumer in consumers(core, core.get_layer(name).output):
            q = layer_quantizers(consumer)
            quantizer = q.get('self') or q.get('input')
            if quantizer is not None:
                candidates.append(np.asarray(keras.ops.convert_to_numpy(quantizer(reference, training=False))))
        fw = np.asarray(firmware_layers[name])
        if not any(fw.size == c.size and count_mismatches(c, fw)[0] == 0 for c in candidates):
            return name
    return None


def locate_divergence(
    report: Any, core: Any, inputs: FirmwareInputs, layer_outputs: Callable[[np.ndarray], Mapping[str, np.ndarray]]
) -> None:
    """Fill ``report.first_divergence`` for every input set that mismatched."""
    for kind, exact in report.bit_exact.items():
        data = inputs.sets.get(kind)
        if not exact and data is not None:
            report.first_divergence[kind] = first_divergence(core, data, layer_outputs(data))


def input_port_format(model: Any) -> FixedFormat | None:
    """The format the firmware input port carries: the union of the widest formats of the first quantizers on
    every path from the input (through layers that only move values); None if some path has no quantizer."""
    frontier = consumers(model, model.inputs[0])
    formats: list[FixedFormat] = []
    while frontier:
        layer = frontier.pop()
        if layer_kind(layer) == 'move':
            frontier.extend(consumers(model, layer.output))
            continue
        qs = layer_quantizers(layer)
        q = qs.get('self') or qs.get('input') or next((v for k, v in qs.items() if k.startswith('input')), None)
        info = quantizer_info(q) if q is not None else None
        if info is None:
            return None
        formats.append(info.widest())
    if not formats:
        return None
    port = formats[0]
    for fmt in formats[1:]:
        port = port.union(fmt)
    return port


def strip_float_head(model: Any) -> tuple[Any, list[str]]:
    """The model without a trailing float softmax (firmware outputs the logits; argmax is unchanged)."""
    import keras

    last = model.layers[-1]
    if len(model.outputs) == 1 and isinstance(last, keras.layers.Activation) and last.get_config().get('activation') == 'softmax':
        core = keras.Model(model.inputs, last.input, name=model.name)
        return core, [
            f'the float softmax head {last.name!r} is not exported: the firmware outputs its input (logits; argmax unchanged)'
        ]
    return model, []
