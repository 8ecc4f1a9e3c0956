"""One row per deployability rule of every target, on hand-made facts: the rule fires on the facts it is about and
stays silent on a plain quantized dense layer; every rule of every target has a row (a rule that several targets
share by name is tested in each of them, on the facts of FIRES unless OTHER_FACTS gives that target its own)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hgqbridge.converters import TARGETS, parse_target
from hgqbridge.converters.deploy.facts import LayerFacts
from hgqbridge.converters.deploy.rules import Rule
from hgqbridge.inspect import QuantizerInfo


def q(
    k: int = 1,
    i: int = 2,
    f: int = 5,
    rnd: str = 'RND_CONV',
    ovf: str = 'SAT',
    shape: tuple[int, ...] = (),
    affine: tuple | None = None,
) -> QuantizerInfo:
    a = lambda v: np.full(shape, v, dtype=np.int64)  # noqa: E731
    return QuantizerInfo(a(k), a(i), a(f), rnd, ovf, affine)


PLAIN = LayerFacts(
    'd',
    'QDense',
    'hgq.layers.core.dense.QDense',
    {'input': q(), 'kernel': q(1, 0, 3), 'bias': q(1, 0, 3)},
    'linear',
    arithmetic=True,
    fed_by_quantizer=True,
    fan_in=16,
    n_out=8,
)
HETERO = QuantizerInfo(np.array([1, 1]), np.array([2, 3]), np.array([5, 5]), 'RND_CONV', 'SAT')

#: rule name -> (facts that make it fire, target text, options)
FIRES: dict[str, tuple[LayerFacts | list[LayerFacts], str, dict]] = {
    'supported-layer': (replace(PLAIN, cls='QEinsum', path='hgq.layers.QEinsum', arithmetic=False), 'hls4ml:vitis', {}),
    'float-quantizer': (replace(PLAIN, quantizers={**PLAIN.quantizers, 'kernel': None}), 'da4ml', {}),
    'float-head': (
        replace(PLAIN, cls='Activation', activation='softmax', is_output=True, arithmetic=False, quantizers={}),
        'da4ml',
        {},
    ),
    'quantize-first': (replace(PLAIN, fed_by_quantizer=False, quantizers={'kernel': q(1, 0, 3)}), 'da4ml', {}),
    'dense-activation': (replace(PLAIN, activation='tanh'), 'da4ml', {}),
    'round-mode': (replace(PLAIN, quantizers={'input': q(rnd='S_RND')}), 'da4ml', {}),
    'float32-sums': (replace(PLAIN, quantizers={'input': q(1, 8, 10), 'kernel': q(1, 4, 10)}, fan_in=64), 'da4ml', {}),
    'overflow-mode': (replace(PLAIN, quantizers={'input': q(ovf='SAT_WEIRD')}), 'da4ml', {}),
    'clipped-relu-rank': (
        replace(PLAIN, cls='ReLU', clipped_relu=True, arithmetic=False, quantizers={}, rank=3),
        'alkaid',
        {},
    ),
    'pool-area': (replace(PLAIN, cls='QAveragePooling2D', arithmetic=False, pool_areas=(4, 6)), 'alkaid', {}),
    'emulator-width': (replace(PLAIN, quantizers={'input': q(1, 12, 12), 'kernel': q(1, 2, 28)}, fan_in=64), 'alkaid', {}),
    'zero-width': (replace(PLAIN, quantizers={'input': q(0, 0, 0)}), 'hls4ml:vitis', {}),
    'io-stream-heterogeneous': (replace(PLAIN, quantizers={'input': HETERO}), 'hls4ml:vitis', {'io_type': 'io_stream'}),
    'catapult-heterogeneous': (replace(PLAIN, quantizers={'input': HETERO}), 'hls4ml:catapult', {}),
    'clipped-relu': (replace(PLAIN, cls='ReLU', clipped_relu=True, arithmetic=False, quantizers={}), 'hls4ml:vitis', {}),
    'lut-template': (replace(PLAIN, cls='QUnaryFunctionLUT', arithmetic=False), 'hls4ml:quartus', {}),
    'da-strategy': (PLAIN, 'hls4ml:vitis', {'strategy': 'distributed_arithmetic', 'reuse_factor': 2}),
    'no-csim-here': ([PLAIN], 'hls4ml:oneapi', {}),
    'quartus-deprecated': ([PLAIN], 'hls4ml:quartus', {}),
    'two-inputs': (replace(PLAIN, cls='QAdd', arithmetic=False, n_inputs=3), 'hls4ml:vitis', {}),
    'input-chain': (
        replace(PLAIN, cls='MaxPooling2D', reads_model_input=True, arithmetic=False, quantizers={}),
        'hls4ml:vitis',
        {},
    ),
    'vivado-unroll': (replace(PLAIN, fan_in=256, n_out=64), 'hls4ml:vivado', {}),
    'reuse-factor': (replace(PLAIN, fan_in=16, n_out=8), 'hls4ml:vitis', {'strategy': 'resource', 'reuse_factor': 3}),
    'conv-dilation': (replace(PLAIN, cls='QConv1D', dilation=(2,)), 'hls4ml:vitis', {}),
    'export-cost': ([replace(PLAIN, cls='QConv1D', fan_in=1280, n_out=32, positions=100)] * 3, 'da4ml', {}),
    'affine-quantizer': (
        replace(PLAIN, cls='Quantizer', arithmetic=False, quantizers={'self': q(affine=(0.5, 0.5))}),
        'hls4ml:vitis',
        {},
    ),
}


#: (target, rule) -> facts that make that target's rule fire, where FIRES's do not (alkaid and da4ml trace QEinsum).
OTHER_FACTS: dict[tuple[str, str], LayerFacts] = {
    (name, 'supported-layer'): replace(PLAIN, cls='LayerNormalization', path='keras.layers.LayerNormalization', arithmetic=False)
    for name in ('alkaid', 'da4ml')
}


def _all_rules() -> dict[tuple[str, str], Rule]:
    return {(target.name, rule.name): rule for target in TARGETS.values() for rule in target.rules}


def _row(target_name: str, name: str) -> tuple[LayerFacts | list[LayerFacts], str, dict]:
    facts, text, options = FIRES[name]
    if text.split(':')[0] != target_name:  # the same rule name in another target: its default variant, no options
        text, options = 'hls4ml:vitis' if target_name == 'hls4ml' else target_name, {}
    return OTHER_FACTS.get((target_name, name), facts), text, options


@pytest.mark.parametrize(('target_name', 'name'), sorted(_all_rules()))
def test_rule_fires_on_its_facts_and_not_on_a_plain_layer(target_name: str, name: str) -> None:
    facts, text, options = _row(target_name, name)
    target, spec = parse_target(text, options)
    rule = next(r for r in target.rules if r.name == name)
    reason = rule.test(facts, spec)
    assert reason and isinstance(reason, str), name
    plain = [PLAIN] if rule.scope == 'model' else PLAIN
    quiet_target = parse_target('hls4ml:vitis', {})[1] if text.startswith('hls4ml') else spec
    assert rule.test(plain, quiet_target) is None, name
    assert rule.fix and rule.severity in ('error', 'warning')


def test_every_rule_has_a_row() -> None:
    assert {name for _, name in _all_rules()} == set(FIRES)
    assert set(OTHER_FACTS) <= set(_all_rules())


def test_check_never_modifies_the_model(conversions: dict) -> None:
    """check reads facts only; export works on a copy (tests/converters/test_matrix.py hashes after an export)."""
    import hgqbridge

    model = conversions['jet_tagger'].model
    before = [np.array(w) for w in model.get_weights()]
    for text in ('alkaid', 'da4ml', 'hls4ml:vitis'):
        hgqbridge.check(model, text)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, model.get_weights()))
