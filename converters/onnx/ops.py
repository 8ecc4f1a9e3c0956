"""ONNX op handlers: one per op type, ONNX node -> HGQ2 build spec (channels-last).

Weights arrive in ``layer.weights`` as ``<node>/in<k>:0`` (k = the input position), already quantized when a
QONNX weight quantizer fed them, with that format in ``config['formats'][k]`` (or the reason it could not be
quantized exactly, which the consumer reports here so that every problem is listed at once).
"""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.graph import SourceLayer
from hgqbridge.numerics import finite

from ..hgq.composite_specs import AveragePoolSpec, BatchNormSpec, ChainSpec, LeakyReluSpec
from ..hgq.specs import FloatActivationSpec, IdentitySpec, InputSpec, MergeSpec, MoveSpec, QuantizeSpec, Spec, WeightLayerSpec
from .graph import WeightProblem
from .qonnx import quant_format
from .registry import OPS

EXACT = 'converted exactly'
WEIGHTED = 'exact with QONNX-quantized weights (float weights: dummy quantizers or the float policy)'
FLOAT_ACT = 'float: kept float (dummy), or QUnaryFunctionLUT / QSoftmax when the model is quantized'

Format = FixedFormat | FormatArray

OPS.refuse('Trunc', 'QONNX Trunc (average-pool rescaling) is not converted yet', 'export the model without Trunc nodes')
OPS.refuse(
    'BipolarQuant',
    'BipolarQuant on activations is a comparison (x >= 0), not a rounding of x',
    'use Quant on activations (BipolarQuant is converted on weights)',
)
for _op in ('LSTM', 'GRU', 'RNN', 'Loop', 'If', 'Scan'):
    OPS.refuse(_op, 'control flow and recurrent ops are not converted', 'export a feed-forward graph')


def _const(layer: SourceLayer, k: int, what: str) -> tuple[np.ndarray, Format | None]:
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


def _transposed(fmt: Format | None) -> Format | None:
    if not isinstance(fmt, FormatArray):
        return fmt
    return FormatArray(np.asarray(fmt.k).T, np.asarray(fmt.i).T, np.asarray(fmt.f).T, fmt.round, fmt.overflow)


def _padding(layer: SourceLayer, kernel: tuple[int, ...]) -> str:
    pads = layer.config.get('pads') or [0] * (2 * len(kernel))
    if layer.config.get('auto_pad', 'NOTSET') not in ('NOTSET', 'VALID', 'SAME_UPPER') and any(pads):
        raise LayerProblem(f'auto_pad={layer.config.get("auto_pad")!r} is not converted', 'use explicit pads')
    if not any(pads) and layer.config.get('auto_pad', 'NOTSET') != 'SAME_UPPER':
        return 'valid'
    begin, end = pads[: len(kernel)], pads[len(kernel) :]
    if (
        list(begin) == list(end)
        and all(2 * b == k - 1 for b, k in zip(begin, kernel))
        and all(s == 1 for s in layer.config.get('strides', [1]))
    ):
        return 'same'
    raise LayerProblem(
        f'pads {pads} are neither valid nor same padding', 'use padding=0 or symmetric (k-1)/2 padding with stride 1'
    )


def _channels_first(layer: SourceLayer) -> None:
    """Convolutions, pooling and batch normalization read ONNX channels-first tensors (held channels-last here)."""
    if (layer.config.get('rank') or 2) > 2 and layer.config.get('layout') != 'cf':
        raise LayerProblem(
            f'{layer.class_name} on a channels-last tensor (no Transpose to channels-first before it)',
            'export with the standard NCHW layout',
        )


def _gemm(layer: SourceLayer) -> Spec:
    cfg = layer.config
    if cfg.get('transA', 0) or cfg.get('alpha', 1.0) != 1.0 or cfg.get('beta', 1.0) != 1.0:
        raise LayerProblem(
            'Gemm with transA, alpha or beta other than the defaults is not converted', 're-export with a plain Linear layer'
        )
    if (cfg.get('rank') or 2) != 2:
        raise LayerProblem(f'a {layer.class_name} on a rank-{cfg.get("rank")} tensor is not converted', 'flatten first')
    kernel, kfmt = _const(layer, 1, 'the weight matrix')
    if kernel.ndim != 2:
        raise LayerProblem(f'the weight matrix must be 2-D, got shape {kernel.shape}', 're-export the model')
    if cfg.get('transB', 0):
        kernel = kernel.T
        kfmt = None if kfmt is None else _transposed(kfmt)
    bias, bfmt = _const(layer, 2, 'the bias') if f'{layer.name}/in2:0' in layer.weights else (None, None)
    if bias is not None and bias.shape != (kernel.shape[1],):
        raise LayerProblem(f'a bias of shape {bias.shape} for {kernel.shape[1]} outputs is not converted', 're-export the model')
    return WeightLayerSpec('dense', {'units': int(kernel.shape[1])}, kernel, bias, kfmt, bfmt)


