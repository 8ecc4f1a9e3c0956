"""What hls4ml 1.3 deploys from an HGQ2 model, per backend, io type and strategy: one table of rules.

ZeroPadding is absent on purpose: hls4ml 1.3.0's bit-exact pass has no ``produce_kif`` for it (the reference
notes cite hls4ml#1482, which came after 1.3.0); exporting one fails with NotImplementedError.

Facts from ../shared/reference/hls4ml-da4ml-support.md §2 (checked against hls4ml 1.3.0's source):
heterogeneous activation quantizers need io_parallel, Catapult cannot generate them at all, UnaryLUT has no
oneAPI/Quartus/Catapult template, the distributed_arithmetic strategy needs reuse factor 1 on Vivado/Vitis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hgqbridge.errors import HGQBridgeError

from ..deploy.facts import LayerFacts
from ..deploy.rules import Rule, common_rules, heterogeneous_activation, zero_width

BACKENDS = ('vivado', 'vitis', 'oneapi', 'quartus', 'catapult')
#: Backends whose C simulation g++ can compile here (oneAPI needs icpx, Catapult its own headers).
COMPILABLE = ('vivado', 'vitis', 'quartus')
STRATEGIES = ('latency', 'resource', 'distributed_arithmetic')
IO_TYPES = ('io_parallel', 'io_stream')


@dataclass(frozen=True)
class Target:
    """hls4ml with a backend, io type, strategy and reuse factor."""

    backend: str
    io_type: str = 'io_parallel'
    strategy: str = 'latency'
    reuse_factor: int = 1
    tool = 'hls4ml'

    def __str__(self) -> str:
        return f'hls4ml:{self.backend} ({self.io_type}, {self.strategy}, reuse factor {self.reuse_factor})'


def parse(backend: str, options: dict[str, Any]) -> Target:
    """``hls4ml:BACKEND`` with io_type, strategy (``da`` for distributed_arithmetic) and reuse_factor."""
    if backend not in BACKENDS:
        raise HGQBridgeError(
            'unknown target: hls4ml needs one of its backends',
            received=f'hls4ml:{backend}' if backend else 'hls4ml',
            fix=f'use hls4ml:{" | hls4ml:".join(BACKENDS)}',
        )
    unknown = sorted(k for k, v in options.items() if v is not None and k not in ('io_type', 'strategy', 'reuse_factor'))
    if unknown:
        raise HGQBridgeError('option(s) that hls4ml does not take', received=unknown, fix='drop them')
    strategy = str(options.get('strategy') or 'latency').lower()
    strategy = 'distributed_arithmetic' if strategy == 'da' else strategy
    io_type, reuse = options.get('io_type') or 'io_parallel', options.get('reuse_factor') or 1
    if io_type not in IO_TYPES or strategy not in STRATEGIES or not isinstance(reuse, int) or reuse < 1:
        raise HGQBridgeError(
            'unknown hls4ml option',
            received=f'io_type={io_type}, strategy={strategy}, reuse_factor={reuse}',
            fix=f'io_type in {IO_TYPES}, strategy in {STRATEGIES}, reuse_factor >= 1',
        )
    return Target(backend, io_type, strategy, reuse)


#: HGQ2 layers with an hls4ml 1.3 handler (hls4ml/converters/keras_v3/hgq2) and the Keras layers around them.
SUPPORTED = (
    'QDense',
    'QBatchNormDense',
    'QEinsumDense',
    'QConv1D',
    'QConv2D',
    'QBatchNormalization',
    'Quantizer',
    'QAdd',
    'QSubtract',
    'QMultiply',
    'QMaximum',
    'QMinimum',
    'QAveragePow2',
    'QSoftmax',
    'QUnaryFunctionLUT',
    'InputLayer',
    'Flatten',
    'Reshape',
    'ReLU',
    'Concatenate',
    'MaxPooling1D',
    'MaxPooling2D',
)

#: The subset proven bit-exact today: tests/converters/test_matrix.py fails if no model holding one of them exports exactly.
VERIFIED = (
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
    'InputLayer',
)  # not ReLU: hls4ml 1.3 lets negative values through a Keras ReLU ([signed-relu]); no fixture feeds it unsigned ones


def _heterogeneous_stream(f: LayerFacts, t: Target) -> str | None:
    if t.io_type == 'io_stream' and heterogeneous_activation(f):
        return 'heterogeneous activation quantizers are only generated for io_parallel'
    return None


def _catapult_masks(f: LayerFacts, t: Target) -> str | None:
    if t.backend == 'catapult' and heterogeneous_activation(f):
        return "hls4ml's Catapult backend cannot generate per-element quantizers (generate_mask_fn)"
    return None


def _clipped_relu(f: LayerFacts, t: Target) -> str | None:
    return 'hls4ml 1.3 converts only a plain ReLU (no max_value, negative_slope or threshold)' if f.clipped_relu else None


def _signed_relu(f: LayerFacts, t: Target) -> str | None:
    if f.cls == 'ReLU' and f.signed_input and not f.clipped_relu:
        return (
            'hls4ml 1.3 compiles a Keras ReLU as thresholded_relu with its threshold typed ap_ufixed<2,32>, and that '
            'comparison lets negative inputs through (measured: -0.62 came out as 15.38), so a ReLU whose input may be '
            'negative is not exported exactly'
        )
    return None


def _lut_template(f: LayerFacts, t: Target) -> str | None:
    if f.cls == 'QUnaryFunctionLUT' and t.backend in ('oneapi', 'quartus', 'catapult'):
        return f'{t.backend} has no template for the lookup-table activation'
    return None


def _da_strategy(f: LayerFacts, t: Target) -> str | None:
    if t.strategy != 'distributed_arithmetic' or not f.arithmetic:
        return None
    if t.backend not in ('vivado', 'vitis'):
        return 'the distributed_arithmetic strategy exists only on Vivado and Vitis'
    if t.reuse_factor != 1:
        return f'distributed_arithmetic needs reuse factor 1, got {t.reuse_factor}'
    return None


def _no_csim(facts: list[LayerFacts], t: Target) -> str | None:
    if t.backend not in COMPILABLE:
        return f'the {t.backend} C simulation cannot be compiled on this machine, so the export cannot be proven bit-exact'
    return None


def _affine(f: LayerFacts, t: Target) -> str | None:
    if any(info is not None and info.affine for info in f.quantizers.values()):
        return "hls4ml 1.3 ignores a quantizer's affine transform (the hard-sigmoid emulation), so the firmware would differ"
    return None


def _dilation(f: LayerFacts, t: Target) -> str | None:
    if any(d != 1 for d in f.dilation) or f.groups != 1:
        return f'hls4ml has no dilated or grouped convolution (dilation {f.dilation}, groups {f.groups}); 1.3.0 fails on it'
    return None


def _two_inputs(f: LayerFacts, t: Target) -> str | None:
    return f'hls4ml merges exactly two inputs, this {f.cls} has {f.n_inputs}' if f.n_inputs > 2 else None


def _input_chain(f: LayerFacts, t: Target) -> str | None:
    quantizes = any(role.startswith(('input', 'self')) for role in f.quantizers)
    if f.reads_model_input and not quantizes and f.cls not in ('Flatten', 'Reshape'):
        return f'the model input reaches a {f.cls} before any quantizer, which hls4ml rejects ("unexpected input layer chain")'
    return None


#: No documented threshold exists for Vivado HLS's "Stop unrolling loop" (XFORM 203-504); hls4ml issues report
#: it on dense layers of a few thousand multiplications and up, so the warning starts there.
VIVADO_UNROLL_WARNING = 4096


def _vivado_unroll(f: LayerFacts, t: Target) -> str | None:
    n = f.fan_in * f.n_out
    if t.backend == 'vivado' and t.strategy == 'latency' and n > VIVADO_UNROLL_WARNING:
        return f"{n} multiplications in one fully unrolled loop may hit Vivado HLS's loop-unrolling limit (XFORM 203-504)"
    return None


def valid_reuse_factor(n_in: int, n_out: int, rf: int) -> bool:
    """hls4ml's FPGABackend._validate_reuse_factor for the Resource strategy."""
    multfactor = min(n_in, rf)
    multiplier_limit = -(-(n_in * n_out) // multfactor)
    return ((multiplier_limit % n_out == 0) or rf >= n_in) and (rf % n_in == 0 or rf < n_in) and (n_in * n_out) % rf == 0


def _reuse_factor(f: LayerFacts, t: Target) -> str | None:
    if t.strategy != 'resource' or not f.fan_in or t.reuse_factor == 1 or valid_reuse_factor(f.fan_in, f.n_out, t.reuse_factor):
        return None
    return f'reuse factor {t.reuse_factor} is not valid for {f.fan_in} inputs x {f.n_out} outputs; hls4ml will use the closest valid one'


def _quartus(facts: list[LayerFacts], t: Target) -> str | None:
    return 'hls4ml deprecates the Quartus backend' if t.backend == 'quartus' else None


RULES = [
    *common_rules(SUPPORTED, 'replace the layer, or use the da4ml target', ('TRN', 'RND', 'RND_CONV')),
    Rule(
        'zero-width',
        'warning',
        zero_width,
        'hls4ml may emit invalid types for pruned elements (hls4ml#1523); check the C simulation',
    ),
    Rule(
        'io-stream-heterogeneous',
        'error',
        _heterogeneous_stream,
        'use io_parallel, or make the activation quantizers uniform (a float model: convert --uniform-activations)',
    ),
    Rule('catapult-heterogeneous', 'error', _catapult_masks, 'use Vitis or Vivado'),
    Rule('clipped-relu', 'error', _clipped_relu, 'use the da4ml target (it computes clipped and leaky ReLUs exactly)'),
    Rule('lut-template', 'error', _lut_template, 'use Vitis or Vivado'),
    Rule(
        'signed-relu',
        'error',
        _signed_relu,
        "put the ReLU inside the layer before it (activation='relu'), use an unsigned quantizer, or the da4ml target",
    ),
    Rule('da-strategy', 'error', _da_strategy, 'use reuse factor 1 on Vitis/Vivado, or the latency strategy'),
    Rule('no-csim-here', 'warning', _no_csim, 'export writes the project; verify it where the vendor compiler exists', 'model'),
    Rule('quartus-deprecated', 'warning', _quartus, 'prefer oneAPI or Vitis', 'model'),
    Rule('two-inputs', 'error', _two_inputs, 'chain two-input merges'),
    Rule('input-chain', 'error', _input_chain, 'put a quantizer (QActivation) right after the input'),
    Rule('vivado-unroll', 'warning', _vivado_unroll, 'use Vitis, the resource strategy, io_stream, or split the layer'),
    Rule('reuse-factor', 'warning', _reuse_factor, 'pick a reuse factor that divides inputs x outputs'),
    Rule('conv-dilation', 'error', _dilation, 'use dilation_rate=1 and groups=1, or the da4ml target'),
    Rule('affine-quantizer', 'error', _affine, 'use the da4ml target, or quantized_tanh instead of quantized_sigmoid'),
]
