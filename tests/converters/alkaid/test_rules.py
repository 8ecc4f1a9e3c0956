"""alkaid's rule table is what the installed alkaid and HGQ2's alkaid plugin really do: every class it accepts has a
replay handler in alkaid's live registry, and the rounding/overflow modes it accepts are those alkaid's quantize
takes (RND_CONV natively), the ones it refuses are refused by alkaid too."""

from __future__ import annotations

import numpy as np
import pytest

from hgqbridge.converters.alkaid.rules import HGQ_CLASSES, KERAS_CLASSES, OVERFLOW_MODES, ROUND_MODES


def _registered() -> set[str]:
    import hgq  # noqa: F401  (the hgq layer classes the plugin registers)
    from alkaid.converter._plugin_loader import get_plugins
    from alkaid.converter.builtin.keras.layers._base import _registry

    get_plugins()[('hgq', 'keras')].load()()  # what alkaid's tracer loads on meeting an hgq layer
    return {cls.__name__ for cls in _registry}


#: alkaid's Keras tracer skips input layers (alkaid/converter/builtin/keras/main.py): InputLayer has no handler.
@pytest.mark.parametrize('name', [n for n in (*HGQ_CLASSES, *KERAS_CLASSES) if n != 'InputLayer'])
def test_every_accepted_class_has_an_alkaid_handler(name: str) -> None:
    assert name in _registered()


@pytest.mark.parametrize('overflow', OVERFLOW_MODES)
@pytest.mark.parametrize('round_mode', ROUND_MODES)
@pytest.mark.parametrize('kif', [(1, 2, 3), (0, 2, 4), (1, 6, -2)])
def test_alkaid_quantizes_every_accepted_mode_natively(kif: tuple, round_mode: str, overflow: str) -> None:
    """alkaid's traced HGQ2 Quantizer equals HGQ2 on every value of kif(1, 4, 8), ties included, with no
    emulation (da4ml 0.6 needs converters/da4ml/rounding.py for RND_CONV)."""
    import keras
    from alkaid.converter import trace_model
    from alkaid.trace import trace
    from hgq.layers import Quantizer

    from hgqbridge.converters.hgq.tensors import quantizer_config
    from hgqbridge.fixed import FixedFormat

    fmt = FixedFormat(*kif, round_mode, overflow)
    inp = keras.Input((1,))
    model = keras.Model(inp, Quantizer(quantizer_config(fmt, 'datalane'))(inp))
    x = (np.arange(-(2**12), 2**12) / 2**8).astype(np.float32).reshape(-1, 1)
    comb = trace(*trace_model(model, inputs_kif=(1, 4, 8)))
    y_keras = np.asarray(model.predict([x], verbose=0), dtype=np.float64)
    y_alkaid = comb.predict(x.astype(np.float64), n_threads=1).reshape(y_keras.shape)
    assert np.array_equal(y_keras, y_alkaid)
    assert np.array_equal(y_keras.ravel(), fmt.quantize(x.ravel()))


@pytest.mark.parametrize('mode', [('S_RND', 'WRAP'), ('RND_CONV', 'SAT_WEIRD'), ('S_RND_CONV', 'SAT')])
def test_alkaid_refuses_what_the_table_refuses(mode: tuple[str, str]) -> None:
    from alkaid.trace import FVariable

    v = FVariable(low=-4.0, high=3.875, step=0.125)
    with pytest.raises(AssertionError):
        v.quantize(1, 2, 2, overflow_mode=mode[1], round_mode=mode[0])


@pytest.mark.parametrize(
    ('shape', 'layer', 'areas'),
    [
        ((6, 6, 2), {'pool_size': 3}, (9,)),
        ((6, 6, 2), {'pool_size': 2}, (4,)),
        ((5, 5, 2), {'pool_size': 2, 'padding': 'same'}, (1, 2, 4)),  # 'same' edge windows cover fewer cells
        ((7, 2), {'pool_size': 4, 'padding': 'same'}, (3, 4)),
        ((6, 2), None, (6,)),  # global: every position
    ],
)
def test_pool_areas_are_the_cell_counts_keras_divides_by(shape: tuple, layer: dict | None, areas: tuple) -> None:
    """The facts behind the pool-area rule: Keras averages 'same' windows over their cells inside the input."""
    import keras

    from hgqbridge.converters.deploy.float32 import pool_areas

    inp = keras.Input(shape)
    if layer is None:
        pool = keras.layers.GlobalAveragePooling1D()
    else:
        pool = (keras.layers.AveragePooling2D if len(shape) == 3 else keras.layers.AveragePooling1D)(**layer)
    out = pool(inp)
    assert pool_areas(pool) == areas
    x = np.ones((1, *shape), dtype=np.float32)
    assert np.all(np.asarray(keras.Model(inp, out)(x)) == 1.0)  # ones average to one: padding is not counted
