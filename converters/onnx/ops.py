"""ONNX op handlers: dense layers and activations, one per op type, ONNX node -> HGQ2 build spec (channels-last).

The other families register from ``conv_ops.py`` (convolution, pooling, normalization, padding, resizing),
``shape_ops.py`` (reshapes, transposes, concatenation, elementwise arithmetic) and ``quant_ops.py`` (QONNX and
QCDQ quantizers); what they share is in ``common.py``.
"""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.graph import SourceLayer

from ..hgq.composite_specs import ClipSpec, LeakyReluSpec
from ..hgq.specs import FloatActivationSpec, IdentitySpec, InputSpec, Spec, WeightLayerSpec
from .common import EXACT, FLOAT_ACT, WEIGHTED, Format, const, has_const, optional_scalar, transposed
from .layout import held_axis
from .registry import OPS

#: ONNX Selu's defaults (float32), which are Keras's selu constants rounded to float32.
SELU = (1.67326319217681884765625, 1.05070102214813232421875)

for _op in ('LSTM', 'GRU', 'RNN', 'Loop', 'If', 'Scan'):
    OPS.refuse(_op, 'control flow and recurrent ops are not converted', 'export a feed-forward graph')


def _scaled(values: np.ndarray, fmt: Format | None, factor: float, what: str) -> tuple[np.ndarray, Format | None]:
    """Gemm's alpha / beta folded into its constant: exact for float weights up to float32 rounding, and for
    quantized ones when the factor is a power of two (the values then get the narrowest formats holding them)."""
    if factor == 1.0:
        return values, fmt
    scaled = (np.asarray(values, np.float32) * np.float32(factor)).astype(np.float32)
    if fmt is None:
        return scaled, None
    if not np.isfinite(factor) or factor == 0 or np.frexp(abs(factor))[0] != 0.5:
        raise LayerProblem(
            f'{what} {factor} is not a power of two, so the quantized weights it scales lose their format',
            'export with alpha = beta = 1 (fold the scale into the weights)',
        )
    if isinstance(fmt, FormatArray):
        return scaled, FormatArray.covering(scaled)
    return scaled, FixedFormat.covering(scaled, max_f=64, round=fmt.round, overflow=fmt.overflow)


def _gemm(layer: SourceLayer) -> Spec:
    cfg = layer.config
    if cfg.get('transA', 0):
        raise LayerProblem(
            'Gemm with transA=1 on a computed input transposes the batch axis', 're-export with a plain Linear layer'
        )
    if (cfg.get('rank') or 2) != 2:
        raise LayerProblem(f'a {layer.class_name} on a rank-{cfg.get("rank")} tensor is not converted', 'flatten first')
    kernel, kfmt = const(layer, 1, 'the weight matrix')
    if kernel.ndim != 2:
        raise LayerProblem(f'the weight matrix must be 2-D, got shape {kernel.shape}', 're-export the model')
    if cfg.get('transB', 0):
        kfmt = transposed(kfmt, (1, 0), kernel.shape)
        kernel = kernel.T
    kernel, kfmt = _scaled(kernel, kfmt, float(cfg.get('alpha', 1.0)), 'alpha')
    units = int(kernel.shape[1])
    bias, bfmt = const(layer, 2, 'the bias') if has_const(layer, 2) else (None, None)
    if bias is not None:
        if bias.size not in (1, units) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
            raise LayerProblem(f'a bias of shape {bias.shape} for {units} outputs is not converted', 're-export the model')
        bias = np.broadcast_to(bias.reshape(-1), (units,)).astype(np.float32)
        bfmt = FormatArray.covering(bias) if isinstance(bfmt, FormatArray) else bfmt
        bias, bfmt = _scaled(bias, bfmt, float(cfg.get('beta', 1.0)), 'beta')
    return WeightLayerSpec('dense', {'units': units}, kernel, bias, kfmt, bfmt)


@OPS.register('InputLayer', status=EXACT, builds=('InputLayer',))
def input_layer(layer: SourceLayer) -> Spec:
    return InputSpec(tuple(layer.config['batch_shape']))


@OPS.register(
    'Gemm',
    status=f'{WEIGHTED}: a QDense (transB; alpha and beta folded into the weights, exact for powers of two)',
    builds=('QDense',),
)
def gemm(layer: SourceLayer) -> Spec:
    return _gemm(layer)


@OPS.register('MatMul', status=f'{WEIGHTED}: a QDense (MatMul + Add of a constant become one)', builds=('QDense',))
def matmul(layer: SourceLayer) -> Spec:
    return _gemm(layer)


@OPS.register('Relu', status='exact: a Keras ReLU', builds=('ReLU',))
def relu(layer: SourceLayer) -> Spec:
    return FloatActivationSpec('relu')


