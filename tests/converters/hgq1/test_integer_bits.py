"""The integer bits a saved HGQ1 model does not hold: traced on calibration data with cover_factor 1 they are
exactly the widths HGQ1's own to_proxy_model gave the same model (trace_minmax on the same data), element by
element; by interval propagation they cover every input in the input format's range."""

from __future__ import annotations

import numpy as np
import pytest

from hgqbridge.converters import normalize, read
from hgqbridge.converters.hgq1.integer_bits import calibrated, prepare, saved_handler
from hgqbridge.errors import UnsupportedError
from hgqbridge.fixed import FixedFormat
from hgqbridge.limits import Limits

from ...conftest import ROOT

HGQ1 = ROOT / 'fixtures' / 'hgq1'


def _graphs(name: str) -> tuple:
    graph, source = read(HGQ1 / f'{name}.h5')
    proxy, _ = read(HGQ1 / f'{name}.proxy.h5')
    return normalize(graph, source, False), source.registries, proxy


def _proxy_quantizer(proxy: object, name: str) -> tuple[np.ndarray, ...]:
    """The proxy's per-element quantizer of a saved layer: after the relu for a relu layer (HGQ2 quantizes after
    it too), else the layer's own; (keep_negative, bits, integers)."""
    names = {layer.name: layer for layer in proxy}  # type: ignore[attr-defined]
    layer = next(names[n] for n in (f'{name}_relu_quantizer', f'{name}_quantizer', name) if n in names)
    assert layer.class_name.endswith('FixedPointQuantizer')
    return tuple(np.asarray(layer.weight(w)).astype(np.int64) for w in ('keep_negative', 'bits', 'integers'))


@pytest.mark.parametrize('name', ['dense_het', 'dense_raw', 'conv1d', 'branches'])
def test_traced_integer_bits_are_hgq1s_proxy_widths(name: str) -> None:
    graph, registries, proxy = _graphs(name)
    with np.load(HGQ1 / f'{name}.data.npz') as data:
        x = data['x']
    traced = calibrated(graph, registries, x, 1.0)
    checked = 0
    for layer in traced:
        handler = saved_handler(layer)
        if handler is None or handler.activation is None:
            continue
        f = handler.activation(layer).f
        k, i = layer.derived['k'], layer.derived['i']
        pk, bits, integers = _proxy_quantizer(proxy, layer.name)
        live = bits > 0
        assert np.array_equal(k[live], pk[live]) and np.array_equal((k + i)[live], integers[live]), layer.name
        assert np.all((k + i + f)[~live] == 0), layer.name  # pruned in the proxy: width 0 here
        checked += int(live.sum())
    assert checked > 80


def test_propagated_integer_bits_cover_the_input_range() -> None:
    """dense_raw from ap_ufixed<8,8> inputs (0..255): wider than the traced bits, never narrower."""
    graph, registries, _ = _graphs('dense_raw')
    with np.load(HGQ1 / 'dense_raw.data.npz') as data:
        x = data['x']
    wide = {layer.name: layer.derived for layer in prepare(graph, registries, FixedFormat(0, 8, 0), None, Limits())}
    tight = {layer.name: layer.derived for layer in calibrated(graph, registries, x, 1.0)}
    for name, bits in tight.items():
        if bits:
            assert np.all(wide[name]['i'] + wide[name]['k'] >= bits['i'] + bits['k']), name
    assert any(np.any(wide[n]['i'] > bits['i']) for n, bits in tight.items() if bits)


def test_a_layer_without_a_range_rule_is_listed() -> None:
    """A plain Keras layer inside a saved HGQ1 model: its range is unknown, so the integer bits cannot be derived."""
    from dataclasses import replace

    graph, registries, _ = _graphs('dense_raw')
    layers = [replace(layer, class_name='Dense') if layer.name == 'd2' else layer for layer in graph]
    with pytest.raises(UnsupportedError, match='cannot be derived') as info:
        prepare(replace(graph, layers=layers), registries, None, None, Limits())
    assert [p.layer.split('/')[-1] for p in info.value.problems] == ['d2 (Dense)']
