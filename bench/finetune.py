"""Benchmark: imported QKeras model vs HGQ2 fine-tuned model, on the fixtures' data (sklearn digits, real; and a
documented synthetic jet-like task).

Run by hand or with ``make bench`` (``--lut da4ml``: da4ml 0.6's LUT estimate instead of alkaid's). Prints a table
and writes bench/results/finetune.json with the machine's details. Not a test: numbers depend on the machine and on
training noise.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / 'fixtures' / 'qkeras'
#: (fixture, fine-tuning epochs). jet_tagger: the tutorial shape on 2x2-pooled digits 0-4 (real data);
#: jet_synthetic: the same shape on the synthetic jet-like task of make_fixtures.py; digits_*: sklearn digits.
CASES = [('jet_tagger', 60), ('jet_synthetic', 60), ('digits_mlp', 60), ('digits_cnn', 40)]


def machine() -> dict:
    import hgq
    import keras

    return {
        'python': sys.version.split()[0],
        'platform': platform.platform(),
        'processor': platform.processor() or platform.machine(),
        'cpus': os.cpu_count(),
        'keras': keras.__version__,
        'hgq2': getattr(hgq, '__version__', '?'),
    }


#: The tool whose traced logic gives the LUT and latency estimates (alkaid: ns; da4ml: adder depth).
LUT_TOOLS = ('alkaid', 'da4ml')


def run_case(name: str, epochs: int, tool: str = 'alkaid') -> dict:
    import importlib

    import numpy as np

    import hgqbridge
    from hgqbridge.converters.deploy import firmware
    from hgqbridge.errors import HGQBridgeError

    data = dict(np.load(FIXTURES / f'{name}.data.npz'))
    model = hgqbridge.convert(FIXTURES / f'{name}.h5')
    t0 = time.perf_counter()
    result = hgqbridge.finetune(
        model,
        data['x'],
        data['y'],
        data['x_val'],
        data['y_val'],
        epochs=epochs,
        beta_min=1e-6,
        beta_max=3e-4,
        learning_rate=3e-3,
        verbose=0,
    )
    seconds = time.perf_counter() - t0
    trace = importlib.import_module(f'hgqbridge.converters.{tool}.export').trace
    row = {'model': name, 'epochs': epochs, 'train_seconds': round(seconds, 1), 'lut_tool': tool}
    chosen_metric = result.chosen.val_metric if result.chosen else result.baseline_metric
    for label, m, acc, ebops in (
        ('qkeras', model, result.baseline_metric, result.baseline_ebops),
        ('hgq2', result.model, chosen_metric, None),
    ):
        inputs = firmware.prepare(m, data['x_val'][:64])
        e = firmware.calibrate(inputs.core, inputs)
        row[f'{label}_val_accuracy'] = round(float(acc), 4)
        row[f'{label}_ebops'] = int(ebops if ebops is not None else e)
        try:
            comb = trace(inputs.core, inputs)
            row[f'{label}_lut'] = float(comb.cost)
            row[f'{label}_latency'] = [float(v) for v in comb.latency]
        except HGQBridgeError as err:  # e.g. a layer the tool does not deploy
            row[f'{label}_lut'] = row[f'{label}_latency'] = None
            row['note'] = f'no {tool} estimate: {err.received}'
    row['ebops_ratio'] = round(row['qkeras_ebops'] / max(row['hgq2_ebops'], 1), 2)
    row['lut_ratio'] = round(row['qkeras_lut'] / max(row['hgq2_lut'], 1), 2) if row['qkeras_lut'] else None
    row['accuracy_change_pp'] = round(100 * (row['hgq2_val_accuracy'] - row['qkeras_val_accuracy']), 2)
    return row


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description='imported QKeras vs fine-tuned HGQ2 models: accuracy, EBOPs, LUTs')
    parser.add_argument('--lut', choices=LUT_TOOLS, default='alkaid', help='the LUT/latency estimate: alkaid (default) or da4ml')
    tool = parser.parse_args(argv).lut
    rows = [run_case(name, epochs, tool) for name, epochs in CASES]
    cols = [
        'model',
        'qkeras_val_accuracy',
        'hgq2_val_accuracy',
        'accuracy_change_pp',
        'qkeras_ebops',
        'hgq2_ebops',
        'ebops_ratio',
        'qkeras_lut',
        'hgq2_lut',
        'lut_ratio',
        'hgq2_latency',
        'lut_tool',
        'train_seconds',
    ]
    print(' | '.join(cols))
    for row in rows:
        print(' | '.join(str(row[c]) for c in cols) + (f'   ({row["note"]})' if 'note' in row else ''))
    out = ROOT / 'bench' / 'results'
    out.mkdir(parents=True, exist_ok=True)
    (out / 'finetune.json').write_text(json.dumps({'machine': machine(), 'rows': rows}, indent=2) + '\n')
    print(f'wrote {out / "finetune.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
