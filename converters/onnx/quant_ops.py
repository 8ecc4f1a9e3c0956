"""ONNX op handlers for quantizers: QONNX ``Quant`` / ``IntQuant`` / ``BipolarQuant`` and QCDQ ``QuantizeLinear``
(fused with its ``DequantizeLinear`` by ``passes.FuseQDQ``), each an exact fixed-point format (``qonnx.py``).
Quantizers on constants never reach a handler: constant folding computes them on the weights."""

from __future__ import annotations

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat
from hgqbridge.graph import SourceLayer

from ..hgq.specs import QuantizeSpec, Spec
from .common import const, has_const
from .qonnx import bipolar_activation, qdq_format, quant_format
from .registry import OPS

OPS.refuse(
    'DequantizeLinear',
    'a DequantizeLinear of computed codes that no QuantizeLinear with the same scale and zero-point produced just '
    'before is not a fixed-point format',
    'export QuantizeLinear -> [Clip] -> DequantizeLinear pairs (Brevitas export_onnx_qcdq)',
)


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


@OPS.register(
    'BipolarQuant',
    status='exact: on activations s * sign(x) (x >= 0 -> +s) is kif(1, 0, 0) TRN SAT (-1 or 0) then the affine '
    '(2s, s), for a power-of-two s; on weights computed once',
    builds=('Quantizer',),
    quantizes=True,
)
def bipolar_quant(layer: SourceLayer) -> Spec:
    scale, _ = const(layer, 1, 'the scale')
    fmt, affine = bipolar_activation(scale)
    return QuantizeSpec(fmt, affine)


@OPS.register(
    'QuantizeLinear',
    status='exact with the DequantizeLinear after it (QCDQ, an optional Clip between): a power-of-two scale and zero '
    'zero-point are kif(signed, b - signed - f, f) RND_CONV, SAT (SAT_SYM for a narrow Clip)',
    builds=('Quantizer',),
    quantizes=True,
)
def quantize_linear(layer: SourceLayer) -> Spec:
    if not layer.config.get('dequantized'):
        raise LayerProblem(
            'a QuantizeLinear whose integer codes are not dequantized at once (with the same scale and zero-point)',
            'export QuantizeLinear -> [Clip] -> DequantizeLinear pairs (Brevitas export_onnx_qcdq)',
        )
    scale, _ = const(layer, 1, 'the scale')
    zero = np.asarray(const(layer, 2, 'the zero-point')[0]) if has_const(layer, 2) else None
    return QuantizeSpec(qdq_format(scale, zero, str(layer.config.get('zero_point_type', 'uint8')), layer.config.get('clip')))