@OPS.register('InputLayer', status=EXACT, builds=('InputLayer',))
def input_layer(layer: SourceLayer) -> Spec:
    return InputSpec(tuple(layer.config['batch_shape']))


@OPS.register('Gemm', status=f'{WEIGHTED}: a QDense (alpha = beta = 1, transA = 0)', builds=('QDense',))
def gemm(layer: SourceLayer) -> Spec:
    return _gemm(layer)


@OPS.register('MatMul', status=f'{WEIGHTED}: a QDense (MatMul + Add of a constant become one)', builds=('QDense',))
def matmul(layer: SourceLayer) -> Spec:
    return _gemm(layer)


@OPS.register(
    'Conv', status=f'{WEIGHTED}: OIHW / OIW kernels become channels-last QConv2D / QConv1D', builds=('QConv1D', 'QConv2D')
)
def conv(layer: SourceLayer) -> Spec:
    _channels_first(layer)
    weight, wfmt = _const(layer, 1, 'the convolution weights')
    rank = weight.ndim - 2
    if rank not in (1, 2):
        raise LayerProblem(f'a {rank}-D convolution is not converted', 'use Conv1d or Conv2d')
    if wfmt is not None and not hasattr(wfmt, 'width'):
        raise LayerProblem('per-channel quantized convolution weights are not converted yet', 'use one weight scale per tensor')
    kernel = np.transpose(weight, (*range(2, 2 + rank), 1, 0))  # (O, I, *k) -> (*k, I, O)
    group = int(layer.config.get('group', 1))
    args = {
        'filters': int(weight.shape[0]),
        'kernel_size': tuple(kernel.shape[:rank]),
        'padding': _padding(layer, tuple(kernel.shape[:rank])),
        'strides': tuple(layer.config.get('strides', [1] * rank)),
        'dilation_rate': tuple(layer.config.get('dilations', [1] * rank)),
    }
    if group != 1:
        args['groups'] = group
    bias, bfmt = _const(layer, 2, 'the bias') if f'{layer.name}/in2:0' in layer.weights else (None, None)
    return WeightLayerSpec(f'conv{rank}d', args, kernel, bias, wfmt, bfmt)


@OPS.register('Relu', status='exact: a Keras ReLU', builds=('ReLU',))
def relu(layer: SourceLayer) -> Spec:
    return FloatActivationSpec('relu')


@OPS.register('Sigmoid', status=FLOAT_ACT, builds=('Activation', 'QUnaryFunctionLUT'))
def sigmoid(layer: SourceLayer) -> Spec:
    return FloatActivationSpec('sigmoid')


@OPS.register('Tanh', status=FLOAT_ACT, builds=('Activation', 'QUnaryFunctionLUT'))
def tanh(layer: SourceLayer) -> Spec:
    return FloatActivationSpec('tanh')


@OPS.register('Softmax', status=FLOAT_ACT, builds=('Activation', 'QSoftmax'))
def softmax(layer: SourceLayer) -> Spec:
    if layer.config.get('axis', -1) not in (-1, (layer.config.get('rank') or 2) - 1):
        raise LayerProblem(f'softmax over axis {layer.config.get("axis")} is not converted', 'use the last axis')
    return FloatActivationSpec('softmax')


@OPS.register(
    'LeakyRelu', status="exact for a power-of-two slope: a Keras LeakyReLU (ONNX's default slope is 0.01)", builds=('LeakyReLU',)
)
def leaky_relu(layer: SourceLayer) -> Spec:
    slope = layer.config.get('alpha', 0.01)
    if not isinstance(slope, (int, float)) or isinstance(slope, bool) or not np.isfinite(slope) or slope < 0:
        raise LayerProblem(f'LeakyRelu alpha must be a non-negative number, got {slope}', 're-export the model')
    return LeakyReluSpec(slope)


