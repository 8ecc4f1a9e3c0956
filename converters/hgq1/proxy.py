"""HGQ1 proxy models (``HGQ.to_proxy_model``): plain Keras layers interleaved with ``FixedPointQuantizer`` layers.

Everything is in the file (fixtures/hgq1/README.md, section 6): each quantizer's per-element ``keep_negative``,
``bits`` and ``integers`` (int8; the sign counts as an integer bit) are the HGQ2 format ``k = keep_negative,
i = integers - keep_negative, f = bits - integers``, with the quantizer's ``RND`` / ``TRN`` and ``WRAP`` / ``SAT``;
``bits == 0`` is a pruned element (0). The Dense / Conv layers before the quantizers hold HGQ1's quantized
kernels and (pre-shifted) biases on their grids: ``mark_proxy_weights`` names them ``HGQ1 proxy <class>`` so that
their handler carries them with exact per-element formats instead of as float weights.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FormatArray
from hgqbridge.graph import SourceGraph, SourceLayer

from ..hgq.specs import QuantizeSpec, Spec, WeightLayerSpec
from ..keras.layers import DENSE_ACTIVATIONS, check_kernel_size, conv_layer, dense_layer
from .arith import exact_formats, grid_bits, uniform_or_array
from .registry import LAYERS, register_both

ROUND = {'RND': 'RND', 'TRN': 'TRN', 'RND_CONV': 'RND_CONV'}
OVERFLOW = {'WRAP': 'WRAP', 'SAT': 'SAT', 'SAT_SYM': 'SAT_SYM'}
QUANTIZERS = ('HGQ>FixedPointQuantizer', 'FixedPointQuantizer')
#: The plain Keras weight layers to_proxy_model writes, and the name they get once marked.
PROXY_WEIGHTS = {'Dense': 'HGQ1 proxy Dense', 'Conv1D': 'HGQ1 proxy Conv1D', 'Conv2D': 'HGQ1 proxy Conv2D'}
MAX_F = 40  # a weight needing more fractional bits is not on any HGQ1 grid


def mark_proxy_weights(graph: SourceGraph) -> SourceGraph:
    """Name every Dense / Conv1D / Conv2D whose output goes only into HGQ1 FixedPointQuantizers (what
    to_proxy_model writes) ``HGQ1 proxy <class>``; any other layer is left as it is."""
    quantizers = {layer.name for layer in graph if layer.class_name in QUANTIZERS}
    if not quantizers:
        return graph
    layers = []
    for layer in graph.layers:
        users = graph.consumers(layer.name)
        marked = PROXY_WEIGHTS.get(layer.class_name)
        if marked and users and all(user.name in quantizers for user in users):
            layer = replace(layer, class_name=marked)
        layers.append(layer)
    return replace(graph, layers=layers)


def fixed_point_format(layer: SourceLayer) -> Any:
    """A FixedPointQuantizer's per-element formats (one FixedFormat when they are all alike)."""
    cfg = layer.config
    rnd, sat = ROUND.get(cfg.get('RND', 'TRN')), OVERFLOW.get(cfg.get('SAT', 'WRAP'))
    if rnd is None or sat is None:
        raise LayerProblem(
            f'rounding {cfg.get("RND")!r} / overflow {cfg.get("SAT")!r} is not converted (to_proxy_model writes RND or TRN, '
            'WRAP or SAT)',
            're-export the proxy with HGQ1',
        )
    arrays = [layer.weight(name) for name in ('keep_negative', 'bits', 'integers')]
    if any(a is None for a in arrays):
        raise LayerProblem(
            'the weights file has no keep_negative/bits/integers for this quantizer', 'pass the proxy file HGQ1 saved'
        )
    k, b, integers = (np.asarray(a, dtype=np.int64) for a in arrays)  # type: ignore[arg-type]
    if not (k.shape == b.shape == integers.shape) or np.any((k != 0) & (k != 1)) or np.any(b < 0):
        raise LayerProblem(
            'keep_negative must be 0 or 1, bits non-negative, all three of one shape',
            'pass the proxy file HGQ1 saved',
            received=(k.shape, b.shape, integers.shape),
        )
    live = b > 0  # HGQ1 zeroes keep_negative and integers of pruned elements; their output is 0
    fmt = FormatArray(np.where(live, k, 0), np.where(live, integers - k, 0), np.where(live, b - integers, 0), rnd, sat)
    return uniform_or_array(fmt)


def _fixed_point_quantizer(layer: SourceLayer) -> Spec:
    return QuantizeSpec(fixed_point_format(layer))


register_both(
    'FixedPointQuantizer',
    _fixed_point_quantizer,
    status=(
        'exact: per-element kif(keep_negative, integers - keep_negative, bits - integers) with its RND/TRN and '
        'WRAP/SAT (bits 0: pruned); it becomes the next layer input quantizer (overrides, hls4ml hints, are ignored)'
    ),
    builds=('Quantizer',),
    quantizes=True,
)
for _name in ('HGQ>UnaryLUT', 'UnaryLUT'):
    LAYERS.refuse(
        _name,
        "an HGQ1 UnaryLUT is a table of arbitrary values (it does not name its function), and HGQ2's "
        'QUnaryFunctionLUT computes a function',
        'convert the saved HGQ1 model, or a proxy written without unary_lut_max_table_size',
    )


def on_grid(values: np.ndarray, what: str) -> Any:
    """Per-element formats holding ``values`` exactly (their own grid), or a problem when they lie on none."""
    f = grid_bits(values)
    if f.size and int(f.max()) > MAX_F:
        raise LayerProblem(
            f'the {what} is not on a fixed-point grid (a value needs {int(f.max())} fractional bits): not an HGQ1 proxy weight',
            'pass the proxy file to_proxy_model wrote',
        )
    return exact_formats(values, f)


def exact_weight_spec(layer: SourceLayer, kind: str, args: dict, kernel: np.ndarray, bias: np.ndarray | None, **_: Any) -> Spec:
    """A proxy weight layer: its kernel and bias as saved (HGQ1's quantized values), exact per-element formats."""
    check_kernel_size(args, kernel.shape, kernel.shape)
    act = layer.config.get('activation', 'linear')
    if act not in DENSE_ACTIVATIONS:
        raise LayerProblem(f'activation {act!r} in a proxy weight layer is not converted', 're-export the proxy with HGQ1')
    bias_fmt = None if bias is None else on_grid(bias, 'bias')
    return WeightLayerSpec(kind, args, kernel, bias, on_grid(kernel, 'kernel'), bias_fmt, str(act))


PROXY_STATUS = (
    'exact: a {cls} before HGQ1 FixedPointQuantizers (to_proxy_model): its quantized kernel and pre-shifted bias as saved, '
    'per-element exact formats'
)


@LAYERS.register(PROXY_WEIGHTS['Dense'], status=PROXY_STATUS.format(cls='Dense'), builds=('QDense',), quantizes=True)
def proxy_dense(layer: SourceLayer) -> Spec:
    return dense_layer(layer, exact_weight_spec)


@LAYERS.register(PROXY_WEIGHTS['Conv1D'], status=PROXY_STATUS.format(cls='Conv1D'), builds=('QConv1D',), quantizes=True)
def proxy_conv1d(layer: SourceLayer) -> Spec:
    return conv_layer(layer, 1, exact_weight_spec)


@LAYERS.register(PROXY_WEIGHTS['Conv2D'], status=PROXY_STATUS.format(cls='Conv2D'), builds=('QConv2D',), quantizes=True)
def proxy_conv2d(layer: SourceLayer) -> Spec:
    return conv_layer(layer, 2, exact_weight_spec)
