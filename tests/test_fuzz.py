"""Untrusted input: random quantizer strings and configs, and mutated fixture files, only ever end in a
successful conversion or an HGQBridgeError: no other exception, no hang, no file left behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hgqbridge.converters.qkeras.grammar import parse_string
from hgqbridge.converters.qkeras.quantizers import parse_quantizer
from hgqbridge.converters.qkeras.reader import graph_from_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hgqbridge
from hgqbridge.errors import HGQBridgeError, LayerProblem, QuantizerSyntaxError

from .conftest import QKERAS

TOKENS = ['quantized_bits', 'quantized_relu', 'quantized_tanh', 'alpha', '=', '(', ')', ',', '1', '-3', '6', '0.5', 'True', 'None',
          "'auto_po2'", 'nan', '1e999', 'x', ' ', '[', ']', '"', "'"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(TOKENS), max_size=12).map(''.join)))
def test_quantizer_strings(text: str) -> None:
    try:
        parse_string(text)
    except QuantizerSyntaxError:
        pass
    try:
        q = parse_quantizer(text, 'kernel')
        if q is not None:
            q.weight_plan(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), 'kernel')
            q.activation_plan()
    except LayerProblem:
        pass


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10_000), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(['class_name', 'config', 'name']), JSONISH, max_size=3), JSONISH)
def test_model_configs(top: dict, layers: object) -> None:
    config = dict(top)
    if isinstance(config.get('config'), dict):
        config['config'] = {**config['config'], 'layers': layers}
    try:
        graph_from_config(config, {}, Path('fuzz.json'))
    except HGQBridgeError:
        pass


def test_layers_that_do_not_fit_together(tmp_path: Path) -> None:
    """A config whose shapes cannot be built (here: an Add of 4 and 6 features) names the layer, not Keras."""
    config = json.loads((QKERAS / 'branches_1d.json').read_text())
    for layer in config['config']['layers']:
        if layer['config']['name'] == 'conv_b':
            layer['config']['padding'] = 'valid'  # 14 steps instead of 16: the Add cannot take both branches
    (tmp_path / 'm.json').write_text(json.dumps(config))
    with pytest.raises(HGQBridgeError, match=r'branches_1d/add \(Add\).*cannot be built'):
        hgqbridge.import_model(tmp_path / 'm.json', QKERAS / 'branches_1d_weights.h5')