@OPS.register('Identity', status='exact: removed')
def identity(layer: SourceLayer) -> Spec:
    return IdentitySpec('Identity does nothing')


@OPS.register('Dropout', status='exact: removed (nothing at inference)')
def dropout(layer: SourceLayer) -> Spec:
    return IdentitySpec('Dropout does nothing at inference')


@OPS.register(
    'Transpose', status='exact when it only changes layout (channels-last <-> channels-first around convolutions): removed'
)
def transpose(layer: SourceLayer) -> Spec:
    if not layer.config.get('layout_change'):
        raise LayerProblem(
            f'Transpose with perm {layer.config.get("perm")} moves data, not just the layout', 'export without the transpose'
        )
    return IdentitySpec('a layout change: the HGQ2 model is channels-last throughout')


def _pool(layer: SourceLayer, average: bool) -> Spec:
    _channels_first(layer)
    kernel = tuple(layer.config.get('kernel_shape') or ())
    if len(kernel) not in (1, 2) or any(layer.config.get('pads') or []) or layer.config.get('ceil_mode', 0):
        raise LayerProblem(
            f'pooling with kernel {kernel}, pads {layer.config.get("pads")} is not converted', 'use unpadded 1-D/2-D pooling'
        )
    args = (('pool_size', kernel), ('strides', tuple(layer.config.get('strides') or kernel)), ('padding', 'valid'))
    if not average:
        return MoveSpec(f'MaxPooling{len(kernel)}D', args)
    area = int(np.prod(kernel))
    return AveragePoolSpec(len(kernel), args, False, f'a pool area of {area} is not a power of two' if area & (area - 1) else '')


@OPS.register('MaxPool', status='exact: channels-last max pooling', builds=('MaxPooling1D', 'MaxPooling2D'))
def max_pool(layer: SourceLayer) -> Spec:
    return _pool(layer, average=False)


@OPS.register(
    'AveragePool',
    status='exact for a power-of-two window (else measured): channels-last average pooling',
    builds=('QAveragePooling1D', 'QAveragePooling2D'),
)
def average_pool(layer: SourceLayer) -> Spec:
    return _pool(layer, average=True)


def _global_pool(layer: SourceLayer, reduce_mean: bool) -> Spec:
    _channels_first(layer)
    rank = layer.config.get('rank') or 0
    if reduce_mean:
        axes = sorted(a % rank for a in (layer.config.get('axes') or [])) if rank else []
        if rank not in (3, 4) or axes != list(range(2, rank)) or layer.config.get('keepdims', 1):
            raise LayerProblem(
                f'ReduceMean over axes {layer.config.get("axes")} (keepdims={layer.config.get("keepdims", 1)}) is not converted',
                'reduce over the spatial axes with keepdims=0',
            )
    elif rank not in (3, 4):
        raise LayerProblem(f'GlobalAveragePool on a rank-{rank} tensor is not converted', 'pool an NCW or NCHW tensor')
    spec = AveragePoolSpec(rank - 2, (), True)
    if not reduce_mean:  # GlobalAveragePool keeps (N, C, 1, 1)
        return ChainSpec(spec, MoveSpec('Reshape', (('target_shape', (1,) * (rank - 2) + (-1,)),)))
    return spec


@OPS.register(
    'GlobalAveragePool',
    status='the mean over every spatial axis of an NCW / NCHW tensor: a channels-last global average pooling',
    builds=('QGlobalAveragePooling1D', 'QGlobalAveragePooling2D', 'Reshape'),
)
def global_average_pool(layer: SourceLayer) -> Spec:
    return _global_pool(layer, reduce_mean=False)


@OPS.register(
    'ReduceMean',
    status='over the spatial axes of an NCW / NCHW tensor (keepdims=0): a channels-last global average pooling',
    builds=('QGlobalAveragePooling1D', 'QGlobalAveragePooling2D'),
)
def reduce_mean(layer: SourceLayer) -> Spec:
    return _global_pool(layer, reduce_mean=True)


