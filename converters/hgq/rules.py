"""Deployability rules over an HGQ2 model: the facts each rule looks at, the Rule type and the engine.

Each exporter keeps its own table of rules (``converters/hls4ml/rules.py``, ``converters/da4ml/rules.py``);
a rule is data: a name, a severity, a test over one layer's facts and the target, and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgqbridge.report import CheckItem, CheckReport

from .inspect import QuantizerInfo, layer_quantizers, quantizer_info


@dataclass(frozen=True)
class Target:
    """Where a model goes: ``hls4ml`` with a backend, io type, strategy and reuse factor; or ``da4ml``."""

    tool: str
    backend: str = ''
    io_type: str = 'io_parallel'
    strategy: str = 'latency'
    reuse_factor: int = 1

    def __str__(self) -> str:
        if self.tool == 'da4ml':
            return 'da4ml'
        return f'hls4ml:{self.backend} ({self.io_type}, {self.strategy}, reuse factor {self.reuse_factor})'


@dataclass
class LayerFacts:
    """What the rules need to know about one layer of the model."""

    name: str
    cls: str  # class name, e.g. QDense
    path: str  # fully qualified class path, e.g. hgq.layers.core.dense.QDense
    quantizers: dict[str, QuantizerInfo | None] = field(default_factory=dict)  # role -> info (None: float)
    activation: str = ''
    is_output: bool = False
    arithmetic: bool = False
    fed_by_quantizer: bool = True
    fan_in: int = 0  # products summed per output (dense/conv), 0 for other layers
    dilation: tuple[int, ...] = ()  # convolutions: dilation_rate
    groups: int = 1
    n_out: int = 0  # outputs per position (units / filters) of a dense/conv layer
    n_inputs: int = 1
    reads_model_input: bool = False  # directly, or through Flatten/Reshape only
    clipped_relu: bool = False  # a Keras ReLU with max_value, negative_slope or threshold
    float_scale: bool = False  # a batch normalization whose scale is not a power of two: x * scale rounds in float32


ARITHMETIC = ('QDense', 'QConv1D', 'QConv2D', 'QBatchNormalization', 'QBatchNormDense', 'QEinsumDense', 'Dense', 'Conv1D', 'Conv2D')


def layer_facts(model: Any) -> list[LayerFacts]:
    """Facts for every layer, in model order; ``fed_by_quantizer`` follows quantization down the graph."""
    outputs = {id(t._keras_history.operation) for t in model.outputs}
    quantized_out: dict[str, bool] = {}
    from_input: set[str] = {t._keras_history.operation.name for t in model.inputs}
    facts = []
    for layer in model.layers:
        cls = type(layer).__name__
        qs = {role: quantizer_info(q) for role, q in layer_quantizers(layer).items()}
        parents = _parents(layer)
        reads_input = bool(parents) and any(p in from_input for p in parents) and cls != 'InputLayer'
        if reads_input and cls in ('Flatten', 'Reshape'):
            from_input.add(layer.name)
        upstream = bool(parents) and all(quantized_out.get(p, False) for p in parents)
        has_iq = any(role.startswith(('input', 'self')) for role in qs)
        quantized_out[layer.name] = has_iq or (upstream and cls not in ('Activation',))
        activation = layer.get_config().get('activation', '')
        facts.append(
            LayerFacts(
                name=layer.name,
                cls=cls,
                path=f'{type(layer).__module__}.{cls}',
                quantizers=qs,
                activation=activation if isinstance(activation, str) else str(activation),
                is_output=id(layer) in outputs,
                arithmetic=cls in ARITHMETIC,
                fed_by_quantizer=has_iq or upstream,
                fan_in=_fan_in(layer, cls),
                dilation=tuple(getattr(layer, 'dilation_rate', ()) or ()),
                groups=int(getattr(layer, 'groups', 1) or 1),
                n_inputs=len(parents),
                n_out=int(layer.kernel.shape[-1]) if cls in ARITHMETIC and hasattr(layer, 'kernel') else 0,
                reads_model_input=reads_input,
                float_scale=cls == 'QBatchNormalization' and _float_scale(layer),
                clipped_relu=cls == 'ReLU' and (layer.max_value is not None or bool(layer.negative_slope) or bool(layer.threshold)),
            )
        )
    return facts


def _float_scale(layer: Any) -> bool:
    """A batch normalization whose products x * scale may need more than float32's 24 significant bits: the
    scale's significant bits plus the input's width (16 when its input quantizer is off)."""
    scale = np.abs(np.asarray(layer.qscaler_and_qoffset[0], dtype=np.float64)).ravel()
    scale = scale[scale > 0]
    if not scale.size:
        return False
    mantissa = np.frexp(scale)[0] * 2.0**53
    significant = int(max(53 - (int(m) & -int(m)).bit_length() + 1 for m in mantissa))
    info = quantizer_info(layer.iq) if getattr(layer, 'enable_iq', False) else None
    width = int(np.max(info.width)) if info is not None else 16
    return significant + width > 24


def _fan_in(layer: Any, cls: str) -> int:
    """Products summed per output: a kernel's inputs per output; 1 for a batch normalization (x * scale + offset)."""
    if cls not in ARITHMETIC:
        return 0
    return int(np.prod(layer.kernel.shape[:-1])) if hasattr(layer, 'kernel') else 1


