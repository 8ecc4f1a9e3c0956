"""hgqbridge: move quantized neural networks (QKeras, Keras, ONNX) onto HGQ2, bit-exactly, and on to FPGAs.

The public API. Everything heavy (TensorFlow, Keras, hgq2, hls4ml, da4ml) is imported inside the functions,
so ``import hgqbridge`` and ``hgqbridge --help`` are instant.

    model = hgqbridge.convert('model.h5')              # keras.Model of genuine hgq.layers
    conv = hgqbridge.import_model('model.h5')          # the same, with the conversion report and tensor map
    hgqbridge.verify(conv, 'model.golden.npz')         # bit-exact against the source framework's outputs
    hgqbridge.check(model, 'hls4ml:vitis')             # deployability, per layer
    hgqbridge.export(model, 'da4ml', 'prj', x)         # write the project and prove it bit-exact
    hgqbridge.finetune(model, x, y, x_val, y_val)      # one fine-tune: test scores, Pareto front
    hgqbridge.sweep(model, data, 'out/', runs=8)       # many, as Ray Tune trials, one merged front
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

# verify.py, finetune.py and sweep.py share their names with the API functions below. Import them first (both are light:
# numpy only), so that the functions defined afterwards are what ``hgqbridge.verify`` / ``.finetune`` name.
from . import finetune as _finetune_module
from . import sweep as _sweep_module
from . import verify as _verify_module
from .errors import HGQBridgeError
from .fixed import FixedFormat
from .limits import Limits

if TYPE_CHECKING:
    from .report import CheckReport, ExportReport, VerifyReport

__version__ = '0.1.0'
__all__ = ['FixedFormat', 'HGQBridgeError', 'Limits', 'check', 'convert', 'export', 'finetune', 'import_model', 'sweep', 'verify']


def _quiet_tf() -> None:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    os.environ.setdefault('KERAS_BACKEND', 'tensorflow')


def import_model(
    path: str | Path,
    weights: str | Path | None = None,
    input_format: str | FixedFormat | None = None,
    *,
    bits: int | None = None,
    dummy: bool = False,
    calibration: str | Path | dict | None = None,
    fold_batchnorm: bool = False,
    limits: Limits | None = None,
    uniform_activations: bool = False,
) -> Any:
    """Read and convert a source model; returns a ``Conversion`` (``.model``, ``.report``, tensor map).
    ``limits`` (``hgqbridge.Limits``) raises the budgets that protect against hostile files.

    Float (plain Keras) models are quantized with ``bits``-bit weights and activations (default 8), activation
    ranges from ``calibration`` (an ``.npz`` path or a dict with ``x``, optionally ``y``/``x_val``/``y_val``);
    ``dummy=True`` gives the float model itself in HGQ2 layers (dummy quantizers); ``uniform_activations=True`` one
    format per activation tensor instead of one per element (what hls4ml's io_stream generates)."""
    _quiet_tf()
    from .converters import import_model as _import
    from .datafiles import load_data

    try:
        fmt = FixedFormat.parse(input_format) if isinstance(input_format, str) else input_format
    except ValueError as err:
        raise HGQBridgeError('invalid input format', received=input_format, fix=f'{err}; e.g. fixed<16,6>') from None
    limits = limits or Limits()
    data = load_data(Path(calibration), limits=limits) if isinstance(calibration, (str, Path)) else calibration
    return _import(
        Path(path),
        Path(weights) if weights else None,
        fmt,
        bits=bits,
        dummy=dummy,
        calibration=data,
        fold_batchnorm=fold_batchnorm,
        limits=limits,
        uniform_activations=uniform_activations,
    )


def convert(
    path: str | Path,
    weights: str | Path | None = None,
    input_format: str | FixedFormat | None = None,
    *,
    bits: int | None = None,
    dummy: bool = False,
    calibration: str | Path | dict | None = None,
    fold_batchnorm: bool = False,
    limits: Limits | None = None,
    uniform_activations: bool = False,
) -> Any:
    """Read a source model file and return the equivalent ``keras.Model`` made of ``hgq.layers``."""
    return import_model(
        path,
        weights,
        input_format,
        bits=bits,
        dummy=dummy,
        calibration=calibration,
        fold_batchnorm=fold_batchnorm,
        limits=limits,
        uniform_activations=uniform_activations,
    ).model


def verify(conversion: Any, golden: str | Path) -> VerifyReport:
    """Compare every quantized tensor of a conversion with the source framework's golden outputs."""
    return _verify_module.verify(conversion, Path(golden))


def check(model: Any, target: str, **options: Any) -> CheckReport:
    """Which layers of an HGQ2 model the target (``hls4ml:vitis``, ``da4ml``, ...) can deploy, and why not.
    ``options``: the target's own (hls4ml: ``io_type``, ``strategy``, ``reuse_factor``). The model is not modified."""
    _quiet_tf()
    from .converters import check as _check

    return _check(model, target, options)


def export(
    model: Any,
    target: str,
    out_dir: str | Path,
    x: Any,
    force: bool = False,
    sources: tuple[Path, ...] = (),
    *,
    progress: bool = False,
    timeout: float | None = None,
    **options: Any,
) -> ExportReport:
    """Write the firmware project for ``target`` and prove it bit-exact to ``model`` on ``x`` and 4 x ``x``
    (``options``: the target's own, e.g. ``rtl=False`` for da4ml). The model is not modified. ``progress``: every
    phase over a second on stderr (which layer, how far), as the CLI shows it; ``timeout``: seconds, after which the
    export stops, leaves nothing written and raises HGQBridgeError."""
    _quiet_tf()
    import sys

    from .converters import export as _export
    from .converters.deploy.progress import ExportTimeout, Progress, active

    if timeout is not None and not timeout > 0:
        raise HGQBridgeError('the export timeout must be a positive number of seconds', received=timeout, fix='e.g. 600')
    if not progress and timeout is None:  # an outer progress (a caller's active()) stays in charge
        return _export(model, target, Path(out_dir), x, force, tuple(sources), options)
    try:
        with active(Progress('export', sys.stderr if progress else None, timeout=timeout)):
            return _export(model, target, Path(out_dir), x, force, tuple(sources), options)
    except ExportTimeout as err:
        raise HGQBridgeError(
            f'{err}; nothing was written and no temporary file is left',
            fix='give it more time (--timeout), or make it cheaper: hgqbridge check prints the estimate and what reduces it',
        ) from None


def finetune(model: Any, x: Any, y: Any, x_val: Any, y_val: Any, **options: Any) -> Any:
    """Heterogeneous-bit-width fine-tuning (EBOPs-regularised); returns a ``FinetuneResult``."""
    _quiet_tf()
    return _finetune_module.finetune(model, x, y, x_val, y_val, **options)


def sweep(model: Any, data: dict, out_dir: str | Path, **options: Any) -> Any:
    """Many fine-tunes as Ray Tune trials (local Ray, or ``address=`` a cluster), one merged Pareto front; returns a
    ``SweepResult``. ``data``: x, y, x_val, y_val (and x_test, y_test). Options: see ``hgqbridge.sweep.sweep``."""
    _quiet_tf()
    return _sweep_module.sweep(model, data, out_dir, **options)
