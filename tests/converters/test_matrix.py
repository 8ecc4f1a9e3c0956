"""Every fixture x target: check's verdict predicts what export does, export leaves the model as it was, and every
layer class a target's table calls proven is in some model exported bit-exactly here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hgqbridge
from hgqbridge.errors import ProblemsError

from ..conftest import MODELS

EXPORTED_EXACT: dict[str, set[str]] = {}  # target -> layer classes of the models that exported bit-exactly

#: The RTL simulations: tests/converters/da4ml/test_export.py and tests/converters/alkaid/test_export.py (slow).
NO_RTL: dict[str, dict] = {'alkaid': {'rtl': False}, 'da4ml': {'rtl': False}, 'hls4ml:vitis': {}}
#: The warnings under which an export may differ: the float32 Keras model rounds, or alkaid's C++ emulator is too narrow.
MAY_DIFFER = ('[float32-sums]', '[emulator-width]')

#: Models cut from a fixture at a layer (``fixture@layer``): the QConv2D + MaxPooling2D stack of digits_cnn, before the
#: ZeroPadding2D that hls4ml refuses, is the one model here in which hls4ml exports those classes bit-exactly.
CUTS = ('digits_cnn@pool1',)


def _model(name: str, conversions: dict, golden_inputs: dict) -> tuple:
    import keras

    fixture, _, layer = name.partition('@')
    model = conversions[fixture].model
    if layer:
        model = keras.Model(model.inputs, model.get_layer(layer).output, name=f'{fixture}_to_{layer}')
    return model, golden_inputs[fixture]


@pytest.mark.parametrize('target', ['alkaid', 'da4ml', pytest.param('hls4ml:vitis', marks=pytest.mark.slow)])
@pytest.mark.parametrize('name', sorted(MODELS) + list(CUTS))
def test_check_predicts_export(name: str, target: str, conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    model, x = _model(name, conversions, golden_inputs)
    report = hgqbridge.check(model, target)
    if not report.deployable:
        errors = [i for i in report.items if i.status in ('error', 'unverified')]  # unverified: not proven exact
        assert errors and all(i.layer and i.reason and i.fix for i in errors)
        with pytest.raises(ProblemsError) as info:
            hgqbridge.export(model, target, tmp_path / 'prj', x, **NO_RTL[target])
        assert all(i.layer in str(info.value) for i in errors)
        assert not (tmp_path / 'prj').exists()
        return
    before = [np.array(w) for w in model.get_weights()]
    exported = hgqbridge.export(model, target, tmp_path / 'prj', x, **NO_RTL[target])  # RTL: test_export.py
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, model.get_weights())), (
        'export changed the model it was given'
    )
    if exported.ok:
        EXPORTED_EXACT.setdefault(target, set()).update(type(layer).__name__ for layer in model.layers)
    warned = {i.layer for i in report.items if any(w in i.reason for w in MAY_DIFFER)}
    if not exported.ok:  # only where check warned that the float32 Keras model (or alkaid's emulator) rounds, first there
        assert warned and set(exported.first_divergence.values()) <= warned, exported.to_text()
    assert (tmp_path / 'prj' / 'hgqbridge_export.json').is_file()


@pytest.mark.parametrize('target', ['alkaid', 'da4ml', pytest.param('hls4ml:vitis', marks=pytest.mark.slow)])
def test_proven_classes_were_exported_bit_exactly(target: str) -> None:
    """Runs after the matrix above (same module, file order): the target's 'proven' column is what it proved."""
    from hgqbridge.converters import TARGETS

    proven = set(TARGETS[target.split(':')[0]].proven)
    assert proven <= EXPORTED_EXACT.get(target, set()), (
        f'claimed but not proven here: {sorted(proven - EXPORTED_EXACT.get(target, set()))}'
    )