def _parents(layer: Any) -> list[str]:
    return [t._keras_history.operation.name for node in layer._inbound_nodes for t in node.input_tensors if hasattr(t, '_keras_history')]


@dataclass(frozen=True)
class Rule:
    """``test(facts, target)`` returns the specific reason when the rule fires, else None."""

    name: str
    severity: str  # 'error' or 'warning'
    test: Callable[[LayerFacts, Target], str | None]
    fix: str


def run_rules(model: Any, target: Target, rules: list[Rule]) -> CheckReport:
    items: list[CheckItem] = []
    for facts in layer_facts(model):
        fired = [(rule, reason) for rule in rules if (reason := rule.test(facts, target))]
        if not fired:
            items.append(CheckItem(facts.name, facts.cls, 'ok'))
        items.extend(CheckItem(facts.name, facts.cls, rule.severity, f'{reason} [{rule.name}]', rule.fix) for rule, reason in fired)
    return CheckReport(model.name, str(target), items)


# ---- tests shared by both targets -------------------------------------------------------------------------


def unsupported_class(supported: tuple[str, ...]) -> Callable[[LayerFacts, Target], str | None]:
    def test(f: LayerFacts, t: Target) -> str | None:
        if f.cls in supported or f.path in supported:
            return None
        if f.cls == 'Activation' and f.activation in ('relu', 'linear'):
            return None
        if f.cls == 'Activation' and f.activation == 'softmax' and f.is_output:
            return None  # the float head rule speaks for it
        return f'{t.tool} cannot deploy a {f.cls}' + (f' with activation {f.activation!r}' if f.cls == 'Activation' else '')

    return test


def float_quantizer(f: LayerFacts, t: Target) -> str | None:
    roles = [role for role, info in f.quantizers.items() if info is None]
    return f'float (dummy) quantizer on the {", ".join(roles)}: firmware needs fixed-point values' if roles else None


def float_softmax_head(f: LayerFacts, t: Target) -> str | None:
    if f.cls == 'Activation' and f.activation == 'softmax' and f.is_output:
        return 'float softmax output head: not exported, the firmware outputs its input (the logits; argmax unchanged)'
    return None


def unquantized_arithmetic(f: LayerFacts, t: Target) -> str | None:
    if f.arithmetic and not f.fed_by_quantizer:
        return 'arithmetic on an unquantized input: a quantizer must precede any arithmetic'
    return None


def dense_activation(allowed: tuple[str, ...]) -> Callable[[LayerFacts, Target], str | None]:
    def test(f: LayerFacts, t: Target) -> str | None:
        if f.arithmetic and f.activation not in ('', *allowed):
            return f'activation={f.activation!r} inside {f.cls} is evaluated in float'
        return None

    return test


def zero_width(f: LayerFacts, t: Target) -> str | None:
    for role, info in f.quantizers.items():
        if info is not None and (info.width <= 0).any():
            n = int((info.width <= 0).sum())
            return f'{n} element(s) of the {role} quantizer have zero or negative width (pruned)'
    return None


def float32_accumulation(f: LayerFacts, t: Target) -> str | None:
    """The Keras model computes in float32 (24-bit mantissa); firmware sums exactly. Wider sums may round."""
    if f.float_scale:
        return 'its scale is not a power of two, so the Keras model rounds x * scale in float32 where the firmware is exact'
    x, w = f.quantizers.get('input'), f.quantizers.get('kernel')
    if not f.fan_in or x is None or w is None:
        return None
    integer = int((x.k + x.i).max() + (w.k + w.i).max()) + int(np.ceil(np.log2(f.fan_in)))
    bits = integer + int(x.f.max() + w.f.max())
    if bits <= 24:
        return None
    return f'its sums need up to {bits} significant bits, more than float32 holds, so the Keras model may round where the firmware is exact'


def round_modes(allowed: tuple[str, ...]) -> Callable[[LayerFacts, Target], str | None]:
    def test(f: LayerFacts, t: Target) -> str | None:
        bad = {f'{info.round}/{info.overflow}' for info in f.quantizers.values() if info is not None and info.round not in allowed}
        return f'rounding mode(s) {", ".join(sorted(bad))} are not supported' if bad else None

    return test


def heterogeneous_activation(f: LayerFacts) -> bool:
    return any(info is not None and not info.uniform for role, info in f.quantizers.items() if role.startswith(('input', 'self', 'output')))


def common_rules(supported: tuple[str, ...], supported_fix: str, round_allowed: tuple[str, ...]) -> list[Rule]:
    """The rows every target's table starts with."""
    return [
        Rule('supported-layer', 'error', unsupported_class(supported), supported_fix),
        Rule('float-quantizer', 'error', float_quantizer, 'give the layer fixed-point quantizers (hgqbridge finetune does)'),
        Rule('float-head', 'warning', float_softmax_head, 'use QSoftmax if the firmware must compute probabilities'),
        Rule('quantize-first', 'error', unquantized_arithmetic, 'quantize the model input (convert --input-format)'),
        Rule('dense-activation', 'error', dense_activation(('linear', 'relu')), 'use a QUnaryFunctionLUT layer for the activation'),
        Rule('round-mode', 'error', round_modes(round_allowed), f'use {", ".join(round_allowed)} (stochastic rounding is training-only)'),
        Rule('float32-sums', 'warning', float32_accumulation, 'narrow the formats (hgqbridge finetune), or use power-of-two weight scales'),
    ]
