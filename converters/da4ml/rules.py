"""What da4ml 0.6 (through HGQ2's tracer plugin) deploys from an HGQ2 model: one table of rules.

Facts from ../shared/reference/hls4ml-da4ml-support.md §6.2, checked against the installed
hgq._dais_tracer and da4ml.trace: linear/relu ``activation=`` only, TRN/RND rounding (RND_CONV through
hgqbridge's exact decomposition, converters/da4ml/rounding.py), WRAP/SAT/SAT_SYM overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..deploy.facts import LayerFacts
from ..deploy.rules import Rule, common_rules
from ..deploy.target import rtl_only

#: da4ml 0.6's interpreter and generated logic keep a value's bits right up to 32 (a 33-bit input port already
#: reads negative values as large positive ones: tests/converters/da4ml/test_export.py).
MAX_WIDTH = 32


@dataclass(frozen=True)
class Target:
    """da4ml; ``rtl``: also verilate the Verilog and compare it (None: whenever a usable verilator is installed)."""

    rtl: bool | None = None
    tool = 'da4ml'

    def __str__(self) -> str:
        return 'da4ml'


def parse(variant: str, options: dict[str, Any]) -> Target:
    return Target(rtl_only('da4ml', variant, options))


SUPPORTED = (
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
    'InputLayer',
    'Flatten',
    'Reshape',
    'ReLU',
    'Concatenate',
    'MaxPooling1D',
    'MaxPooling2D',
    'Add',
    'Dropout',
)

#: The subset that tests/converters/da4ml/test_export.py exports and proves bit-exact today.
VERIFIED = (
    # (Quantizer: also with the affine of the hard-sigmoid emulation; QConv2D: also grouped, for depthwise convolutions)
    'QDense',
    'QConv1D',
    'QConv2D',
    'QAdd',
    'Quantizer',
    'Flatten',
    'Reshape',
    'Concatenate',
    'MaxPooling1D',
    'MaxPooling2D',
    'ReLU',
    'InputLayer',
)


def _overflow(f: LayerFacts, t: Target) -> str | None:
    bad = {
        info.overflow for info in f.quantizers.values() if info is not None and info.overflow not in ('WRAP', 'SAT', 'SAT_SYM')
    }
    return f'overflow mode(s) {", ".join(sorted(bad))} are not supported' if bad else None


def _port_width(f: LayerFacts, t: Target) -> str | None:
    """The first quantizer sets the input port: its widest format plus one integer and one fractional bit (the
    bits a saturating or rounding quantizer reads) must fit the 32 bits da4ml 0.6 computes correctly."""
    if not f.reads_model_input:
        return None
    for role, info in f.quantizers.items():
        if info is not None and role.startswith(('input', 'self')):
            width = int(info.k.max() + info.i.max() + info.f.max()) + 2
            if width > MAX_WIDTH or info.round not in ('TRN', 'RND', 'RND_CONV'):
                return f'its {role} quantizer needs a {width}-bit input port, more than the {MAX_WIDTH} bits da4ml 0.6 computes correctly'
    return None


RULES = [
    *common_rules(SUPPORTED, 'replace the layer with a supported one', ('TRN', 'RND', 'RND_CONV')),
    Rule('overflow-mode', 'error', _overflow, 'use WRAP, SAT or SAT_SYM'),
    Rule('port-width', 'error', _port_width, 'narrow the quantizer that reads the model input'),
]
