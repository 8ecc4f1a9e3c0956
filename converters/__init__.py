"""The one door between the core (``hgqbridge/``) and the converters, installed as ``hgqbridge.converters``.

The core imports nothing else from here; it never names a framework. Two tables say what exists:

* ``SOURCES``: every source format, each with the suffixes (or folders) it reads, its reader, the registries
  whose handlers convert its layers, the passes it opts into, and what it prepares before conversion;
* ``TARGETS``: every export target, each declared in its own folder (``converters/<target>/__init__.py``).

A new source or target is one folder plus one row here. Below the tables, the steps every conversion, check and
export takes: read, normalise (passes), convert (the HGQ2 builder), calibrate and compare (float sources).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hgqbridge.datafiles import check_input_shape
from hgqbridge.errors import HGQBridgeError, ProblemsError, SourceFileError
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits
from hgqbridge.registry import Registry
from hgqbridge.report import CheckReport, ExportReport

from . import alkaid, da4ml, hgq1, hls4ml, keras, onnx, qkeras
from .deploy.rules import run_rules
from .deploy.target import Target
from .hgq.driver import Conversion, convert_graph, is_float_graph
from .hgq.policy import FloatPolicy, comparison, policy_summary, saturate, traced_formats
from .passes.fold_batchnorm import FoldBatchNorm, FoldTable

#: ``prepare(graph, registries, input_format, calibration x, limits)``: what a source computes for its handlers before
#: conversion from the user's input format or data (HGQ1: the integer bits its saved models do not hold).
Prepare = Callable[[SourceGraph, tuple[Registry, ...], FixedFormat | None, np.ndarray | None, Limits], SourceGraph]


@dataclass(frozen=True)
class Source:
    """A source format: ``read(path, weights, limits, registries)`` makes its SourceGraph."""

    name: str
    suffixes: tuple[str, ...]
    is_folder: Callable[[Path], bool] | None
    read: Callable[[Path, Path | None, Limits, tuple[Registry, ...]], SourceGraph]
    registries: tuple[Registry, ...]
    fold: FoldTable | None = None
    usage: str = ''
    prepare: Prepare | None = None


def _read_keras(path: Path, weights: Path | None, limits: Limits, registries: tuple[Registry, ...]) -> SourceGraph:
    order = {
        name: entry.weights
        for reg in registries
        for name in reg.names()
        if (entry := reg.entry(name)) is not None and entry.weights
    }
    return keras.read(path, weights, limits, order)


def _read_onnx(path: Path, weights: Path | None, limits: Limits, registries: tuple[Registry, ...]) -> SourceGraph:
    if weights is not None:
        raise SourceFileError('--weights goes with a .json architecture only', where=str(weights), fix='drop --weights')
    return onnx.read_onnx(path, limits)


SOURCES: tuple[Source, ...] = (
    Source(
        'Keras, QKeras and HGQ1',
        keras.SUFFIXES,
        keras.is_savedmodel,
        _read_keras,
        (keras.LAYERS, qkeras.LAYERS, hgq1.LAYERS),
        FoldTable('BatchNormalization', {'Dense': 2, 'Conv1D': 3, 'Conv2D': 4}),
        'a Keras-2/QKeras/HGQ1 .h5 file, SOURCE.json --weights SOURCE_weights.h5, a Keras-3/QKeras-v3 .keras file, '
        'a tf.keras SavedModel folder',
        hgq1.prepare,
    ),
    Source('ONNX and QONNX', onnx.SUFFIXES, None, _read_onnx, (onnx.OPS,), None, 'an ONNX/QONNX .onnx file'),
)
TARGETS: dict[str, Target] = {target.name: target for target in (hls4ml.TARGET, alkaid.TARGET, da4ml.TARGET)}


def registries() -> list[Registry]:
    """Every registry the support matrix lists: each source's layer registries and QKeras's quantizers."""
    return [*(reg for source in SOURCES for reg in source.registries), qkeras.QUANTIZERS]


def source_for(path: Path) -> Source:
    """The source that reads ``path``: by its suffix, or, for a folder, the source that reads folders."""
    for source in SOURCES:
        if (source.is_folder is not None) if path.is_dir() else path.suffix.lower() in source.suffixes:
            return source
    raise SourceFileError(
        f'unknown model file type {path.suffix.lower() or "(none)"!r}',
        where=str(path),
        fix='pass ' + ', or '.join(s.usage for s in SOURCES),
    )


# ---- the steps of an import ------------------------------------------------------------------------------------------


def read(path: Path, weights: Path | None = None, limits: Limits = Limits()) -> tuple[SourceGraph, Source]:
    """Read a source model file into a SourceGraph (the reader is chosen by the file's suffix or folder)."""
    source = source_for(path)
    return source.read(path, weights, limits, source.registries), source


def normalize(graph: SourceGraph, source: Source, fold_batchnorm: bool) -> SourceGraph:
    """The passes a user asked for that the source opts into: batch-norm folding."""
    if not fold_batchnorm:
        return graph
    if source.fold is None:
        return graph
    graph, changed = FoldBatchNorm(source.fold).apply(graph)
    if not changed:
        graph.notes.append('batch normalization folded into the layer before it: none could be')
    return graph


def import_model(
    path: Path,
    weights: Path | None = None,
    input_format: FixedFormat | None = None,
    *,
    bits: int | None = None,
    dummy: bool = False,
    calibration: dict[str, np.ndarray] | None = None,
    fold_batchnorm: bool = False,
    limits: Limits = Limits(),
    uniform_activations: bool = False,
) -> Conversion:
    """Read, normalise and convert a source model. A float source (no layer carries the source's own quantizers),
    or any model when ``bits``/``dummy`` is given, is quantized by a ``FloatPolicy``: ``dummy`` keeps it float;
    otherwise ``bits``-bit (default 8) weights and saturating activations whose integer bits come from
    ``calibration['x']`` (with ``uniform_activations``, one format per tensor: the union of its elements' ranges); the report shows the float and the quantized model side by side on the calibration data
    and on ``x_val``/``y_val``. Without data a float model is refused unless ``bits`` is given (then every
    activation is a stated +-8 saturating format). A saved HGQ1 model takes the integer bits it does not hold from
    ``calibration['x']`` (traced), or from the range of ``input_format`` (interval propagation; the report says
    which)."""
    if bits is not None and (not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32):
        raise HGQBridgeError('bits must be an integer from 2 to 32', received=bits, fix='e.g. --bits 8')
    graph, source = read(path, weights, limits)
    graph = normalize(graph, source, fold_batchnorm)
    regs = source.registries
    if source.prepare is not None:
        graph = source.prepare(graph, regs, input_format, None if calibration is None else calibration.get('x'), limits)
    if not (dummy or bits is not None or is_float_graph(graph, regs)):
        conv = convert_graph(graph, regs, input_format, None, limits)
        if uniform_activations:
            conv.report.summary.append(
                '--uniform-activations changed nothing: it applies to float layers the bridge quantizes, and this '
                "model keeps its source's own formats (add --bits N to re-quantize it)"
            )
        return conv
    if calibration is None and not dummy and bits is None:
        convert_graph(graph, regs, input_format, FloatPolicy(dummy=True), limits)  # every unsupported layer and limit first
        raise HGQBridgeError(
            'a float model has no fixed-point formats of its own, and without data the bridge will not guess them',
            where=str(path),
            fix='pass --calibration data.npz (x: inputs; x_val, y_val: held-back data for the comparison), '
            '--dummy to keep it float, or --bits N to accept uncalibrated +-8 saturating activations',
        )
    policy = FloatPolicy(bits or 8, dummy, uniform=uniform_activations)
    if calibration is None or dummy:
        conv = convert_graph(graph, regs, input_format, policy, limits)
        conv.report.summary.extend(policy_summary(policy, None))
        return conv
    x = calibration['x']
    tracer = convert_graph(graph, regs, input_format, replace(policy, overflow='WRAP'), limits).model
    shape = tuple(tracer.inputs[0].shape[1:])
    x = check_input_shape(x, shape, 'calibration data x')
    formats = traced_formats(tracer, x, policy)
    conv = convert_graph(graph, regs, input_format, policy, limits)
    saturate(conv.model, formats, policy)
    conv.report.summary.extend(policy_summary(policy, len(x)))
    reference = convert_graph(graph, regs, input_format, FloatPolicy(policy.bits, dummy=True), limits).model
    conv.report.summary.extend(comparison(reference, conv.model, x, calibration.get('y'), 'calibration data'))
    if 'x_val' in calibration:
        x_val = check_input_shape(calibration['x_val'], shape, 'x_val')
        conv.report.summary.extend(comparison(reference, conv.model, x_val, calibration.get('y_val'), 'held-back data'))
    else:
        conv.report.summary.append('no held-back data (x_val, y_val) given: accuracy on fresh inputs not measured')
    return conv


# ---- targets: check and export -----------------------------------------------------------------------------------------


def parse_target(text: str, options: dict[str, Any]) -> tuple[Target, Any]:
    """``NAME[:VARIANT]`` and the options the user gave (None: not given) -> the target and its own options."""
    name, _, variant = text.strip().lower().partition(':')
    target = TARGETS.get(name)
    if target is None:
        raise HGQBridgeError('unknown target', received=text, fix=f'use one of {" | ".join(t.usage for t in TARGETS.values())}')
    return target, target.parse(variant, options)


def check(model: Any, text: str, options: dict[str, Any]) -> CheckReport:
    """Which layers the target can deploy, with the reason and the fix; the model is not modified."""
    target, spec = parse_target(text, options)
    return run_rules(model, spec, target.rules)


def export(
    model: Any, text: str, out_dir: Path, x: np.ndarray, force: bool, sources: tuple[Path, ...], options: dict[str, Any]
) -> ExportReport:
    """Check first (refuse an undeployable model with every reason), then write the project and prove it."""
    from hgqbridge.outputs import check_output

    target, spec = parse_target(text, options)
    check_output(out_dir, force, sources)
    x = check_input_shape(np.asarray(x), tuple(model.inputs[0].shape[1:]), f'{model.name} input')
    report = run_rules(model, spec, target.rules)
    if report.deployable and any(item.status == 'warning' and '[export-calibration]' in item.reason for item in report.items):
        report = recheck_calibrated(model, spec, target, x)
    if not report.deployable:
        blocking = [p for p in report.problems() if p.severity in ('error', 'unverified')]
        what = 'cannot be deployed' if any(p.severity == 'error' for p in blocking) else 'cannot be proven bit-exact'
        raise ProblemsError(f'the model {what} on {spec}', blocking, where=model.name)
    return target.export(model, spec, out_dir, x, force, sources)


def recheck_calibrated(model: Any, spec: Any, target: Target, x: np.ndarray) -> CheckReport:
    """The rules on the model as export will make it: a copy whose WRAP quantizers export's calibration (hgq
    trace_minmax on the export data and its stress inputs) has re-derived."""
    from .deploy import firmware

    inputs = firmware.prepare(model, x)
    firmware.calibrate(inputs.core, inputs)
    return run_rules(inputs.core, spec, target.rules)


def scan_model(path: Path, limits: Limits) -> dict:
    """The config of an HGQ2 ``.keras`` model, read by the isolated reader after the checks every read makes."""
    config, _ = keras.isolated('scan', path, None, limits)
    return config
