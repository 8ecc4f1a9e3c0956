"""What da4ml 0.6 (through HGQ2's tracer plugin) deploys from an HGQ2 model: one table of rules.

Facts from ../shared/reference/hls4ml-da4ml-support.md §6.2, checked against the installed
hgq._dais_tracer and da4ml.trace: linear/relu ``activation=`` only, TRN/RND rounding (RND_CONV through
hgqbridge's exact decomposition, converters/da4ml/rounding.py), WRAP/SAT/SAT_SYM overflow.
"""

from __future__ import annotations

from ..hgq.rules import (
    LayerFacts,
    Rule,
    Target,
    dense_activation,
    float_quantizer,
    float_softmax_head,
    round_modes,
    unquantized_arithmetic,
    unsupported_class,
)

SUPPORTED = (
    'QDense', 'QBatchNormDense', 'QEinsumDense', 'QConv1D', 'QConv2D', 'QConv3D', 'QBatchNormalization', 'Quantizer',
    'QAdd', 'QSubtract', 'QMultiply', 'QMaximum', 'QMinimum', 'QAveragePow2', 'QSum', 'QMeanPow2', 'QDot', 'QEinsum',
    'QSoftmax', 'QUnaryFunctionLUT', 'InputLayer', 'Flatten', 'Reshape', 'ReLU', 'Concatenate', 'Add', 'Dropout',
)

#: The subset that tests/converters/da4ml/test_export.py exports and proves bit-exact today.
VERIFIED = ('QDense', 'Quantizer', 'Flatten', 'ReLU', 'InputLayer')


def _overflow(f: LayerFacts, t: Target) -> str | None:
    bad = {info.overflow for info in f.quantizers.values() if info is not None and info.overflow not in ('WRAP', 'SAT', 'SAT_SYM')}
    return f'overflow mode(s) {", ".join(sorted(bad))} are not supported' if bad else None


RULES = [
    Rule('supported-layer', 'error', unsupported_class(SUPPORTED), 'replace the layer with a supported one'),
    Rule('float-quantizer', 'error', float_quantizer, 'give the layer fixed-point quantizers (hgqbridge finetune does)'),
    Rule('float-head', 'warning', float_softmax_head, 'use QSoftmax if the firmware must compute probabilities'),
    Rule('quantize-first', 'error', unquantized_arithmetic, 'quantize the model input (convert --input-format)'),
    Rule('dense-activation', 'error', dense_activation(('linear', 'relu')), 'use a QUnaryFunctionLUT layer for the activation'),
    Rule('round-mode', 'error', round_modes(('TRN', 'RND', 'RND_CONV')), 'use TRN, RND or RND_CONV (stochastic rounding is training-only)'),
    Rule('overflow-mode', 'error', _overflow, 'use WRAP, SAT or SAT_SYM'),
]
