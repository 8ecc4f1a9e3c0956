"""Print how long each step of ``make test`` took (.timings/steps.tsv) and each test group inside pytest
(.timings/pytest.json, written by tests/conftest.py)."""

import json
import sys
from pathlib import Path

root = Path(__file__).resolve().parents[1] / '.timings'
rows = [line.split('\t') for line in (root / 'steps.tsv').read_text().splitlines() if line.strip()]
groups = json.loads((root / 'pytest.json').read_text()) if (root / 'pytest.json').is_file() else {}
print('\nmake test: where the time went')
for name, seconds, status in rows:
    print(f'  {name:<34} {float(seconds) / 60:6.1f} min' + ('' if status == '0' else f'   (exit {status})'))
    if name == 'pytest' and groups:
        for group, secs in sorted(groups.items(), key=lambda kv: -kv[1]):
            print(f'    {group:<32} {secs / 60:6.1f} min')
print(f'  {"total":<34} {sum(float(r[1]) for r in rows) / 60:6.1f} min')
sys.exit(0)
