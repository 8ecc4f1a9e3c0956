"""Saved HGQ1 models (``model.save`` of ``HGQ.layers``): HQuantize, HDense, HConv1D/2D, their BatchNorm forms,
HActivation, HAdd and Signature. One ``SavedHandler`` per class (both spellings, ``HGQ>X`` and ``X``).

What HGQ1 computes (fixtures/hgq1/README.md, sections 2-4): every layer quantizes its pre-activation values
(``paq``, widths ``activation_bw``) to ``round(clip(fbw))`` fractional bits, per element, with no integer bits and no
overflow; ``act(Q_a(x @ Q_k(kernel) + Q_b(bias)))``. Here: kernel and bias are quantized once as HGQ1 does (after
the batch-norm fusion, for the BatchNorm forms) and carried with per-element exact formats; the pre-activation
quantizer becomes a per-element format with HGQ1's fractional bits and rounding, the integer bits that
``integer_bits.py`` derived (the file has none) and SAT, which travels into the next layer's input quantizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hgqbridge.errors import LayerProblem
from hgqbridge.fixed import FixedFormat, FormatArray
from hgqbridge.graph import SourceLayer
from hgqbridge.numerics import finite

from ..hgq.composite_specs import QuantizedOutputSpec
from ..hgq.specs import IdentitySpec, QuantizeSpec, Spec, WeightLayerSpec
from ..hgq.tensors import Format
from ..keras.layers import conv_args, keras_activation, kernel_and_bias, merge, positive_int
from .arith import (
    bias_bits,
    bias_covers_rounding,
    bw_clip,
    exact_formats,
    fractional_bits,
    fused_batchnorm,
    quantize,
    strategy,
    uniform_or_array,
)
from .intervals import CLAMPS, activated, conv, dense, linear, quantized
from .registry import Activation, Interval, SavedHandler, register_both

QUANTIZER = (
    'its pre-activation quantizer: per-element fractional bits and rounding from the file, integer bits derived '
    '(the file has none), SAT; it becomes the next layer input quantizer'
)
WEIGHTS = "HGQ1's quantized kernel and bias, per-element exact formats"
BN_STATS = ('bn_gamma', 'bn_beta', 'moving_mean', 'moving_variance')


def _conf(layer: SourceLayer, key: str) -> dict:
    conf = layer.config.get(key) or {}
    if not isinstance(conf, dict):
        raise LayerProblem(
            f'{key} must be a quantizer config (a dict)', 're-save the model with HGQ1', received=type(conf).__name__
        )
    return conf


def _array(layer: SourceLayer, key: str) -> np.ndarray:
    value = layer.weight(key)
    if value is None:
        raise LayerProblem(f'the weights file has no {key} for this layer', 'pass the model file HGQ1 saved')
    finite(key, value)
    return value


def activation(layer: SourceLayer) -> Activation:
    """The layer's pre-activation quantizer: fractional bits per width element, rounding ('auto' resolved as HGQ1
    resolves it), and the range its activation keeps the output in."""
    conf = _conf(layer, 'paq_conf')
    fbw = _array(layer, 'activation_bw')
    bias = layer.weight('bias') if layer.config.get('use_bias', False) else None
    act = layer.config.get('activation', 'linear')
    return Activation(
        fractional_bits(fbw, bw_clip(conf)), strategy(conf, bias_covers_rounding(bias, fbw)), CLAMPS.get(act, (-np.inf, np.inf))
    )


def output_format(layer: SourceLayer, act: Activation) -> Format:
    """The per-element format of the layer's quantized output: HGQ1's fractional bits and rounding, the derived sign
    and integer bits, SAT (one FixedFormat when every element has the same)."""
    k, i = layer.derived.get('k'), layer.derived.get('i')
    if k is None or i is None:
        raise LayerProblem(
            'the integer bits of its quantizer are not derived (a saved HGQ1 model holds none)',
            'convert the model with hgqbridge convert / hgqbridge.import_model, which derive them',
        )
    if k.shape != act.f.shape or i.shape != act.f.shape:
        raise LayerProblem(
            'the derived integer bits do not fit the bit widths', 'derive them again', received=(k.shape, act.f.shape)
        )
    return uniform_or_array(FormatArray(k, i, act.f, act.round, 'SAT'))


def _activation_name(layer: SourceLayer) -> str:
    act = layer.config.get('activation', 'linear')
    if act not in ('linear', 'relu'):
        raise LayerProblem(
            f'HGQ1 allows only relu or linear inside {layer.class_name}', 're-save the model with HGQ1', received=act
        )
    return str(act)


def weights(layer: SourceLayer, units: int, kernel_rank: int, fused: bool) -> tuple[np.ndarray, np.ndarray | None, Any, Any]:
    """(kernel, bias, kernel format, bias format) as HGQ1 uses them at inference: fused with the batch
    normalization (``fused``), then quantized with ``kernel_bw`` and the bias widths, in float32."""
    kernel, bias = kernel_and_bias(layer, units, kernel_rank)
    if fused:
        stats = {name: layer.weight(name) for name in BN_STATS}
        for name, value in stats.items():
            if value is not None and value.shape != (units,):
                raise LayerProblem(f'{name} does not fit {units} outputs', 'pass the model file HGQ1 saved', received=value.shape)
            finite(name, value)
        if bias is None and stats['bn_beta'] is not None:
            raise LayerProblem('a fused batch normalization with a centre needs the bias', 'pass the model file HGQ1 saved')
        kernel, bias = fused_batchnorm(kernel, bias, stats)
    kconf = _conf(layer, 'kq_conf')
    kernel_bw = _array(layer, 'kernel_bw')
    try:
        kf = np.broadcast_to(fractional_bits(kernel_bw, bw_clip(kconf)), kernel.shape)
    except ValueError:
        raise LayerProblem(
            'kernel_bw does not fit the kernel', 'pass the model file HGQ1 saved', received=kernel_bw.shape
        ) from None
    kq = quantize(kernel, kf, strategy(kconf, True))
    if bias is None:
        return kq, None, exact_formats(kq, kf), None
    act = activation(layer)
    bf = np.broadcast_to(bias_bits(_array(layer, 'activation_bw')), bias.shape)
    bq = quantize(bias, bf, act.round)
    return kq, bq, exact_formats(kq, kf), exact_formats(bq, bf)


# ---- the layer classes ---------------------------------------------------------------------------------------------


def _weight_layer(kind: str, rank: int, fused: bool) -> SavedHandler:
    def args_of(layer: SourceLayer) -> tuple[dict, int]:
        if kind == 'dense':
            units = positive_int(layer, 'units')
            return {'units': units}, units
        filters = positive_int(layer, 'filters')
        return {'filters': filters, **conv_args(layer)}, filters

    def spec(layer: SourceLayer) -> Spec:
        args, units = args_of(layer)
        kernel, bias, kfmt, bfmt = weights(layer, units, rank, fused)
        return WeightLayerSpec(
            kind, args, kernel, bias, kfmt, bfmt, _activation_name(layer), output_format(layer, activation(layer))
        )

    def bounds(layer: SourceLayer, inputs: list[Interval]) -> Interval:
        args, units = args_of(layer)
        kernel, bias, _, _ = weights(layer, units, rank, fused)
        apply = dense if kind == 'dense' else (lambda x, w: conv(x, w, args))
        act = activation(layer)
        return activated(quantized(linear(inputs[0], apply, kernel, bias), act.f, act.round), _activation_name(layer))

    return SavedHandler(spec, bounds, activation)


def _bn_status(what: str) -> str:
    return (
        f'exact: fused as HGQ1 fuses ({what}; float32, epsilon 1e-3 as HGQ1 reloads it, the bias by one FMA), then '
        f'{WEIGHTS}; {QUANTIZER}'
    )


for _name, _kind, _rank, _fused, _builds in (
    ('HDense', 'dense', 2, False, 'QDense'),
    ('HConv1D', 'conv1d', 3, False, 'QConv1D'),
    ('HConv2D', 'conv2d', 4, False, 'QConv2D'),
    ('HDenseBatchNorm', 'dense', 2, True, 'QDense'),
    ('HConv1DBatchNorm', 'conv1d', 3, True, 'QConv1D'),
    ('HConv2DBatchNorm', 'conv2d', 4, True, 'QConv2D'),
):
    register_both(
        _name,
        _weight_layer(_kind, _rank, _fused),
        status=_bn_status(f'{_builds} with the batch normalization folded in') if _fused else f'exact: {WEIGHTS}; {QUANTIZER}',
        builds=(_builds, 'Quantizer'),
        quantizes=True,
    )


def _quantize_spec(layer: SourceLayer) -> Spec:
    return QuantizeSpec(output_format(layer, activation(layer)))


def _quantize_bounds(layer: SourceLayer, inputs: list[Interval]) -> Interval:
    act = activation(layer)
    return quantized(inputs[0], act.f, act.round)


register_both(
    'HQuantize',
    SavedHandler(_quantize_spec, _quantize_bounds, activation),
    status=f'exact: {QUANTIZER}',
    builds=('Quantizer',),
    quantizes=True,
)


def _activation_spec(layer: SourceLayer) -> Spec:
    name = layer.config.get('activation', 'linear')
    inner = None if name == 'linear' else keras_activation(name)
    return QuantizedOutputSpec(inner, output_format(layer, activation(layer)))


def _activation_bounds(layer: SourceLayer, inputs: list[Interval]) -> Interval:
    act = activation(layer)
    return quantized(activated(inputs[0], str(layer.config.get('activation', 'linear'))), act.f, act.round)


register_both(
    'HActivation',
    SavedHandler(_activation_spec, _activation_bounds, activation),
    status=f'relu and linear exact, other activations float (measured), then {QUANTIZER}',
    builds=('ReLU', 'Activation', 'Quantizer'),
    quantizes=True,
)


def _add_spec(layer: SourceLayer) -> Spec:
    return QuantizedOutputSpec(merge(layer, 'add'), output_format(layer, activation(layer)))


def _add_bounds(layer: SourceLayer, inputs: list[Interval]) -> Interval:
    act = activation(layer)
    return quantized((sum(i[0] for i in inputs), sum(i[1] for i in inputs)), act.f, act.round)  # type: ignore[arg-type]


register_both(
    'HAdd',
    SavedHandler(_add_spec, _add_bounds, activation),
    status=f'exact: an HGQ2 QAdd, then {QUANTIZER}',
    builds=('QAdd', 'Quantizer'),
    quantizes=True,
)


def declared_type(layer: SourceLayer) -> FixedFormat:
    """The widest of the per-element types a Signature declares (keep_negative, bits, int_bits incl. the sign)."""
    try:
        k, b, integer = (np.asarray(layer.config[key], dtype=np.int64) for key in ('keep_negative', 'bits', 'int_bits'))
        return FixedFormat(int(k.max()), int(integer.max()) - int(k.max()), int(b.max()) - int(integer.max()), 'TRN', 'SAT')
    except (KeyError, ValueError, TypeError):
        raise LayerProblem(
            'a Signature needs integer keep_negative, bits and int_bits', 're-save the model with HGQ1', received=layer.config
        ) from None


def _signature_spec(layer: SourceLayer) -> Spec:
    declared = declared_type(layer)
    return IdentitySpec(
        f'HGQ1 Signature declares the input type {declared.ap_type()} for BOPs and the proxy only; HGQ1 passes values '
        f"unchanged (--input-format '{declared.ap_type()}' quantizes the input to it)"
    )


register_both(
    'Signature',
    SavedHandler(_signature_spec, lambda layer, inputs: inputs[0]),
    status='exact: identity at inference (its declared type is for BOPs and the proxy; --input-format can take it)',
)
