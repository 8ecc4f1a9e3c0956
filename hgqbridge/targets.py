"""Targets: parse ``hls4ml:vitis`` / ``da4ml`` and dispatch check and export to the exporter's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import HGQBridgeError, ProblemsError
from .report import CheckReport, ExportReport

TARGETS_HELP = 'hls4ml:vivado | hls4ml:vitis | hls4ml:oneapi | hls4ml:quartus | hls4ml:catapult | da4ml'


def parse_target(text: str, io_type: str = 'io_parallel', strategy: str = 'latency', reuse_factor: int = 1) -> Any:
    from .converters.hgq.rules import Target
    from .converters.hls4ml.rules import BACKENDS, IO_TYPES, STRATEGIES

    tool, _, backend = text.strip().lower().partition(':')
    strategy = strategy.lower().replace('da', 'distributed_arithmetic') if strategy.lower() == 'da' else strategy.lower()
    if tool == 'da4ml' and not backend:
        return Target('da4ml')
    if tool != 'hls4ml' or backend not in BACKENDS:
        raise HGQBridgeError('unknown target', received=text, fix=f'use one of {TARGETS_HELP}')
    if io_type not in IO_TYPES or strategy not in STRATEGIES or reuse_factor < 1:
        raise HGQBridgeError(
            'unknown hls4ml option', received=f'io_type={io_type}, strategy={strategy}, reuse_factor={reuse_factor}',
            fix=f'io_type in {IO_TYPES}, strategy in {STRATEGIES}, reuse_factor >= 1',
        )
    return Target('hls4ml', backend, io_type, strategy, reuse_factor)


def _rules(target: Any) -> list:
    if target.tool == 'da4ml':
        from .converters.da4ml.rules import RULES
    else:
        from .converters.hls4ml.rules import RULES
    return RULES


def check(model: Any, target: str, **options: Any) -> CheckReport:
    from .converters.hgq.rules import run_rules

    t = parse_target(target, **options)
    return run_rules(model, t, _rules(t))


def export(model: Any, target: str, out_dir: Path, x: np.ndarray, force: bool = False, rtl: bool | None = None, inputs: tuple = (),
           **options: Any) -> ExportReport:
    """Check first (refuse an undeployable model with every reason), then export and compare. ``rtl`` (da4ml):
    also verilate and compare the Verilog; None does so whenever a usable verilator is installed."""
    from .datafiles import check_input_shape
    from .outputs import check_output

    t = parse_target(target, **options)
    check_output(out_dir, force, inputs)
    x = check_input_shape(np.asarray(x), tuple(model.inputs[0].shape[1:]), where=f'{model.name} input')
    report = check(model, target, **options)
    if not report.deployable:
        raise ProblemsError(f'the model cannot be deployed on {t}', [p for p in report.problems() if p.severity == 'error'], where=model.name)
    if t.tool == 'da4ml':
        from .converters.da4ml.export import export as run
    else:
        from .converters.hls4ml.export import export as run
    return run(model, t, out_dir, x, force, rtl, inputs)
