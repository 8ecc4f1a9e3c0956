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
    float32_bits=20,
    signed_input=False,
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
    'float32-sums': (replace(PLAIN, float32_bits=25), 'da4ml', {}),
    'table-layer': (replace(PLAIN, cls='QSoftmax', arithmetic=False), 'da4ml', {}),
    'extreme-format': (replace(PLAIN, quantizers={'input': q(1, -130, 135)}), 'hls4ml:vitis', {}),
    'wide-quantizer': (replace(PLAIN, quantizers={'input': q(1, 6, 18)}), 'da4ml', {}),
    'port-width': (replace(PLAIN, reads_model_input=True, quantizers={'input': q(1, 20, 12)}), 'da4ml', {}),
    'export-calibration': (replace(PLAIN, recalibrated=('input',)), 'da4ml', {}),
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
    'signed-relu': (replace(PLAIN, cls='ReLU', arithmetic=False, quantizers={}, signed_input=True), 'hls4ml:vitis', {}),
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
    assert rule.fix and rule.severity in ('error', 'unverified', 'warning')


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


def test_an_unverified_item_makes_the_model_not_deployable() -> None:
    from hgqbridge.report import CheckItem, CheckReport

    report = CheckReport('m', 'da4ml', [CheckItem('d', 'QDense', 'ok'), CheckItem('s', 'QSoftmax', 'unverified', 'table', 'x')])
    assert not report.deployable and report.unverified == [report.items[1]]
    assert 'unverified (NOT deployable' in report.to_text() and report.to_dict()['deployable'] is False
    warned = CheckReport('m', 'da4ml', [CheckItem('s', 'Activation', 'warning', 'float head', 'x')])
    assert warned.deployable and warned.to_text().endswith('Verdict: deployable')


def test_float32_bound_uses_the_actual_weights_and_the_bias() -> None:
    """x in ap_fixed<8,4> (|x| <= 16, multiples of 2^-4) times w = [0.5, 0.75] (fractional bits 1 and 2):
    bound 16 * 1.25 = 20, LSB 2^-6, 20 * 64 = 1280 -> 11 bits; a bias 2^-30 pushes the LSB to 2^-30 -> 35 bits."""
    from hgqbridge.converters.deploy.float32 import Range, frac_bits, matmul_bound, scale_bound

    x = Range(np.full(2, 16.0), np.full(2, 4))
    out, bits = matmul_bound(x, np.array([[0.5], [0.75]]), None)
    assert bits == 11 and out.amax.tolist() == [20.0] and out.frac.tolist() == [6]
    _, bits = matmul_bound(x, np.array([[0.5], [0.75]]), np.array([2.0**-30]))
    assert bits == 35
    assert frac_bits(np.array([0.75, 3.0, 2.0**-30, 12.0])).tolist() == [2, 0, 30, -2]
    _, bits = scale_bound(x, np.array([0.5, 3.0]), np.array([0.25, 0.0]))
    assert bits == int(np.ceil(np.log2(48 * 2**4)))  # channel 1: 16 * 3 = 48 with LSB 2^-4; channel 0: 8.25 * 2^5