@OPS.register('Sigmoid', status=FLOAT_ACT, builds=('Activation', 'QUnaryFunctionLUT'))
def sigmoid(layer: SourceLayer) -> Spec:
    return FloatActivationSpec('sigmoid')


@OPS.register('Tanh', status=FLOAT_ACT, builds=('Activation', 'QUnaryFunctionLUT'))
def tanh(layer: SourceLayer) -> Spec:
    return FloatActivationSpec('tanh')


@OPS.register(
    'Selu', status=f'{FLOAT_ACT} (ONNX default alpha and gamma, which are Keras selu)', builds=('Activation', 'QUnaryFunctionLUT')
)
def selu(layer: SourceLayer) -> Spec:
    alpha, gamma = float(layer.config.get('alpha', SELU[0])), float(layer.config.get('gamma', SELU[1]))
    if (np.float32(alpha), np.float32(gamma)) != (np.float32(SELU[0]), np.float32(SELU[1])):
        raise LayerProblem(f'Selu with alpha={alpha}, gamma={gamma} (not the defaults) is not converted', 'use the default Selu')
    return FloatActivationSpec('selu')


@OPS.register('Softmax', status=FLOAT_ACT, builds=('Activation', 'QSoftmax'))
def softmax(layer: SourceLayer) -> Spec:
    rank = layer.config.get('rank') or 2
    axis = int(layer.config.get('axis', -1))
    if not -rank <= axis < rank or held_axis(layer.config.get('layout', 'same'), rank, axis) != rank - 1:
        raise LayerProblem(f'softmax over axis {axis} of a rank-{rank} tensor is not converted', 'use the channel axis')
    return FloatActivationSpec('softmax')


@OPS.register(
    'LeakyRelu', status="exact for a power-of-two slope: a Keras LeakyReLU (ONNX's default slope is 0.01)", builds=('LeakyReLU',)
)
def leaky_relu(layer: SourceLayer) -> Spec:
    slope = layer.config.get('alpha', 0.01)
    if not isinstance(slope, (int, float)) or isinstance(slope, bool) or not np.isfinite(slope) or slope < 0:
        raise LayerProblem(f'LeakyRelu alpha must be a non-negative number, got {slope}', 're-export the model')
    return LeakyReluSpec(slope)


@OPS.register(
    'Clip',
    status='exact: clip(x, 0, hi) a Keras ReLU(max_value=hi) (ReLU6), clip(x, -1, 1) hard_tanh, clip(x, None, hi) min(x, hi)',
    builds=('ReLU', 'Activation'),
)
def clip(layer: SourceLayer) -> Spec:
    """Bounds as attributes (opset < 11) or constant inputs (opset >= 11; an empty input: no bound)."""
    low, high = optional_scalar(layer, 1, 'min'), optional_scalar(layer, 2, 'max')
    if low is not None and low <= -3.4e38:
        low = None
    if high is not None and high >= 3.4e38:
        high = None
    if high is not None and low is not None and high < low:
        raise LayerProblem(f'Clip with min {low} > max {high}', 're-export the model')
    if low == 0.0 and high is None:
        return FloatActivationSpec('relu')
    if high is not None and (low in (0.0, None) or (low, high) == (-1.0, 1.0)):
        return ClipSpec(low, high)
    raise LayerProblem(
        f'Clip({low}, {high}) is not converted (Keras has no layer that clips to any bounds)',
        'clip to [0, max] (ReLU6), [-1, 1] (Hardtanh) or to a maximum only',
    )


@OPS.register('Identity', status='exact: removed')
def identity(layer: SourceLayer) -> Spec:
    return IdentitySpec('Identity does nothing')


@OPS.register('Dropout', status='exact: removed (nothing at inference; refused when training_mode is true or computed)')
def dropout(layer: SourceLayer) -> Spec:
    training = np.ravel(const(layer, 2, 'training_mode')[0]) if has_const(layer, 2) else np.zeros(1)
    if 2 in layer.config.get('computed_inputs', []) or np.any(training != 0) or layer.config.get('is_test', 1) == 0:
        raise LayerProblem(
            'Dropout in training mode (training_mode true or computed, or is_test=0) drops values at random',
            'export the model in inference mode (model.eval())',
        )
    return IdentitySpec('Dropout does nothing at inference')


@OPS.register('Cast', status='exact when it casts to float32, which every computed tensor already is: removed')
def cast(layer: SourceLayer) -> Spec:
    if int(layer.config.get('to', 0)) != 1:
        raise LayerProblem(
            f'Cast to ONNX type {layer.config.get("to")} (not float32) changes the values or the arithmetic after it',
            'export without the cast',
        )
    return IdentitySpec('a Cast to float32 of a float32 tensor does nothing')
