"""Deployability rules: the Rule type, the engine, and the rules every target's table starts with.

Each target keeps its own table of rules (``converters/<target>/rules.py``); a rule is data: a name, a severity,
a scope (one layer, or the whole model), a test over facts (``facts.py``) and the target, and the fix. ``check``
runs every rule on every layer and never modifies the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hgqbridge.report import CheckItem, CheckReport

from . import cost
from .facts import LayerFacts, layer_facts

Target = Any  # a target's own option dataclass (converters/<target>/rules.py); it has ``tool`` and a ``str()``


@dataclass(frozen=True)
class Rule:
    """``test(facts, target)`` returns the specific reason when the rule fires, else None. A ``model`` rule is
    tested once, on the facts of all layers together (a list), and reported against the model; when it does not
    fire, its ``note`` (if any) gives the text of an ok line for the model (e.g. the export cost estimate)."""

    name: str
    severity: Literal['error', 'warning']
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
            'warning',
            float32_accumulation,
            'narrow the formats (hgqbridge finetune), or use power-of-two weight scales',
        ),
        Rule('export-cost', 'warning', cost.export_cost, cost.FIX, 'model', cost.describe),
    ]
