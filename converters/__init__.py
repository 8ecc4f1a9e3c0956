"""Framework-specific code, installed as ``hgqbridge.converters``: readers and layer handlers per source
framework (qkeras/), the HGQ2 model builder (hgq/), and the exporters with their support rules (hls4ml/,
da4ml/)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from hgqbridge.datafiles import check_input_shape
from hgqbridge.errors import HGQBridgeError, SourceFileError
from hgqbridge.fixed import FixedFormat
from hgqbridge.limits import Limits

from .hgq.driver import Conversion


def import_model(
    path: Path, weights: Path | None = None, input_format: FixedFormat | None = None, *,
    bits: int | None = None, dummy: bool = False, calibration: dict[str, np.ndarray] | None = None, fold_batchnorm: bool = False,
    limits: Limits = Limits(),
) -> Conversion:
    """Read a source model file and convert it; the reader is chosen by the file suffix.

    ``fold_batchnorm`` folds float batch normalizations into the Dense/Conv before them. A float model (no QKeras
    layer), or any model when ``bits``/``dummy`` is given, is quantized by a ``FloatPolicy``: ``dummy`` keeps it float; otherwise ``bits``-bit (default 8) weights and activations, the
    activations' integer bits from ``calibration['x']`` when given. With calibration data the report shows
    the float and the quantized model side by side."""
    from . import qkeras

    suffix = path.suffix.lower()
    if path.is_dir():
        graph = qkeras.read_savedmodel(path, limits)
    elif suffix in ('.h5', '.hdf5'):
        graph = qkeras.read_h5(path, limits)
    elif suffix == '.json':
        graph = qkeras.read_json(path, weights, limits)
    elif suffix == '.keras':
        graph = qkeras.read_keras(path, limits)
    elif suffix == '.onnx':
        from . import onnx as onnx_import

        graph = onnx_import.read_onnx(path, limits)
    else:
        raise SourceFileError(
            f'unknown model file type {suffix or "(none)"!r}', where=str(path),
            fix='pass a Keras-2/QKeras .h5 file, SOURCE.json --weights SOURCE_weights.h5, a Keras-3/QKeras-v3 .keras file, a tf.keras SavedModel folder, or an ONNX/QONNX .onnx file',
        )
    from .hgq.build import FloatPolicy
    from .hgq.float_model import calibrate_policy, comparison, is_float_graph, policy_summary

    convert = qkeras.convert_graph
    if graph.framework == 'onnx':
        from . import onnx as onnx_import

        convert = onnx_import.convert_graph
    elif is_float_graph(graph):
        graph = replace(graph, framework='keras')
    folded: list[str] = []
    if fold_batchnorm:
        graph, folded = qkeras.fold_batchnorm(graph)

    if bits is not None and (not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32):
        raise HGQBridgeError('bits must be an integer from 2 to 32', received=bits, fix='e.g. --bits 8')
    if graph.framework == 'onnx' and any(len(layer.config.get('channels_first_shape', ())) in (3, 4) for layer in graph):
        layout = 'the HGQ2 model is channels-last: feed NCHW data as x.transpose(0, 2, 3, 1) (NCW as x.transpose(0, 2, 1))'
    else:
        layout = ''
    if not (dummy or bits is not None or is_float_graph(graph)):
        conv = convert(graph, input_format, None, limits)
        if fold_batchnorm:
            conv.report.summary.append(f'batch normalization folded into the layer before it: {", ".join(folded) or "none could be"}')
        conv.report.summary.extend([layout] if layout else [])
        return conv
    policy = FloatPolicy(bits or 8, dummy)
    conv = convert(graph, input_format, policy, limits)
    x = None if calibration is None else check_input_shape(calibration['x'], tuple(conv.model.inputs[0].shape[1:]), 'calibration data x')
    if x is not None and not dummy:
        calibrate_policy(conv.model, x, policy)
    conv.report.summary.extend(policy_summary(policy, None if x is None or dummy else len(x)) + ([layout] if layout else []))
    if fold_batchnorm:
        conv.report.summary.append(f'batch normalization folded into the layer before it: {", ".join(folded) or "none could be"}')
    if x is not None and not dummy:
        reference = convert(graph, input_format, FloatPolicy(policy.bits, dummy=True), limits).model
        x_eval = calibration.get('x_val', x)
        y_eval = calibration.get('y_val') if 'x_val' in calibration else calibration.get('y')
        conv.report.summary.extend(comparison(reference, conv.model, check_input_shape(x_eval, tuple(conv.model.inputs[0].shape[1:]), 'x_val'), y_eval))
    return conv
