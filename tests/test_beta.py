"""The automatic beta rule, the schedules, the budget, and the three splits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hgqbridge.beta import HIGH, LOW, auto_batch, auto_beta, beta_at, chance_loss, lr_at, parse_budget, planned_epochs, task_loss
from hgqbridge.evaluation import make_splits, score


@pytest.fixture(scope='module')
def toy() -> tuple:
    """A two-layer HGQ2 classifier (8 -> 6 -> 3) and a 3-class task it can learn."""
    import keras
    from hgq.layers import QDense

    keras.utils.set_random_seed(1)
    inp = keras.Input((8,))
    out = QDense(3, activation='softmax')(QDense(6, activation='relu')(inp))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.argmax(x[:, :3], -1)]
    data = {'x': x[:200], 'y': y[:200], 'x_val': x[200:], 'y_val': y[200:]}
    return model, data


def test_auto_beta_on_a_toy_model(toy: tuple, tmp_path: Path) -> None:
    from hgqbridge.finetune import finetune
    from hgqbridge.inspect import calibrate
    from hgqbridge.models import copy_model

    model, data = toy
    probe = copy_model(model)
    ebops0 = calibrate(probe, data['x'])
    val = make_splits(data)
    loss = task_loss('accuracy', val.y_val, probe.predict(val.x_val, verbose=0))
    ref = max(loss, 0.01 * math.log(3))
    result = finetune(model, **data, epochs=3, verbose=0, out_dir=tmp_path / 'ft')
    betas = [r.beta for r in result.history]
    # the EBOPs term at the starting size goes from LOW x to HIGH x the validation loss, log-linearly
    assert betas[0] * ebops0 == pytest.approx(LOW * ref, rel=1e-4)
    assert betas[-1] * ebops0 == pytest.approx(HIGH * ref, rel=1e-4)
    assert betas[1] == pytest.approx(math.sqrt(betas[0] * betas[2]), rel=1e-6)
    assert f'{ref:.4g}/{ebops0}' in result.beta_rule
    report = json.loads((tmp_path / 'ft' / 'report.json').read_text())
    assert report['beta_rule'] == result.beta_rule


def test_auto_beta_floor_and_scale() -> None:
    chance = math.log(10)
    perfect = auto_beta(0.0, 1000, chance)
    assert perfect.beta_min == pytest.approx(LOW * 0.01 * chance / 1000) and 'floor' in perfect.rule
    scaled = auto_beta(0.5, 1000, chance, scale=3.0)
    assert (scaled.beta_min, scaled.beta_max) == pytest.approx((3 * LOW * 0.5 / 1000, 3 * HIGH * 0.5 / 1000))
    assert chance_loss('accuracy', np.eye(10)) == pytest.approx(chance)
    assert beta_at(0, 1, perfect) == perfect.beta_min


def test_schedules_and_budget() -> None:
    assert lr_at(0, 10, 1.0) == pytest.approx(1.0) and lr_at(9, 10, 1.0) == pytest.approx(0.3)
    assert [parse_budget(t) for t in ('90s', '10m', '1.5h', '30')] == [90.0, 600.0, 5400.0, 30.0]
    for bad in ('', '10 minutes', '-3m', '0s', 'm'):
        with pytest.raises(ValueError):
            parse_budget(bad)
    assert planned_epochs(30, None, 2.0) == 30 and planned_epochs(1000, 60.0, 2.0) == 30 and planned_epochs(5, 60.0, 0.1) == 5
    assert planned_epochs(100, 1.0, 10.0) == 1  # never fewer than one more epoch
    assert (auto_batch(630), auto_batch(100), auto_batch(10**6)) == (16, 16, 1024)


def test_three_splits_never_overlap() -> None:
    rows = np.arange(100, dtype=np.float32)[:, None]
    data = {'x': rows[:60], 'y': rows[:60], 'x_val': rows[60:], 'y_val': rows[60:]}
    sp = make_splits(data)
    parts = [set(a.ravel().tolist()) for a in (sp.x, sp.x_val, sp.x_test)]
    assert all(not (a & b) for n, a in enumerate(parts) for b in parts[n + 1 :])
    assert parts[1] | parts[2] == set(range(60, 100)) and sp.sizes() == {'train': 60, 'validation': 20, 'test': 20}
    assert np.array_equal(sp.x_val, sp.y_val) and np.array_equal(sp.x_test, sp.y_test)  # rows stay paired
    assert 'no x_test' in sp.test_source
    given = make_splits({**data, 'x_test': rows[:5] + 1000, 'y_test': rows[:5]})
    assert given.test_source == 'x_test' and np.array_equal(given.x_val, data['x_val'])


def test_scores_name_their_split() -> None:
    y = np.eye(2)[[0, 1, 1, 0]]
    s = score('accuracy', y, y[[0, 1, 0, 0]], 'test')
    assert (s.value, s.n, s.split) == (0.75, 4, 'test') and s.se == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert s.text('accuracy') == '75.00 +- 21.65 % (test, n=4)'


def test_report_names_the_split_of_every_number(toy: tuple) -> None:
    from hgqbridge.finetune import finetune

    model, data = toy
    result = finetune(model, **data, epochs=2, verbose=0)
    assert {k: s.split for k, s in result.scores.items()} == {
        'original_validation': 'validation',
        'original_test': 'test',
        'chosen_validation': 'validation',
        'chosen_test': 'test',
    }
    assert result.splits['validation'] + result.splits['test'] == 200
    assert '(test, n=100)' in result.summary()


def test_refuses_a_model_without_trainable_bit_widths() -> None:
    import keras

    from hgqbridge.errors import HGQBridgeError
    from hgqbridge.start import training_start

    inp = keras.Input((4,))
    plain = keras.Model(inp, keras.layers.Dense(2)(inp), name='plain')
    with pytest.raises(HGQBridgeError, match='no trainable bit widths') as err:
        training_start(plain)
    assert 'no HGQ2 quantizer' in str(err.value) and 'plain' in str(err.value)
