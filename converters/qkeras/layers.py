"""QKeras activations, dense and convolution layers: one handler per class name, on top of the Keras helpers.

A QKeras layer is its Keras layer plus quantizers: the Keras helpers (``converters/keras``) read and check the
config and the weights; here the ``kernel_quantizer`` / ``bias_quantizer`` become exact formats (or weights
computed once as QKeras computes them), and the quantizer given as ``activation=`` becomes the layer's output
quantizer. A handler raises ``LayerProblem`` for anything it cannot convert exactly and never touches TensorFlow.
"""

from __future__ import annotations

import numpy as np

from hgqbridge.fixed import FormatArray
from hgqbridge.graph import SourceLayer

from ..hgq.composite_specs import ChainSpec
from ..hgq.specs import FloatActivationSpec, IdentitySpec, QuantizeSpec, Spec, WeightLayerSpec
from ..keras.layers import DENSE_ACTIVATIONS, KB, check_kernel_size, conv_layer, dense_layer, keras_activation
from .qbase import exact_formats
from .quantizers import FloatActivation, Quantizer, parse_quantizer, weight_plan
from .registry import LAYERS

EXACT = 'exact: the quantizers as fixed-point formats (data-dependent scales computed once as QKeras does)'

LAYERS.refuse('QLSTM', 'HGQ2 has no LSTM layer', 'replace it by a QSimpleRNN, or keep the layer in QKeras')
LAYERS.refuse('QBidirectional', 'bidirectional recurrent layers are not converted', 'use a single-direction QSimpleRNN')
LAYERS.refuse(
    'QAdaptiveActivation',
    'its integer bits follow running statistics, so the saved model does not fix its quantizer',
    'freeze it: replace it by QActivation(quantized_bits(...)) with the bits it has learned',
)


def activation_spec(activation: object) -> Spec:
    """A QKeras ``activation`` (a quantizer, or a float activation name) as a spec of its own."""
    q = parse_quantizer(activation)
    if q is None or (isinstance(q, FloatActivation) and q.name == 'linear'):
        return IdentitySpec('linear activation')
    if isinstance(q, FloatActivation):
        return FloatActivationSpec(q.name)
    two_step = q.two_step()
    if two_step is not None:
        return two_step
    fmt, affine = q.activation_plan()
    # QKeras returns x + stop_gradient(xq - x) in float32: xq exactly while |x| < 2^(24 - f) (then ulp(x) <= 2^-f and
    # xq - x is exact, by Sterbenz's lemma or, when saturating, because it is a multiple of 2^-f below |x|)
    return QuantizeSpec(fmt, affine, None if affine is not None else 2.0 ** (24 - fmt.f))


def _rounded(pairs: tuple[tuple[Quantizer | None, str], ...]) -> bool:
    return any(q is not None and not isinstance(q, FloatActivation) and q.float_rounded(pos) for q, pos in pairs)


def weight_spec(
    layer: SourceLayer,
    kind: str,
    args: dict,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    *,
    kernel_shape: tuple[int, ...] | None = None,
    position: str = 'kernel',
    activation: bool = True,
) -> Spec:
    """The HGQ2 weight layer for a QKeras layer: its ``{position}_quantizer`` applied to ``kernel`` (then reshaped
    to ``kernel_shape``, e.g. a depthwise kernel as a grouped convolution's), ``bias_quantizer`` to ``bias``, and
    the layer's ``activation=`` (a quantizer, or relu/linear) unless ``activation`` is False."""
    check_kernel_size(args, kernel_shape or kernel.shape, kernel.shape, position)
    kq = parse_quantizer(layer.config.get(f'{position}_quantizer'))
    bq = parse_quantizer(layer.config.get('bias_quantizer'))
    kernel, kernel_fmt = weight_plan(kq, kernel, position)
    if kernel_shape is not None:
        kernel = kernel.reshape(kernel_shape)
        kernel_fmt = exact_formats(kernel, position) if isinstance(kernel_fmt, FormatArray) else kernel_fmt
    bias, bias_fmt = weight_plan(bq, bias, 'bias') if bias is not None else (None, None)
    rounded = _rounded(((kq, position), (bq, 'bias')))
    act = parse_quantizer(layer.config.get('activation', 'linear')) if activation else None
    if isinstance(act, FloatActivation) and act.name not in DENSE_ACTIVATIONS:
        linear = WeightLayerSpec(kind, args, kernel, bias, kernel_fmt, bias_fmt, 'linear', None, None, rounded)
        return ChainSpec(linear, keras_activation(act.name))
    if isinstance(act, FloatActivation):
        return WeightLayerSpec(kind, args, kernel, bias, kernel_fmt, bias_fmt, act.name, None, None, rounded)
    if act is not None and (two_step := act.two_step()) is not None:
        return ChainSpec(WeightLayerSpec(kind, args, kernel, bias, kernel_fmt, bias_fmt, 'linear', None, None, rounded), two_step)
    out_fmt, out_affine = act.activation_plan() if act is not None else (None, None)
    bound = 2.0 ** (24 - out_fmt.f) if out_fmt is not None and out_affine is None else None  # as activation_spec's
    return WeightLayerSpec(kind, args, kernel, bias, kernel_fmt, bias_fmt, 'linear', out_fmt, out_affine, rounded, bound)


@LAYERS.register(
    'QActivation',
    status="exact: the quantizer becomes the next layer's input quantizer (or a Quantizer layer)",
    builds=('Quantizer', 'ReLU', 'QAdd', 'Activation'),
    quantizes=True,
)
def q_activation(layer: SourceLayer) -> Spec:
    return activation_spec(layer.config.get('activation'))


@LAYERS.register('QDense', status=EXACT, weights=KB, builds=('QDense',), quantizes=True)
def q_dense(layer: SourceLayer) -> Spec:
    return dense_layer(layer, weight_spec)


@LAYERS.register('QConv1D', status=EXACT, weights=KB, builds=('QConv1D',), quantizes=True)
def q_conv1d(layer: SourceLayer) -> Spec:
    return conv_layer(layer, 1, weight_spec)


@LAYERS.register('QConv2D', status=EXACT, weights=KB, builds=('QConv2D',), quantizes=True)
def q_conv2d(layer: SourceLayer) -> Spec:
    return conv_layer(layer, 2, weight_spec)
