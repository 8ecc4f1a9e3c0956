"""Fine-tuning: exact starting point, EBOPs fall under pressure, the Pareto choice honours the tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from hgqbridge.finetune import copy_model, finetune, metric_value, pareto_front

from .conftest import QKERAS


def test_pareto_front() -> None:
    points = [(100, 0.90), (50, 0.90), (50, 0.95), (200, 0.99), (300, 0.98), (10, 0.5)]
    assert pareto_front(points) == [2, 3, 5]


def test_metric_value() -> None:
    y = np.eye(3)[[0, 1, 2, 1]]
    assert metric_value('accuracy', y, y[[0, 1, 2, 2]]) == 0.75
    assert metric_value('mse', np.ones(4), np.zeros(4)) == -1.0


def test_copy_is_exact(conversions: dict, golden_inputs: dict) -> None:
    model = conversions['jet_tagger'].model
    x = golden_inputs['jet_tagger']
    clone = copy_model(model)
    assert clone is not model and clone.get_layer('fc1') is not model.get_layer('fc1')
    assert np.array_equal(model.predict([x], verbose=0), clone.predict([x], verbose=0))


@pytest.fixture(scope='module')
def short_run(conversions: dict):
    data = dict(np.load(QKERAS / 'jet_tagger.data.npz'))
    model = conversions['jet_tagger'].model
    before = model.get_weights()
    result = finetune(model, data['x'], data['y'], data['x_val'], data['y_val'], epochs=6, beta_min=3e-4, beta_max=1e-3,
                      learning_rate=1e-2, tolerance=0.02, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), 'the input model must stay as it was'
    return result, data


def test_ebops_fall_under_pressure(short_run) -> None:
    result, _ = short_run
    assert len(result.history) == 6
    assert result.history[-1].ebops < 0.8 * result.baseline_ebops


def test_choice_meets_tolerance_and_is_reproducible(short_run) -> None:
    result, data = short_run
    front = [(r.ebops, r.val_metric) for r in result.history if r.pareto]
    assert len(pareto_front(front)) == len(front)  # no dominated point kept
    chosen = result.chosen
    assert chosen is not None and chosen.pareto
    assert chosen.val_metric >= result.baseline_metric - 0.02
    assert metric_value('accuracy', data['y_val'], result.model.predict([data['x_val']], verbose=0)) == chosen.val_metric
