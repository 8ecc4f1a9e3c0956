"""The RND_CONV decomposition for da4ml equals HGQ2's own half-to-even quantizer on every input, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from hgqbridge.fixed import FixedFormat


@pytest.mark.parametrize(
    'fmt',
    [
        FixedFormat(1, 2, 3, 'RND_CONV', 'SAT'),
        FixedFormat(1, 1, 2, 'RND_CONV', 'SAT_SYM'),
        FixedFormat(0, 2, 4, 'RND_CONV', 'SAT'),
        FixedFormat(1, 3, 0, 'RND_CONV', 'WRAP'),
        FixedFormat(1, 6, -2, 'RND_CONV', 'SAT'),
        FixedFormat(1, 4, 8, 'RND_CONV', 'SAT'),  # as fine as the input: no rounding at all
    ],
    ids=str,
)
def test_rnd_conv_trace_matches_hgq(fmt: FixedFormat) -> None:
    import keras
    from da4ml.converter import trace_model
    from da4ml.trace import comb_trace
    from hgq.layers import Quantizer

    from hgqbridge.converters.da4ml.rounding import rnd_conv_support
    from hgqbridge.converters.hgq.tensors import quantizer_config

    inp = keras.Input((1,))
    model = keras.Model(inp, Quantizer(quantizer_config(fmt, 'datalane'))(inp))
    x = (np.arange(-(2**12), 2**12) / 2**8).astype(np.float32).reshape(-1, 1)  # every value of kif(1, 4, 8)
    with rnd_conv_support():
        traced = trace_model(model, inputs_kif=(1, 4, 8))
    comb = comb_trace(*traced)
    y_keras = np.asarray(model.predict([x], verbose=0), dtype=np.float64)
    y_da = comb.predict(x.astype(np.float64)).reshape(y_keras.shape)
    assert np.array_equal(y_keras, y_da)
    assert np.array_equal(y_keras.ravel(), fmt.quantize(x.ravel()))


def test_patch_is_scoped() -> None:
    import hgq._dais_tracer.layers._base as base

    from hgqbridge.converters.da4ml.rounding import rnd_conv_support

    before = base.quantize
    with rnd_conv_support():
        assert base.quantize is not before
    assert base.quantize is before
