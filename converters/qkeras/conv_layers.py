"""QKeras depthwise, separable and batchnorm-folded convolutions: one handler per class name.

Depthwise and separable convolutions are the Keras ones (``converters/keras/conv.py``: grouped convolutions)
with QKeras's quantizers. The batchnorm-folded layers fold exactly as QKeras 0.9.0 does in float32 (``inv =
rsqrt(var + eps) * gamma`` as in ``hgqbridge.numerics``, then ``kernel * inv`` and ``inv * (bias - mean) +
beta``) and then quantize the folded weights.
"""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer
from hgqbridge.numerics import bn_scale_offset, finite

from ..hgq.specs import Spec
from ..keras.conv import DEPTHWISE_STATUS, SEPARABLE_STATUS, bias_of, depthwise_kernel, depthwise_layer, grouped, separable_layer
from ..keras.layers import conv_args
from ..keras.norm_pool import BN_ORDER
from .layers import weight_spec
from .registry import LAYERS

F32 = np.float32
FOLDED = tuple(f'batchnorm/{n}' for n in BN_ORDER)


@LAYERS.register(
    'QDepthwiseConv2D', status=DEPTHWISE_STATUS, weights=('depthwise_kernel', 'bias'), builds=('QConv2D',), quantizes=True
)
def q_depthwise_conv2d(layer: SourceLayer) -> Spec:
    return depthwise_layer(layer, weight_spec)


@LAYERS.register(
    'QSeparableConv1D',
    status=SEPARABLE_STATUS,
    weights=('depthwise_kernel', 'pointwise_kernel', 'bias'),
    builds=('QConv1D',),
    quantizes=True,
)
def q_separable_conv1d(layer: SourceLayer) -> Spec:
    return separable_layer(layer, 1, weight_spec)


@LAYERS.register(
    'QSeparableConv2D',
    status=SEPARABLE_STATUS,
    weights=('depthwise_kernel', 'pointwise_kernel', 'bias'),
    builds=('QConv2D',),
    quantizes=True,
)
def q_separable_conv2d(layer: SourceLayer) -> Spec:
    return separable_layer(layer, 2, weight_spec)


def _folding_inverse(layer: SourceLayer, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inv, beta, mean): ``rsqrt(moving_variance + eps) * gamma`` in float32 as QKeras folds, beta (0 if absent), mean."""
    cfg = layer.config
    if cfg.get('folding_mode', 'ema_stats_folding') not in ('ema_stats_folding', 'batch_stats_folding'):
        raise LayerProblem('unknown folding_mode', 're-save the model', received=cfg.get('folding_mode'))
    mean, var = layer.weight('moving_mean'), layer.weight('moving_variance')
    gamma, beta = layer.weight('gamma'), layer.weight('beta')
    for what, arr, needed in (
        ('moving_mean', mean, True),
        ('moving_variance', var, True),
        ('gamma', gamma, cfg.get('scale', True)),
        ('beta', beta, cfg.get('center', True)),
    ):
        if needed and (arr is None or arr.shape != (channels,)):
            raise LayerProblem(
                f'expected batchnorm {what} of shape ({channels},)',
                'pass the weights saved with this model',
                received=None if arr is None else arr.shape,
            )
    finite('the batchnorm statistics', mean, var, gamma, beta)
    eps = float(cfg.get('epsilon', 1e-3))
    if mean is None or var is None or np.any(var.astype(np.float64) + eps <= 0):
        raise LayerProblem(
            'moving_variance + epsilon <= 0 makes the folded kernel NaN or infinite', 're-train or re-save the model'
        )
    inv, _ = bn_scale_offset(gamma if cfg.get('scale', True) else None, None, mean, var, eps)
    return inv, (beta.astype(F32) if cfg.get('center', True) and beta is not None else np.zeros(channels, F32)), mean.astype(F32)


def _fold(
    layer: SourceLayer, kernel: np.ndarray, inv: np.ndarray, beta: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """QKeras's inference folding: kernel * inv (inv broadcast over the kernel's last axes) and
    ``inv * (bias - moving_mean) + beta`` (bias 0 when the layer has none), in float32."""
    bias = bias_of(layer, inv.size) if layer.config.get('use_bias', True) else None
    bias = np.zeros(inv.size, F32) if bias is None else bias.astype(F32)
    folded_bias = ((inv.reshape(-1) * (bias - mean).astype(F32)).astype(F32) + beta).astype(F32)
    return (kernel.astype(F32) * inv.reshape(kernel.shape[-inv.ndim :]) if inv.ndim > 1 else kernel.astype(F32) * inv).astype(
        F32
    ), folded_bias


@LAYERS.register(
    'QConv2DBatchnorm',
    status='exact: folded in float32 as QKeras 0.9.0 folds (moving statistics), then quantized; a QConv2D',
    weights=('kernel', 'bias', *FOLDED),
    builds=('QConv2D',),
    quantizes=True,
)
def q_conv2d_batchnorm(layer: SourceLayer) -> Spec:
    filters = layer.config.get('filters')
    kernel = layer.weight('kernel')
    if not isinstance(filters, int) or kernel is None or kernel.ndim != 4 or kernel.shape[-1] != filters:
        raise LayerProblem(
            f'expected a kernel (kh, kw, cin, {filters})',
            'pass the weights saved with this model',
            received=None if kernel is None else kernel.shape,
        )
    finite('the kernel', kernel)
    args = {**conv_args(layer), 'filters': filters}
    inv, beta, mean = _folding_inverse(layer, filters)
    kernel, bias = _fold(layer, kernel, inv, beta, mean)
    return weight_spec(layer, 'conv2d', args, kernel, bias)


@LAYERS.register(
    'QDepthwiseConv2DBatchnorm',
    status='exact: folded in float32 as QKeras 0.9.0 folds, then quantized; a grouped QConv2D',
    weights=('depthwise_kernel', 'bias', *FOLDED),
    builds=('QConv2D',),
    quantizes=True,
)
def q_depthwise_conv2d_batchnorm(layer: SourceLayer) -> Spec:
    kernel = depthwise_kernel(layer, 2)
    args, shape = grouped(conv_args(layer), kernel, 2)
    inv, beta, mean = _folding_inverse(layer, shape[-1])
    folded_kernel, bias = _fold(layer, kernel, inv.reshape(kernel.shape[-2:]), beta, mean)
    return weight_spec(layer, 'conv2d', args, folded_kernel, bias, kernel_shape=shape, position='depthwise')
