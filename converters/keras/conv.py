"""Keras depthwise and separable convolutions, and the helpers their QKeras forms build on.

HGQ2 0.2 has no depthwise layer: a depthwise convolution with depth multiplier ``dm`` over ``C`` channels is a
grouped convolution (``groups=C``, ``C*dm`` filters, kernel ``(kh, kw, 1, C*dm)``), which computes the same sums.
A separable convolution is that depthwise convolution followed, unquantized, by a 1x1 convolution.
"""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.graph import SourceLayer
from hgqbridge.numerics import finite

from ..hgq.composite_specs import SeparableSpec
from ..hgq.specs import Spec
from .layers import FLOAT, WeightSpecMaker, conv_args, float_weight_spec, positive_int
from .registry import LAYERS

DEPTHWISE_STATUS = (
    'exact: a grouped QConv2D (groups = channels, kernel reshaped); hls4ml has no grouped convolution, da4ml deploys it'
)
SEPARABLE_STATUS = 'exact: grouped depthwise QConv + 1x1 pointwise QConv, the intermediate unquantized as in QKeras'


def depthwise_kernel(layer: SourceLayer, rank: int) -> np.ndarray:
    kernel = layer.weight('depthwise_kernel')
    if kernel is None or kernel.ndim != rank + 2:
        raise LayerProblem(
            f'expected a depthwise kernel of rank {rank + 2}',
            'pass the weights saved with this model',
            received=None if kernel is None else kernel.shape,
        )
    finite('the depthwise kernel', kernel)
    return kernel


def bias_of(layer: SourceLayer, units: int) -> np.ndarray | None:
    if not layer.config.get('use_bias', True):
        return None
    bias = layer.weight('bias')
    if bias is None or bias.shape != (units,):
        raise LayerProblem(
            f'expected a bias of shape ({units},)',
            'pass the weights saved with this model',
            received=None if bias is None else bias.shape,
        )
    finite('the bias', bias)
    return bias


def grouped(args: dict, kernel: np.ndarray, rank: int) -> tuple[dict, tuple[int, ...]]:
    """Arguments and kernel shape of the grouped convolution computing a depthwise one."""
    channels, dm = kernel.shape[-2], kernel.shape[-1]
    return {**args, 'filters': channels * dm, 'groups': channels}, (*kernel.shape[:rank], 1, channels * dm)


def depthwise_layer(layer: SourceLayer, make: WeightSpecMaker) -> Spec:
    kernel = depthwise_kernel(layer, 2)
    args, shape = grouped(conv_args(layer), kernel, 2)
    return make(layer, 'conv2d', args, kernel, bias_of(layer, shape[-1]), kernel_shape=shape, position='depthwise')


def separable_layer(layer: SourceLayer, rank: int, make: WeightSpecMaker) -> Spec:
    kind = f'conv{rank}d'
    kernel = depthwise_kernel(layer, rank)
    pointwise = layer.weight('pointwise_kernel')
    args, shape = grouped(conv_args(layer), kernel, rank)
    filters = positive_int(layer, 'filters')
    if pointwise is None or pointwise.shape != (*(1,) * rank, shape[-1], filters):
        raise LayerProblem(
            f'expected a pointwise kernel of shape {(*(1,) * rank, shape[-1], filters)}',
            'pass the weights saved with this model',
            received=None if pointwise is None else pointwise.shape,
        )
    finite('the pointwise kernel', pointwise)
    point_args = {'filters': filters, 'kernel_size': (1,) * rank}
    return SeparableSpec(
        make(layer, kind, args, kernel, None, kernel_shape=shape, position='depthwise', activation=False),
        make(layer, kind, point_args, pointwise, bias_of(layer, filters), position='pointwise'),
    )


@LAYERS.register(
    'DepthwiseConv2D', status=f'{FLOAT}; {DEPTHWISE_STATUS}', weights=('depthwise_kernel', 'bias'), builds=('QConv2D',)
)
def depthwise_conv2d(layer: SourceLayer) -> Spec:
    return depthwise_layer(layer, float_weight_spec)


@LAYERS.register(
    'SeparableConv1D',
    status=f'{FLOAT}; {SEPARABLE_STATUS}',
    weights=('depthwise_kernel', 'pointwise_kernel', 'bias'),
    builds=('QConv1D',),
)
def separable_conv1d(layer: SourceLayer) -> Spec:
    return separable_layer(layer, 1, float_weight_spec)


@LAYERS.register(
    'SeparableConv2D',
    status=f'{FLOAT}; {SEPARABLE_STATUS}',
    weights=('depthwise_kernel', 'pointwise_kernel', 'bias'),
    builds=('QConv2D',),
)
def separable_conv2d(layer: SourceLayer) -> Spec:
    return separable_layer(layer, 2, float_weight_spec)
