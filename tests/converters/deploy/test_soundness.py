"""check never calls a float model deployable whose export is not bit-exact: random float graphs, random policies
(soundness.py); every deployable one is exported and compared on normal, stress and far-out-of-range inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from .soundness import run


def test_da4ml_has_no_permissive_error(tmp_path: Path) -> None:
    outcome = run(seed=15, models=12, target='da4ml', work=tmp_path)
    assert outcome.permissive == [], outcome.permissive
    assert outcome.export_failures == [], outcome.export_failures
    assert outcome.tried == 12 and outcome.exported == outcome.deployable >= 2, outcome.line()  # not vacuous
    assert outcome.unverified + outcome.refused >= 1, outcome.line()  # and the generator does reach the rules


@pytest.mark.slow
def test_hls4ml_vitis_has_no_permissive_error(tmp_path: Path) -> None:
    outcome = run(seed=16, models=4, target='hls4ml:vitis', work=tmp_path)
    assert outcome.permissive == [], outcome.permissive
    assert outcome.export_failures == [], outcome.export_failures
    assert outcome.exported == outcome.deployable >= 1, outcome.line()
