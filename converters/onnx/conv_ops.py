"""ONNX op handlers for convolution, pooling, normalization, padding and resizing (channels-last in the HGQ2 model).

Standard ops read ONNX channels-first tensors (OIHW / OIW kernels); qonnx's channels-last ops
(``qonnx.custom_op.channels_last:Conv`` ...) read channels-last ones (OHWI / OWI kernels). Any ONNX padding
converts: Keras's own ``padding='same'`` where it pads exactly the same (TensorFlow's 'same' puts the extra pad at
the end, as ONNX SAME_UPPER), else explicit zero padding before a 'valid' layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer

from ..hgq.composite_specs import AveragePoolSpec, BatchNormSpec, ChainSpec, PaddedSpec
from ..hgq.specs import IdentitySpec, MoveSpec, Spec, WeightLayerSpec
from .common import WEIGHTED, const, has_const, held, keras_padding, need_layout, pads_of, shapes, transposed
from .layout import held_axis, perm
from .registry import OPS

CL = 'qonnx.custom_op.channels_last:'


def _spatial(layer: SourceLayer, channels_last: bool) -> list[Any]:
    shape = layer.config.get('shape') or []
    return list(shape[1:-1] if channels_last else shape[2:])


def _zero_padding(pads: list[tuple[int, int]]) -> MoveSpec:
    padding: Any = pads[0] if len(pads) == 1 else tuple(pads)
    return MoveSpec(f'ZeroPadding{len(pads)}D', (('padding', padding),))


def _conv(layer: SourceLayer, channels_last: bool) -> Spec:
    need_layout(layer, 'same' if channels_last else 'cf')
    weight, wfmt = const(layer, 1, 'the convolution weights')
    rank = weight.ndim - 2
    if rank not in (1, 2):
        raise LayerProblem(f'a {rank}-D convolution is not converted', 'use Conv1d or Conv2d')
    axes = (*range(1, 1 + rank), rank + 1, 0) if channels_last else (*range(2, 2 + rank), 1, 0)  # -> (*k, I, O)
    kernel = np.transpose(weight, axes)
    size = tuple(int(k) for k in kernel.shape[:rank])
    spatial = _spatial(layer, channels_last)
    pads = pads_of(layer, size, spatial)
    padding = keras_padding(pads, size, layer, spatial)
    args: dict[str, Any] = {
        'filters': int(kernel.shape[-1]),
        'kernel_size': size,
        'padding': padding or 'valid',
        'strides': tuple(layer.config.get('strides') or [1] * rank),
        'dilation_rate': tuple(layer.config.get('dilations') or [1] * rank),
    }
    group = int(layer.config.get('group', 1))
    if group != 1:
        args['groups'] = group
    bias, bfmt = const(layer, 2, 'the bias') if has_const(layer, 2) else (None, None)
    spec = WeightLayerSpec(f'conv{rank}d', args, kernel, bias, transposed(wfmt, axes, weight.shape), bfmt)
    return spec if padding is not None else PaddedSpec(_zero_padding(pads), spec)


@OPS.register(
    'Conv',
    status=f'{WEIGHTED}: OIHW / OIW kernels become channels-last QConv2D / QConv1D; any pads (explicit, asymmetric, '
    "auto_pad): Keras 'same' where equal, else ZeroPadding then a valid convolution",
    builds=('QConv1D', 'QConv2D', 'ZeroPadding1D', 'ZeroPadding2D'),
)
def conv(layer: SourceLayer) -> Spec:
    return _conv(layer, channels_last=False)


@OPS.register(
    f'{CL}Conv',
    status=f'{WEIGHTED}: qonnx channels-last Conv (OHWI / OWI kernels on channels-last tensors), as Conv',
    builds=('QConv1D', 'QConv2D', 'ZeroPadding1D', 'ZeroPadding2D'),
)
def channels_last_conv(layer: SourceLayer) -> Spec:
    return _conv(layer, channels_last=True)


def _pool(layer: SourceLayer, average: bool, channels_last: bool = False) -> Spec:
    need_layout(layer, 'same' if channels_last else 'cf')
    kernel = tuple(int(k) for k in layer.config.get('kernel_shape') or ())
    dilations = list(layer.config.get('dilations') or [1] * len(kernel))
    if len(kernel) not in (1, 2) or layer.config.get('ceil_mode', 0) or any(d != 1 for d in dilations):
        raise LayerProblem(
            f'pooling with kernel {kernel}, ceil_mode {layer.config.get("ceil_mode", 0)}, dilations {dilations} is not converted',
            'use 1-D / 2-D pooling without ceil_mode or dilation',
        )
    spatial = _spatial(layer, channels_last)
    pads = pads_of(layer, kernel, spatial)
    padding = keras_padding(pads, kernel, layer, spatial)
    strides = tuple(layer.config.get('strides') or [1] * len(kernel))  # (ONNX's default stride is 1, not the kernel)
    include_pad = bool(layer.config.get('count_include_pad', 0))
    if not average:
        pool = MoveSpec(
            f'MaxPooling{len(kernel)}D', (('pool_size', kernel), ('strides', strides), ('padding', padding or 'valid'))
        )
        if padding is not None:
            return pool
        if not layer.config.get('nonnegative') or any(b >= k or e >= k for (b, e), k in zip(pads, kernel)):
            raise LayerProblem(
                f'MaxPool pads {pads} are not Keras padding, and its input may be negative (ONNX pads a max pooling '
                'with -inf; zero padding is the same only for non-negative values)',
                "pad as TensorFlow's 'same' does, or pool after a ReLU",
            )
        return PaddedSpec(_zero_padding(pads), pool)
    area = int(np.prod(kernel))
    divide = f'a pool area of {area} is not a power of two' if area & (area - 1) else ''
    if padding == 'same' and include_pad:
        padding = None  # Keras's 'same' average pooling leaves the padding out of the count
    if padding is None and not include_pad:
        raise LayerProblem(
            f'AveragePool pads {pads} with count_include_pad=0 are not Keras padding',
            "pad as TensorFlow's 'same' does, or use count_include_pad=1",
        )
    if padding == 'same':
        divide = 'same padding: the border windows divide by their valid count'
    args = (('pool_size', kernel), ('strides', strides), ('padding', padding or 'valid'))
    spec = AveragePoolSpec(len(kernel), args, False, divide)
    return spec if padding is not None else PaddedSpec(_zero_padding(pads), spec)


@OPS.register(
    'MaxPool',
    status="exact: channels-last max pooling (no pads, TensorFlow's 'same' pads, or any pads of a non-negative input: "
    'ZeroPadding then a valid pooling)',
    builds=('MaxPooling1D', 'MaxPooling2D', 'ZeroPadding1D', 'ZeroPadding2D'),
)
def max_pool(layer: SourceLayer) -> Spec:
    return _pool(layer, average=False)


@OPS.register(
    f'{CL}MaxPool',
    status='exact: qonnx channels-last MaxPool, as MaxPool',
    builds=('MaxPooling1D', 'MaxPooling2D', 'ZeroPadding1D', 'ZeroPadding2D'),
)
def channels_last_max_pool(layer: SourceLayer) -> Spec:
    return _pool(layer, average=False, channels_last=True)


@OPS.register(
    'AveragePool',
    status='exact for a power-of-two window (else measured): channels-last average pooling; pads counted in '
    '(count_include_pad=1) become ZeroPadding',
    builds=('QAveragePooling1D', 'QAveragePooling2D', 'ZeroPadding1D', 'ZeroPadding2D'),
)
def average_pool(layer: SourceLayer) -> Spec:
    return _pool(layer, average=True)


def _global_pool(layer: SourceLayer, axes: list[int], keepdims: bool) -> Spec:
    rank, lay = layer.config.get('rank') or 0, layer.config.get('layout', 'same')
    held_axes = sorted(held_axis(lay, rank, a) for a in axes) if rank else []
    if rank not in (3, 4) or held_axes != list(range(1, rank - 1)):
        raise LayerProblem(
            f'the mean over axes {axes} of a rank-{rank} tensor is not a pooling over its spatial axes',
            'reduce over the spatial axes (a global average pooling)',
        )
    spec = AveragePoolSpec(rank - 2, (), True)
    if keepdims:
        return ChainSpec(spec, MoveSpec('Reshape', (('target_shape', (1,) * (rank - 2) + (-1,)),)))
    return spec


@OPS.register(
    'GlobalAveragePool',
    status='the mean over every spatial axis of an NCW / NCHW tensor: a channels-last global average pooling',
    builds=('QGlobalAveragePooling1D', 'QGlobalAveragePooling2D', 'Reshape'),
)
def global_average_pool(layer: SourceLayer) -> Spec:
    need_layout(layer, 'cf')
    rank = layer.config.get('rank') or 0
    return _global_pool(layer, list(range(2, rank)), keepdims=True)


@OPS.register(
    'ReduceMean',
    status='the mean over the spatial axes (axes as attribute or input), in either layout: a global average pooling',
    builds=('QGlobalAveragePooling1D', 'QGlobalAveragePooling2D', 'Reshape'),
)
def reduce_mean(layer: SourceLayer) -> Spec:
    axes = layer.config.get('axes')
    if has_const(layer, 1):
        axes = [int(a) for a in np.ravel(const(layer, 1, 'the axes')[0])]
    if not axes:
        raise LayerProblem('ReduceMean over all axes (no axes given) is not converted', 'reduce over the spatial axes')
    return _global_pool(layer, [int(a) for a in axes], keepdims=bool(layer.config.get('keepdims', 1)))


def _batch_norm(layer: SourceLayer, channels_last: bool) -> Spec:
    need_layout(layer, 'same' if channels_last else 'cf')
    gamma, beta, mean, var = (const(layer, k, what)[0] for k, what in ((1, 'scale'), (2, 'bias'), (3, 'mean'), (4, 'variance')))
    epsilon = layer.config.get('epsilon', 1e-5)
    if not isinstance(epsilon, (int, float)) or not np.isfinite(epsilon) or epsilon < 0:
        raise LayerProblem(f'epsilon must be a non-negative number, got {epsilon!r}', 're-export the model')
    if np.any(var + epsilon <= 0):
        raise LayerProblem(
            f'{int(np.sum(var + epsilon <= 0))} channel(s) have variance + epsilon <= 0, which makes the scale NaN or infinite',
            're-train or re-export the model (a variance is never negative)',
        )
    if layer.config.get('training_mode', 0):
        raise LayerProblem('BatchNormalization in training mode is not converted', 'export the model in eval() mode')
    return BatchNormSpec(gamma, beta, mean, var, float(epsilon))


@OPS.register(
    'BatchNormalization',
    status='float batch normalization over channels: HGQ2 QBatchNormalization',
    builds=('QBatchNormalization',),
)
def batch_norm(layer: SourceLayer) -> Spec:
    return _batch_norm(layer, channels_last=False)


@OPS.register(
    f'{CL}BatchNormalization',
    status='qonnx channels-last BatchNormalization (over the last axis): HGQ2 QBatchNormalization',
    builds=('QBatchNormalization',),
)
def channels_last_batch_norm(layer: SourceLayer) -> Spec:
    return _batch_norm(layer, channels_last=True)


@OPS.register(
    'Pad',
    status='exact: constant zero padding of the spatial axes (pads as attribute or input) is Keras ZeroPadding',
    builds=('ZeroPadding1D', 'ZeroPadding2D'),
)
def pad(layer: SourceLayer) -> Spec:
    rank, lay = layer.config.get('rank') or 0, layer.config.get('layout', 'same')
    if layer.config.get('mode', 'constant') != 'constant':
        raise LayerProblem(f'Pad mode {layer.config.get("mode")!r} is not converted', 'pad with zeros (mode constant)')
    pads = [int(p) for p in (np.ravel(const(layer, 1, 'the pads')[0]) if has_const(layer, 1) else layer.config.get('pads', []))]
    value = float(np.ravel(const(layer, 2, 'the pad value')[0])[0]) if has_const(layer, 2) else layer.config.get('value', 0.0)
    axes = (
        [int(a) % rank for a in np.ravel(const(layer, 3, 'the axes')[0])] if has_const(layer, 3) and rank else list(range(rank))
    )
    if value != 0 or len(pads) != 2 * len(axes) or any(p < 0 for p in pads):
        raise LayerProblem(f'Pad with pads {pads} and value {value} is not converted', 'pad with zeros only (no cropping)')
    begin, end = dict(zip(axes, pads[: len(axes)])), dict(zip(axes, pads[len(axes) :]))
    order = [(begin.get(a, 0), end.get(a, 0)) for a in perm(lay, rank)]
    if not any(b or e for b, e in order):
        return IdentitySpec('a Pad of nothing')
    if rank not in (3, 4) or any(order[0]) or any(order[-1]):
        raise LayerProblem(
            f'Pad of the batch or channel axis (pads {pads} on a rank-{rank} tensor) is not converted', 'pad spatial axes only'
        )
    return _zero_padding(order[1:-1])


def _nearest_source(mode: str, nearest: str, size: int, scale: int) -> np.ndarray:
    """The input index ONNX Resize (mode nearest, onnx/reference/ops/op_resize.py) reads for each output index."""
    x = np.arange(size * scale, dtype=np.float32)
    s = np.float32(scale)
    original = {
        'asymmetric': x / s,
        'tf_half_pixel_for_nn': (x + np.float32(0.5)) / s,
        'half_pixel': (x + np.float32(0.5)) / s - np.float32(0.5),
        'half_pixel_symmetric': (x + np.float32(0.5)) / s - np.float32(0.5),
        'pytorch_half_pixel': (x + np.float32(0.5)) / s - np.float32(0.5) if size * scale > 1 else np.zeros_like(x),
        'align_corners': x * np.float32(size - 1) / np.float32(max(size * scale - 1, 1)),
    }[mode]
    index = {
        'round_prefer_floor': np.ceil(original - 0.5),
        'round_prefer_ceil': np.floor(original + 0.5),
        'floor': np.floor(original),
        'ceil': np.ceil(original),
    }[nearest]
    return np.clip(index, 0, size - 1).astype(np.int64)


def _upsample(layer: SourceLayer, scales: np.ndarray, mode: str, nearest: str) -> Spec:
    rank, lay = layer.config.get('rank') or 0, layer.config.get('layout', 'same')
    if layer.config.get('mode', 'nearest') != 'nearest':
        raise LayerProblem(f'{layer.config.get("mode")} resizing is not converted', 'use nearest-neighbour upsampling')
    if mode not in (
        'asymmetric',
        'tf_half_pixel_for_nn',
        'half_pixel',
        'half_pixel_symmetric',
        'pytorch_half_pixel',
        'align_corners',
    ):
        raise LayerProblem(f'coordinate_transformation_mode {mode!r} is not converted', 'use asymmetric or half_pixel')
    if nearest not in ('round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil'):
        raise LayerProblem(f'nearest_mode {nearest!r} is not an ONNX mode', 're-export the model')
    held_scales = [float(scales[a]) for a in perm(lay, rank)] if len(scales) == rank else []
    spatial = held(layer)[1:-1]
    if rank not in (3, 4) or not held_scales or held_scales[0] != 1 or held_scales[-1] != 1:
        raise LayerProblem(f'resizing by {list(scales)} is not an upsampling of the spatial axes', 'scale spatial axes only')
    sizes = [int(s) for s in held_scales[1:-1]]
    if any(s != h or s < 1 for s, h in zip(sizes, held_scales[1:-1])):
        raise LayerProblem(f'non-integer scales {list(scales)} are not converted', 'upsample by whole numbers')
    for n, s in zip(spatial, sizes):
        if n is None or not np.array_equal(_nearest_source(mode, nearest, n, s), np.arange(n * s) // s):
            raise LayerProblem(
                f'nearest resizing with {mode} / {nearest} by {s} does not repeat each value {s} times',
                'use coordinate_transformation_mode asymmetric (nearest_mode floor)',
            )
    return MoveSpec(f'UpSampling{rank - 2}D', (('size', sizes[0] if rank == 3 else tuple(sizes)),))


@OPS.register(
    'Resize',
    status='exact: nearest resizing by whole-number scales (or sizes) that repeats each value: Keras UpSampling',
    builds=('UpSampling1D', 'UpSampling2D'),
)
def resize(layer: SourceLayer) -> Spec:
    """Inputs (X, roi, scales, sizes) from opset 11 (scales empty when sizes are given); (X, scales) in opset 10,
    which resizes as Upsample (asymmetric, floor)."""
    if has_const(layer, 2) or has_const(layer, 3):
        scales = np.ravel(const(layer, 2, 'the scales')[0]) if has_const(layer, 2) else np.zeros(0)
        if scales.size == 0 and has_const(layer, 3):
            in_shape = shapes(layer)[0]
            scales = np.ravel(const(layer, 3, 'the sizes')[0]) / np.asarray([d or 1 for d in in_shape], np.float64)
        mode = layer.config.get('coordinate_transformation_mode', 'half_pixel')
        return _upsample(layer, scales.astype(np.float64), mode, layer.config.get('nearest_mode', 'round_prefer_floor'))
    if has_const(layer, 1):
        return _upsample(layer, np.ravel(const(layer, 1, 'the scales')[0]).astype(np.float64), 'asymmetric', 'floor')
    raise LayerProblem('Resize needs constant scales or sizes', 'export with static scales')


@OPS.register(
    'Upsample',
    status='exact: nearest upsampling by whole-number scales (opset 7 - 9): Keras UpSampling',
    builds=('UpSampling1D', 'UpSampling2D'),
)
def upsample(layer: SourceLayer) -> Spec:
    scales = np.ravel(const(layer, 1, 'the scales')[0]) if has_const(layer, 1) else np.asarray(layer.config.get('scales', []))
    return _upsample(layer, scales.astype(np.float64), 'asymmetric', 'floor')
