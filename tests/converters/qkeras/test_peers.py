"""The peers' own QKeras models (fixtures/qkeras_peers: hls4ml 1.3.0's and QKeras's tests, and a sweep over the
quantizer arguments they use), converted as a user would: every one bit-exact, refused with the reason the
manifest expects, or matched to a measured error on tensors the conversion flagged with their cause. A difference
on a tensor the conversion did not flag (a silent mismatch) or a crash fails, on every entry."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import ISAS, ROOT, rerun_reference

from .peers import PEERS, manifest, outcome

MODELS = manifest()['models']
#: One model per class of the issue that brought these fixtures (fast enough for every run); the rest is slow.
FAST = (
    'sweep_layer_maximum_2',  # Keras Maximum between quantized branches: QMaximum
    'sweep_layer_average_3',  # Average of 3: refused (divides by 3)
    'sweep_kernel_quantized_bits_alpha_none_b1',  # 1-bit auto_po2 kernel: QKeras's weights are 0
    'qkeras_qalpha_ternary_auto_1_kernel',  # 'auto' scale: TensorFlow's reduce_mean order
    'qkeras_min_max_quantized_bits_8_0_1',  # +-1e6 inputs: beyond QKeras's exact float32 range, flagged
    'hls4ml_btnn_1',  # raw inputs off the ap_fixed<16,6> grid the HGQ2 model rounds them to: flagged
    'sweep_kernel_quantized_po2_q0_rnd',  # po2 codes 2^-64 (exact) and 2^-128 (a denormal: 0 in TensorFlow)
)


def _check(entry: dict[str, Any]) -> None:
    """The outcome the manifest records. A layer computed in float32 (``float_rounded``) differs from the source
    on one CPU and not on another (fused multiply-adds, summation order), so those layers may come and go; every
    other difference, and every reason, must be the recorded one."""
    float_rounded: set[str] = set()
    got = outcome(entry, float_rounded)
    assert got['outcome'] in ('exact', 'refused', 'measured'), got  # never silent, never a crash
    expected = entry.get('expected')
    if expected is None:
        return
    if expected['outcome'] in ('exact', 'measured') and got['outcome'] in ('exact', 'measured'):
        expected = {'outcome': 'measured', 'layers': expected.get('layers', {})}

        def steady(layers: dict[str, str]) -> dict[str, str]:
            return {name: why for name, why in layers.items() if name not in float_rounded}

        assert steady(got.get('layers', {})) == steady(expected['layers'])
        assert all(expected['layers'].get(name, why) == why for name, why in got.get('layers', {}).items())
        assert got['outcome'] == 'measured' or not steady(expected['layers'])
        return
    assert got == expected


@pytest.mark.parametrize('name', FAST)
def test_a_peer_model_per_class(name: str) -> None:
    entry = next(e for e in MODELS if e['name'] == name)
    assert entry.get('expected'), f'{name}: no expected outcome in the manifest'
    _check(entry)


@pytest.mark.slow
@pytest.mark.parametrize('entry', MODELS, ids=[e['name'] for e in MODELS])
def test_every_peer_model(entry: dict[str, Any]) -> None:
    _check(entry)


@pytest.mark.slow
@pytest.mark.parametrize('isa', ISAS)
def test_peer_goldens_are_what_qkeras_computes_today(isa: str) -> None:
    """Re-run the real QKeras 0.9.0 on committed peer models (its --check), as on three CPUs: the models of hls4ml's
    own QKeras tests (the trained shapes, with the float softmax and batch-norm heads where float32 kernels differ
    between CPUs) on every instruction set, and the argument sweep on this CPU's own. The 355 models of QKeras's
    own test suite are re-checked by `make fixtures-check` (about 20 minutes on 2 cores, more than the suite's
    budget allows): a full re-run per instruction set would take an hour."""
    ref = ROOT / '.qkeras-ref'
    assert (ref / 'qkeras').is_dir(), f'the QKeras reference environment is missing: run `make qkeras-ref` (creates {ref})'
    pattern = '^(hls4ml|sweep)_' if isa == 'DEFAULT' else '^hls4ml_'
    env = {'TF_USE_LEGACY_KERAS': '1', 'PYTHONPATH': str(ref)}
    result = rerun_reference(PEERS / 'make_fixtures.py', env, isa, '--only', pattern, timeout=3600)
    expected = {e['name'] for e in MODELS if re.match(pattern, e['name'])}
    assert set(result['results']) == expected and len(expected) >= 53
