"""Export an HGQ2 model with hls4ml (bit-exact flow), compile its C simulation with g++ and prove it exact."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.errors import ExportError
from hgqbridge.inspect import compute_ebops
from hgqbridge.outputs import atomic_path
from hgqbridge.report import ExportReport

from ..deploy import firmware
from ..deploy.progress import current
from .rules import COMPILABLE, Target

BACKEND_NAMES = {'vivado': 'Vivado', 'vitis': 'Vitis', 'oneapi': 'oneAPI', 'quartus': 'Quartus', 'catapult': 'Catapult'}
STRATEGY_NAMES = {'latency': 'Latency', 'resource': 'Resource', 'distributed_arithmetic': 'distributed_arithmetic'}
#: Deliberately absurd default precision (as hls4ml's own bit-exact tests use): every type must come from the
#: bit-exact pass, and anything that does not shows up as a mismatch instead of passing silently.
DEFAULT_PRECISION = 'ap_fixed<1,0>'


def export(model: Any, target: Target, out_dir: Path, x: np.ndarray, force: bool = False, sources: tuple = ()) -> ExportReport:
    """Write the hls4ml project for ``target`` into ``out_dir`` and compare its C simulation with ``model``."""
    import hls4ml

    inputs, ebops, seconds = firmware.start(model, x)
    progress = current()
    notes = list(inputs.notes)
    with atomic_path(out_dir, force, sources, what=f'{target} project') as tmp:
        t0 = time.perf_counter()
        config = {
            'Model': {
                'Precision': DEFAULT_PRECISION,
                'ReuseFactor': target.reuse_factor,
                'Strategy': STRATEGY_NAMES[target.strategy],
            },
            'LayerName': {layer.name: {'Trace': True} for layer in inputs.core.layers},  # per-layer outputs on a mismatch
        }
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log), progress.phase('convert'):
                progress.step(f'hls4ml {target.backend} {target.io_type}, {len(inputs.core.layers)} layers')
                hls = hls4ml.converters.convert_from_keras_model(
                    inputs.core,
                    output_dir=str(tmp),
                    project_name=firmware.project_name(model),
                    backend=BACKEND_NAMES[target.backend],
                    io_type=target.io_type,
                    hls_config=config,
                )
        except Exception as err:  # hls4ml raises bare Exceptions/asserts for unsupported setups
            raise ExportError(
                'hls4ml could not convert the model', where=model.name, received=f'{type(err).__name__}: {err}'
            ) from err
        seconds['convert'] = time.perf_counter() - t0
        exact: dict[str, bool] = {}
        mism: dict[str, int] = {}
        counts: dict[str, int] = {}
        if target.backend in COMPILABLE:
            t0 = time.perf_counter()
            try:
                with progress.phase('compile'):
                    progress.step('writing the project and g++ (one step, not interruptible inside)')
                    hls.compile()
            except Exception as err:
                raise ExportError('the hls4ml C simulation did not compile', where=str(tmp), received=str(err)[:300]) from err
            seconds['compile'] = time.perf_counter() - t0
            exact, mism, counts, seconds['compare'] = firmware.compare(
                inputs.core, inputs, lambda d: hls.predict(np.ascontiguousarray(d.reshape(len(d), -1), dtype=np.float64))
            )
        else:
            with progress.phase('write'):
                hls.write()
            notes.append(
                f'{target.backend}: the C simulation needs the vendor compiler, so it was written but not compiled or compared here'
            )
        report = ExportReport(
            target=str(target),
            out_dir=str(out_dir),
            bit_exact=exact,
            mismatches=mism,
            compared_values=counts,
            estimates={'EBOPs': ebops, **firmware.model_sizes(inputs.core), 'EBOPs per layer': compute_ebops(inputs.core)},
            files=[],
            seconds=seconds,
            notes=notes,
        )
        if report.verified and not report.ok:
            firmware.locate_divergence(report, inputs.core, inputs, lambda d: _trace(hls, d))
        (tmp / 'hls4ml_convert.log').write_text(log.getvalue())
        firmware.record_files(report, tmp, out_dir)
        report.save(tmp / 'hgqbridge_export.json')
    return report


def _trace(hls: Any, data: np.ndarray) -> dict[str, np.ndarray]:
    """Per-layer outputs of the compiled C simulation (hls4ml recompiles with tracing on)."""
    with contextlib.redirect_stdout(io.StringIO()):
        _, trace = hls.trace(np.ascontiguousarray(data.reshape(len(data), -1), dtype=np.float64))
    return trace
