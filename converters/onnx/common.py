"""What the ONNX op handlers share: reading a node's constant inputs, its ONNX and held shapes, and paddings.

Weights arrive in ``layer.weights`` as ``<node>/in<k>:0`` (k = the input position), already quantized when a
QONNX / QCDQ weight quantizer fed them, with that format in ``config['formats'][k]`` (or the reason it could not
be quantized exactly, which the consumer reports so that every problem is listed at once). ``config['shape']`` /
``config['out_shape']`` are the ONNX shapes of the node's first computed input and of its output (batch None),
``config['layout']`` / ``config['out_layout']`` how they are held (``layout.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.graph import SourceLayer
from hgqbridge.numerics import finite

from .graph import WeightProblem
from .layout import held_shape

EXACT = 'converted exactly'
WEIGHTED = 'exact with QONNX / QCDQ-quantized weights (float weights: dummy quantizers or the float policy)'
FLOAT_ACT = 'float: kept float (dummy), or QUnaryFunctionLUT / QSoftmax when the model is quantized'

Format = FixedFormat | FormatArray


def has_const(layer: SourceLayer, k: int) -> bool:
    return f'{layer.name}/in{k}:0' in layer.weights


def const(layer: SourceLayer, k: int, what: str) -> tuple[np.ndarray, Format | None]:
    """Constant input ``k`` and its exact format (None: a float constant); a weight problem is raised here."""
    value = layer.weights.get(f'{layer.name}/in{k}:0')
    if value is None:
        raise LayerProblem(
            f'{what} (input {k}) must be a constant initializer', 'fold the weights into initializers (constant folding)'
        )
    finite(what, value)
    fmt = layer.config.get('formats', {}).get(k)
    if isinstance(fmt, WeightProblem):
        raise LayerProblem(fmt.reason, fmt.fix)
    return value, fmt


def optional_scalar(layer: SourceLayer, k: int, attr: str) -> float | None:
    """A scalar given as constant input ``k`` (newer opsets) or as attribute ``attr`` (older ones), or None."""
    if has_const(layer, k):
        value = np.asarray(const(layer, k, attr)[0])
        if value.size != 1:
            raise LayerProblem(f'{attr} must be one number, got shape {value.shape}', 're-export the model')
        return float(value.ravel()[0])
    if k in layer.config.get('computed_inputs', []):
        raise LayerProblem(f'{attr} (input {k}) must be a constant', 'fold it into an initializer')
    given = layer.config.get(attr)
    return None if given is None else float(given)


def transposed(fmt: Format | None, axes: tuple[int, ...], shape: tuple[int, ...]) -> Format | None:
    """A weight's format rearranged as the weight is (per-element formats follow their elements)."""
    if not isinstance(fmt, FormatArray):
        return fmt
    k, i, f = (np.transpose(np.broadcast_to(np.asarray(a), shape), axes) for a in (fmt.k, fmt.i, fmt.f))
    return FormatArray(k, i, f, fmt.round, fmt.overflow)


def shapes(layer: SourceLayer) -> tuple[list[Any], list[Any]]:
    """The node's ONNX input and output shapes (a problem if shape inference could not give them)."""
    shape, out = layer.config.get('shape'), layer.config.get('out_shape')
    if not shape or not out:
        raise LayerProblem(
            'the shapes of its input and output are not known (ONNX shape inference could not give them)',
            'export with static shapes apart from the batch',
        )
    return list(shape), list(out)


def held(layer: SourceLayer) -> list[Any]:
    """The held (channels-last) shape of the node's input."""
    return held_shape(layer.config.get('layout', 'same'), shapes(layer)[0])


def need_layout(layer: SourceLayer, wanted: str) -> None:
    """Convolutions, pooling and batch normalization read channels-first tensors (``'cf'``, standard ops) or
    channels-last ones (``'same'``, qonnx's channels-last ops)."""
    rank = layer.config.get('rank') or 2
    if rank > 2 and layer.config.get('layout') != wanted:
        raise LayerProblem(
            f'{layer.class_name} on a channels-{"last" if wanted == "cf" else "first"} tensor (no Transpose to '
            f'channels-{"first" if wanted == "cf" else "last"} before it)',
            'export with the standard NCHW layout' if wanted == 'cf' else 'run qonnx ConvertToChannelsLastAndClean again',
        )


def pads_of(layer: SourceLayer, kernel: tuple[int, ...], spatial: list[Any]) -> list[tuple[int, int]]:
    """(begin, end) per spatial axis from ``pads`` or ``auto_pad`` (SAME_UPPER: the extra pad at the end, as
    TensorFlow's 'same'; SAME_LOWER: at the beginning; VALID: none)."""
    auto = layer.config.get('auto_pad', 'NOTSET') or 'NOTSET'
    n = len(kernel)
    strides = list(layer.config.get('strides') or [1] * n)
    dilations = list(layer.config.get('dilations') or [1] * n)
    if auto in ('SAME_UPPER', 'SAME_LOWER'):
        if None in spatial:
            raise LayerProblem(f'auto_pad={auto} on a tensor of unknown size', 'export with static shapes')
        out = []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            out.append((small, large) if auto == 'SAME_UPPER' else (large, small))
        return out
    if auto not in ('NOTSET', 'VALID'):
        raise LayerProblem(f'auto_pad={auto!r} is not an ONNX padding mode', 're-export the model')
    pads = [int(p) for p in (layer.config.get('pads') or [0] * (2 * n))] if auto == 'NOTSET' else [0] * (2 * n)
    if len(pads) != 2 * n or any(p < 0 for p in pads):
        raise LayerProblem(f'pads {pads} are not {2 * n} non-negative numbers', 're-export the model')
    return list(zip(pads[:n], pads[n:]))


def keras_padding(pads: list[tuple[int, int]], kernel: tuple[int, ...], layer: SourceLayer, spatial: list[Any]) -> str | None:
    """'valid' or 'same' when Keras's own padding (TensorFlow's 'same': the extra pad at the end) is exactly
    ``pads``; None when only explicit zero padding gives them."""
    if not any(b or e for b, e in pads):
        return 'valid'
    if None in spatial:
        return None
    n = len(kernel)
    same = pads_of(SourceLayer(layer.name, layer.class_name, {**layer.config, 'auto_pad': 'SAME_UPPER'}), kernel, spatial)
    strides = list(layer.config.get('strides') or [1] * n)
    dilations = list(layer.config.get('dilations') or [1] * n)
    if pads == same and (all(s == 1 for s in strides) or all(d == 1 for d in dilations)):
        return 'same'
    return None
