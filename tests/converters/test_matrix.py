"""Every fixture x target: check's verdict predicts what export does."""

from __future__ import annotations

from pathlib import Path

import pytest

import hgqbridge
from hgqbridge.errors import ProblemsError

from ..conftest import MODELS


@pytest.mark.parametrize('target', ['da4ml', pytest.param('hls4ml:vitis', marks=pytest.mark.slow)])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_check_predicts_export(name: str, target: str, conversions: dict, golden_inputs: dict, tmp_path: Path) -> None:
    model = conversions[name].model
    report = hgqbridge.check(model, target)
    if not report.deployable:
        errors = [i for i in report.items if i.status == 'error']
        assert errors and all(i.layer and i.reason and i.fix for i in errors)
        with pytest.raises(ProblemsError) as info:
            hgqbridge.export(model, target, tmp_path / 'prj', golden_inputs[name], rtl=False)
        assert all(i.layer in str(info.value) for i in errors)
        assert not (tmp_path / 'prj').exists()
        return
    exported = hgqbridge.export(model, target, tmp_path / 'prj', golden_inputs[name], rtl=False)  # RTL: test_export.py
    warned = {i.layer for i in report.items if '[float32-sums]' in i.reason}
    if not exported.ok:  # only where check warned that the float32 Keras model itself rounds, and first there
        assert warned and set(exported.first_divergence.values()) <= warned, exported.to_text()
    assert (tmp_path / 'prj' / 'hgqbridge_export.json').is_file()
