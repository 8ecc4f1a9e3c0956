"""QKeras depthwise, separable and batchnorm-folded convolutions: one handler per source class name.

HGQ2 0.2 has no depthwise layer: a depthwise convolution with depth multiplier ``dm`` over ``C`` channels is a
grouped convolution (``groups=C``, ``C*dm`` filters, kernel ``(kh, kw, 1, C*dm)``), which computes the same sums.
Separable convolutions are that depthwise convolution followed, unquantized as in QKeras, by a 1x1 convolution.
The batchnorm-folded layers fold exactly as QKeras 0.9.0 does in float32 and then quantize the folded weights.
"""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer

from ..hgq.blocks import SeparableSpec
from ..hgq.build import Spec
from .layers import LAYERS, _channels_last, _ints, _padding, weight_spec

F32 = np.float32


def _conv_args(layer: SourceLayer, rank: int) -> dict:
    cfg = layer.config
    _channels_last(layer)
    return {
        'kernel_size': _ints(cfg.get('kernel_size'), 'kernel_size'),
        'strides': _ints(cfg.get('strides', 1), 'strides'),
        'padding': _padding(layer),
        'dilation_rate': _ints(cfg.get('dilation_rate', 1), 'dilation_rate'),
    }


def _finite(layer: SourceLayer, *arrays: np.ndarray | None) -> None:
    if any(a is not None and not np.all(np.isfinite(a)) for a in arrays):
        raise LayerProblem('the weights contain NaN or Inf', 're-train or re-save the model')


def _depthwise_kernel(layer: SourceLayer, rank: int) -> np.ndarray:
    kernel = layer.weight('depthwise_kernel')
    if kernel is None or kernel.ndim != rank + 2:
        got = None if kernel is None else kernel.shape
        raise LayerProblem(f'expected a depthwise kernel of rank {rank + 2}, got {got}', 'pass the weights saved with this model')
    _finite(layer, kernel)
    return kernel


def _bias(layer: SourceLayer, units: int) -> np.ndarray | None:
    if not layer.config.get('use_bias', True):
        return None
    bias = layer.weight('bias')
    if bias is None or bias.shape != (units,):
        raise LayerProblem(f'expected a bias of shape ({units},), got {None if bias is None else bias.shape}', 'pass the weights saved with this model')
    _finite(layer, bias)
    return bias


def _grouped(args: dict, kernel: np.ndarray, rank: int) -> tuple[dict, tuple[int, ...]]:
    """Arguments and kernel shape of the grouped convolution computing a depthwise one."""
    channels, dm = kernel.shape[-2], kernel.shape[-1]
    return {**args, 'filters': channels * dm, 'groups': channels}, (*kernel.shape[:rank], 1, channels * dm)


@LAYERS.register('QDepthwiseConv2D', 'DepthwiseConv2D')
def depthwise(layer: SourceLayer) -> Spec:
    """exact: a grouped QConv2D (groups = channels, kernel reshaped); hls4ml has no grouped convolution, da4ml deploys it."""
    kernel = _depthwise_kernel(layer, 2)
    args, shape = _grouped(_conv_args(layer, 2), kernel, 2)
    return weight_spec(layer, 'conv2d', args, kernel, _bias(layer, shape[-1]), 'depthwise', shape)


@LAYERS.register('QSeparableConv1D', 'QSeparableConv2D', 'SeparableConv1D', 'SeparableConv2D')
def separable(layer: SourceLayer) -> Spec:
    """exact: grouped depthwise QConv + 1x1 pointwise QConv, the intermediate unquantized as in QKeras."""
    rank = 2 if layer.class_name.endswith('2D') else 1
    kind = f'conv{rank}d'
    kernel = _depthwise_kernel(layer, rank)
    pointwise = layer.weight('pointwise_kernel')
    args, shape = _grouped(_conv_args(layer, rank), kernel, rank)
    filters = layer.config.get('filters')
    if pointwise is None or pointwise.shape != (*(1,) * rank, shape[-1], filters):
        got = None if pointwise is None else pointwise.shape
        raise LayerProblem(f'expected a pointwise kernel of shape {(*(1,) * rank, shape[-1], filters)}, got {got}', 'pass the weights saved with this model')
    _finite(layer, pointwise)
    point_args = {'filters': filters, 'kernel_size': (1,) * rank}
    return SeparableSpec(
        weight_spec(layer, kind, args, kernel, None, 'depthwise', shape, activation=False),
        weight_spec(layer, kind, point_args, pointwise, _bias(layer, filters), 'pointwise'),
    )


