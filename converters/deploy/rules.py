"""Deployability rules: the Rule type, the engine, and the rules every target's table starts with.

Each target keeps its own table of rules (``converters/<target>/rules.py``); a rule is data: a name, a severity,
a scope (one layer, or the whole model), a test over facts (``facts.py``) and the target, and the fix. ``check``
runs every rule on every layer and never modifies the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from hgqbridge.report import CheckItem, CheckReport

from . import cost
from .facts import LayerFacts, layer_facts
from .float32 import FLOAT32_BITS

Target = Any  # a target's own option dataclass (converters/<target>/rules.py); it has ``tool`` and a ``str()``


@dataclass(frozen=True)
class Rule:
    """``test(facts, target)`` returns the specific reason when the rule fires, else None. A ``model`` rule is
    tested once, on the facts of all layers together (a list), and reported against the model; when it does not
    fire, its ``note`` (if any) gives the text of an ok line for the model (e.g. the export cost estimate).
    ``unverified``: the export may be bit-exact, but nothing proves it on every input, so the model is not called
    deployable."""

    name: str
    severity: Literal['error', 'unverified', 'warning']
    test: Callable[[Any, Any], str | None]
    fix: str
    scope: Literal['layer', 'model'] = 'layer'
    note: Callable[[Any, Any], str] | None = None


def run_rules(model: Any, target: Any, rules: list[Rule]) -> CheckReport:
    facts = layer_facts(model)
    items: list[CheckItem] = []
    for rule in rules:
        if rule.scope == 'model' and (reason := rule.test(facts, target)):
            items.append(CheckItem(model.name, 'model', rule.severity, f'{reason} [{rule.name}]', rule.fix))
        elif rule.scope == 'model' and rule.note is not None:
            items.append(CheckItem(model.name, 'model', 'ok', f'{rule.note(facts, target)} [{rule.name}]'))
    for f in facts:
        fired = [(rule, reason) for rule in rules if rule.scope == 'layer' and (reason := rule.test(f, target))]
        if not fired:
            items.append(CheckItem(f.name, f.cls, 'ok'))
        items.extend(CheckItem(f.name, f.cls, rule.severity, f'{reason} [{rule.name}]', rule.fix) for rule, reason in fired)
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
    """The Keras model computes in float32 (24-bit significand); the firmware sums exactly (float32.py)."""
    if f.float32_bits < 0:
        return 'the range of its input is not bounded by a quantizer, so its float32 sums cannot be proven exact'
    if f.float32_bits <= FLOAT32_BITS:
        return None
    return (
        f'its products and sums need up to {f.float32_bits} significant bits (its quantized weights and biases, '
        f'its input formats), more than float32 holds, so the Keras model rounds where the firmware is exact'
    )


#: Table layers: HGQ2 evaluates them in float32 in Keras; the targets build their own tables (da4ml's tracer in
#: float64 numpy, hgq/_dais_tracer/layers/table.py and QSoftmax's; hls4ml's Softmax/UnaryLUT templates).
TABLE_LAYERS = ('QSoftmax', 'QUnaryFunctionLUT')


def table_layer(f: LayerFacts, t: Target) -> str | None:
    if f.cls in TABLE_LAYERS:
        return (
            f'a table layer: the Keras model evaluates its function in float32, {t.tool} regenerates the table its own way, '
            'and no test proves the two equal on every input'
        )
    return None


#: da4ml's tracer casts k, i, f to int8 (hgq/_dais_tracer/layers/_base.py mirror_quantizer); hls4ml's bit-exact
#: pass caps requested integer and fractional bits at 126 (hls4ml bit_exact.py _maximum_kif_at_shape).
KIF_LIMIT = 126


def extreme_format(f: LayerFacts, t: Target) -> str | None:
    for role, info in f.quantizers.items():
        if info is None or role in ('kernel', 'bias'):
            continue
        low, high = int(min(info.i.min(), info.f.min())), int(max(info.i.max(), info.f.max()))
        if low < -KIF_LIMIT or high > KIF_LIMIT:
            return f'the {role} quantizer has integer/fractional bits from {low} to {high}, beyond the +-{KIF_LIMIT} {t.tool} handles'
    return None


def wide_activation(f: LayerFacts, t: Target) -> str | None:
    """A quantizer wider than float32's significand: its saturation bound 2^i - 2^-f is not a float32 number."""
    for role, info in f.quantizers.items():
        if info is not None and role not in ('kernel', 'bias') and int(info.width.max()) > FLOAT32_BITS:
            return f'the {role} quantizer is {int(info.width.max())} bits wide; float32 holds {FLOAT32_BITS}, so the Keras model rounds its values and its saturation bound'
    return None


def recalibrated(f: LayerFacts, t: Target) -> str | None:
    if f.recalibrated:
        return (
            f'WRAP quantizer(s) on the {", ".join(f.recalibrated)}: export re-derives their integer bits from its data '
            '(hgq trace_minmax), so export checks the calibrated model again and refuses it if it is not deployable'
        )
    return None


def round_modes(allowed: tuple[str, ...]) -> Callable[[LayerFacts, Target], str | None]:
    def test(f: LayerFacts, t: Target) -> str | None:
        bad = {
            f'{info.round}/{info.overflow}' for info in f.quantizers.values() if info is not None and info.round not in allowed
        }
        return f'rounding mode(s) {", ".join(sorted(bad))} are not supported' if bad else None

    return test


def heterogeneous_activation(f: LayerFacts) -> bool:
    return any(
        info is not None and not info.uniform
        for role, info in f.quantizers.items()
        if role.startswith(('input', 'self', 'output'))
    )


def common_rules(supported: tuple[str, ...], supported_fix: str, round_allowed: tuple[str, ...]) -> list[Rule]:
    """The rows every target's table starts with."""
    return [
        Rule('supported-layer', 'error', unsupported_class(supported), supported_fix),
        Rule('float-quantizer', 'error', float_quantizer, 'give the layer fixed-point quantizers (hgqbridge finetune does)'),
        Rule('float-head', 'warning', float_softmax_head, 'use QSoftmax if the firmware must compute probabilities'),
        Rule('quantize-first', 'error', unquantized_arithmetic, 'quantize the model input (convert --input-format)'),
        Rule(
            'dense-activation', 'error', dense_activation(('linear', 'relu')), 'use a QUnaryFunctionLUT layer for the activation'
        ),
        Rule(
            'round-mode',
            'error',
            round_modes(round_allowed),
            f'use {", ".join(round_allowed)} (stochastic rounding is training-only)',
        ),
        Rule(
            'float32-sums',
            'unverified',
            float32_accumulation,
            'narrow the formats (fewer fractional bits on tiny weights and biases; hgqbridge finetune), or quantize the input',
        ),
        Rule('export-cost', 'warning', cost.export_cost, cost.FIX, 'model', cost.describe),
        Rule('table-layer', 'unverified', table_layer, 'keep the softmax head float (it is not exported), or replace the table'),
        Rule('extreme-format', 'error', extreme_format, 'give the quantizer a sensible range (convert with --calibration)'),
        Rule('wide-quantizer', 'unverified', wide_activation, 'use at most 24 bits per activation quantizer'),
        Rule('export-calibration', 'warning', recalibrated, 'calibrate before export, or use SAT quantizers'),
    ]