def _flatten(layer: SourceLayer, reshape: bool) -> Spec:
    rank = layer.config.get('rank') or 2
    if not reshape and layer.config.get('axis', 1) != 1:
        raise LayerProblem(f'Flatten(axis={layer.config.get("axis")}) is not converted', 'flatten from axis 1')
    if reshape:
        shape, _ = _const(layer, 1, 'the target shape')
        if shape.ndim != 1 or len(shape) != 2:
            raise LayerProblem(f'Reshape to {shape.tolist()} is not converted (only flattening reshapes)', 'use Flatten')
    if rank <= 2:
        return IdentitySpec('already flat')
    if layer.config.get('layout') != 'cf':  # the tensor is channels-last in ONNX too: the orders agree
        return MoveSpec('Flatten')
    dims = (rank - 1, *range(1, rank - 1))  # channels-last (N, *spatial, C) -> (N, C, *spatial)
    return ChainSpec(MoveSpec('Permute', (('dims', dims),)), MoveSpec('Flatten'))


@OPS.register(
    'Flatten',
    status="to (N, features) in ONNX's channels-first order: a Permute back to channels-first, then Flatten",
    builds=('Permute', 'Flatten'),
)
def flatten(layer: SourceLayer) -> Spec:
    return _flatten(layer, reshape=False)


@OPS.register(
    'Reshape',
    status="flattening reshapes only, in ONNX's channels-first order (a Permute, then Flatten)",
    builds=('Permute', 'Flatten'),
)
def reshape(layer: SourceLayer) -> Spec:
    return _flatten(layer, reshape=True)


def _merge(layer: SourceLayer) -> None:
    if len(layer.inbound) < 2 or any(k.endswith(':0') for k in layer.weights):
        raise LayerProblem(
            f'{layer.class_name} of a constant is not converted (only of two computed tensors)',
            'fold the constant into the layer before',
        )


@OPS.register('Add', status=EXACT, builds=('QAdd',))
def add(layer: SourceLayer) -> Spec:
    _merge(layer)
    return MergeSpec('add')


@OPS.register('Concat', status='exact on the channel axis', builds=('Concatenate',))
def concat(layer: SourceLayer) -> Spec:
    _merge(layer)
    rank, axis = layer.config.get('rank') or 2, int(layer.config.get('axis', 1))
    channel_axis = 1 if layer.config.get('layout') == 'cf' else rank - 1
    if axis % rank != channel_axis:
        raise LayerProblem(f'Concat over axis {axis} is not converted', 'concatenate channels (axis 1)')
    return MergeSpec('concatenate', -1)


@OPS.register(
    'BatchNormalization',
    status='float batch normalization over channels: HGQ2 QBatchNormalization',
    builds=('QBatchNormalization',),
)
def batch_norm(layer: SourceLayer) -> Spec:
    _channels_first(layer)
    gamma, beta, mean, var = (_const(layer, k, what)[0] for k, what in ((1, 'scale'), (2, 'bias'), (3, 'mean'), (4, 'variance')))
    epsilon = layer.config.get('epsilon', 1e-5)
    if not isinstance(epsilon, (int, float)) or not np.isfinite(epsilon) or epsilon < 0:
        raise LayerProblem(f'epsilon must be a non-negative number, got {epsilon!r}', 're-export the model')
    if np.any(var + epsilon <= 0):
        raise LayerProblem(
            f'{int(np.sum(var + epsilon <= 0))} channel(s) have variance + epsilon <= 0, which makes the scale NaN or infinite',
            're-train or re-export the model (a variance is never negative)',
        )
    return BatchNormSpec(gamma, beta, mean, var, float(epsilon))


def _quant(layer: SourceLayer) -> Spec:
    consts = {f'c{k}': v for k in (1, 2, 3) if (v := layer.weights.get(f'{layer.name}/in{k}:0')) is not None}
    fmt = quant_format(consts, ['x', 'c1', 'c2', 'c3'], layer.config, weight=False)
    if not isinstance(fmt, FixedFormat):  # (quant_format refuses per-channel scales on activations itself)
        raise LayerProblem('a per-channel scale on activations is not converted', 'use one scale per activation tensor')
    return QuantizeSpec(fmt)


@OPS.register(
    'Quant',
    status='exact: QONNX Quant with a power-of-two scale and zero zero-point is kif(signed, b - signed - f, f), SAT[_SYM]',
    builds=('Quantizer',),
    quantizes=True,
)
def quant(layer: SourceLayer) -> Spec:
    return _quant(layer)


@OPS.register('IntQuant', status='exact: the same op as Quant', builds=('Quantizer',), quantizes=True)
def int_quant(layer: SourceLayer) -> Spec:
    return _quant(layer)