def _folding_inverse(layer: SourceLayer, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inv, beta, mean): ``rsqrt(moving_variance + eps) * gamma`` in float32 as QKeras folds, beta (0 if absent), mean."""
    cfg = layer.config
    if cfg.get('folding_mode', 'ema_stats_folding') not in ('ema_stats_folding', 'batch_stats_folding'):
        raise LayerProblem(f'unknown folding_mode {cfg.get("folding_mode")!r}', 're-save the model')
    mean, var = layer.weight('moving_mean'), layer.weight('moving_variance')
    gamma, beta = layer.weight('gamma'), layer.weight('beta')
    for what, arr, needed in (('moving_mean', mean, True), ('moving_variance', var, True),
                              ('gamma', gamma, cfg.get('scale', True)), ('beta', beta, cfg.get('center', True))):
        if needed and (arr is None or arr.shape != (channels,)):
            raise LayerProblem(f'expected batchnorm {what} of shape ({channels},), got {None if arr is None else arr.shape}',
                               'pass the weights saved with this model')
    _finite(layer, mean, var, gamma, beta)
    eps = F32(cfg.get('epsilon', 1e-3))
    inv = (F32(1) / np.sqrt((var.astype(F32) + eps).astype(F32))).astype(F32)
    if cfg.get('scale', True):
        inv = (inv * gamma.astype(F32)).astype(F32)
    return inv, (beta.astype(F32) if cfg.get('center', True) else np.zeros(channels, F32)), mean.astype(F32)


def _fold(layer: SourceLayer, kernel: np.ndarray, inv: np.ndarray, beta: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """QKeras's inference folding: kernel * inv (inv broadcast over the kernel's last axes) and
    ``inv * (bias - moving_mean) + beta`` (bias 0 when the layer has none), in float32."""
    bias = _bias(layer, inv.size) if layer.config.get('use_bias', True) else None
    bias = np.zeros(inv.size, F32) if bias is None else bias.astype(F32)
    folded_bias = ((inv.reshape(-1) * (bias - mean).astype(F32)).astype(F32) + beta).astype(F32)
    return (kernel.astype(F32) * inv.reshape(kernel.shape[-inv.ndim:]) if inv.ndim > 1 else kernel.astype(F32) * inv).astype(F32), folded_bias


@LAYERS.register('QConv2DBatchnorm')
def conv_batchnorm(layer: SourceLayer) -> Spec:
    """exact: folded in float32 as QKeras 0.9.0 folds (moving statistics), then quantized; a QConv2D."""
    filters = layer.config.get('filters')
    kernel = layer.weight('kernel')
    if not isinstance(filters, int) or kernel is None or kernel.ndim != 4 or kernel.shape[-1] != filters:
        raise LayerProblem(f'expected a kernel (kh, kw, cin, {filters}), got {None if kernel is None else kernel.shape}', 'pass the weights saved with this model')
    if layer.config.get('groups', 1) != 1:
        raise LayerProblem(f'groups={layer.config.get("groups")} is not converted', 'use groups=1')
    _finite(layer, kernel)
    inv, beta, mean = _folding_inverse(layer, filters)
    kernel, bias = _fold(layer, kernel, inv, beta, mean)
    return weight_spec(layer, 'conv2d', {**_conv_args(layer, 2), 'filters': filters}, kernel, bias)


@LAYERS.register('QDepthwiseConv2DBatchnorm')
def depthwise_batchnorm(layer: SourceLayer) -> Spec:
    """exact: folded in float32 as QKeras 0.9.0 folds, then quantized; a grouped QConv2D."""
    kernel = _depthwise_kernel(layer, 2)
    args, shape = _grouped(_conv_args(layer, 2), kernel, 2)
    inv, beta, mean = _folding_inverse(layer, shape[-1])
    folded_kernel, bias = _fold(layer, kernel, inv.reshape(kernel.shape[-2:]), beta, mean)
    return weight_spec(layer, 'conv2d', args, folded_kernel, bias, 'depthwise', shape)
