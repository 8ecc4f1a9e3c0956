"""The outcome of converting one fixtures/qkeras_peers model as a user would (import, then verify against QKeras's
own golden outputs): what tests/converters/qkeras/test_peers.py compares with the manifest's ``expected``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PEERS = Path(__file__).resolve().parents[3] / 'fixtures' / 'qkeras_peers'


def manifest() -> dict[str, Any]:
    return json.loads((PEERS / 'manifest.json').read_text())


def outcome(entry: dict[str, Any], float_rounded: set[str] | None = None) -> dict[str, Any]:
    """``{'outcome': 'exact'}``, ``{'outcome': 'refused', 'message': ...}`` or ``{'outcome': 'measured', 'layers':
    {layer: reason}}`` (every difference is on a tensor the conversion flagged, with its reason); a difference on a
    tensor the conversion did not flag is ``{'outcome': 'silent', 'layers': [...]}``. ``float_rounded`` receives
    the layers whose value is float32 arithmetic (float softmax or weights, non-power-of-two batch-norm scales, and
    what is computed from them): whether they differ from the source depends on the CPU's rounding."""
    import hgqbridge
    from hgqbridge.errors import HGQBridgeError
    from hgqbridge.verify import _inexact_downstream

    try:
        conv = hgqbridge.import_model(PEERS / entry['files'][0])
    except HGQBridgeError as err:
        return {'outcome': 'refused', 'message': str(err).replace(f'{PEERS}/', '')}
    if float_rounded is not None:
        float_rounded.update(_inexact_downstream(conv))
    rep = hgqbridge.verify(conv, PEERS / entry['golden'])
    matches = [m for ms in rep.results.values() for m in ms]
    silent = sorted({m.layer for m in matches if m.exact_required and m.mismatches})
    if silent or not matches or rep.missing:
        return {'outcome': 'silent', 'layers': silent, 'missing': rep.missing, 'compared': len(matches)}
    flagged = {m.layer: m.reason for m in matches if m.mismatches}
    return {'outcome': 'measured', 'layers': dict(sorted(flagged.items()))} if flagged else {'outcome': 'exact'}


def record(outcomes: dict[str, dict[str, Any]]) -> None:
    """Store measured outcomes as the manifest entries' ``expected`` (make_fixtures.py keeps them when it rewrites)."""
    data = manifest()
    for e in data['models']:
        if e['name'] in outcomes and outcomes[e['name']]['outcome'] in ('exact', 'refused', 'measured'):
            e['expected'] = outcomes[e['name']]
    (PEERS / 'manifest.json').write_text(json.dumps(data, indent=1, default=str) + '\n')


def main(argv: list[str]) -> None:
    """``python -m tests.converters.qkeras.peers [--record] [REGEX]``: each outcome as a JSON line."""
    import re

    args = [a for a in argv if a != '--record']
    seen = {}
    for e in manifest()['models']:
        if re.search(args[0] if args else '', e['name']):
            try:
                result = outcome(e)
            except Exception as err:  # a crash is an outcome to report
                result = {'outcome': 'crash', 'message': f'{type(err).__name__}: {err}'[:500]}
            seen[e['name']] = result
            print(json.dumps({'name': e['name'], **result}), flush=True)
    if '--record' in argv:
        record(seen)


if __name__ == '__main__':
    import sys

    main(sys.argv[1:])
