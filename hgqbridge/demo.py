"""``hgqbridge demo``: the whole path on the shipped QKeras jet tagger, ending with a before/after table.

QKeras .h5 --convert--> HGQ2 (verified against QKeras's own outputs) --check/export--> hls4ml + alkaid (verified)
          --finetune--> smaller HGQ2 --check/export--> hls4ml + alkaid (verified). Everything goes into a new folder.
alkaid is da4ml's successor; ``--target da4ml`` still exports for users pinned to da4ml 0.6.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import HGQBridgeError

TARGETS = ('hls4ml:vitis', 'alkaid')
LUT_TARGET = 'alkaid'  # the LUT estimate of the summary: alkaid's cost


def fixtures_dir() -> Path:
    here = Path(__file__).resolve().parents[1] / 'fixtures' / 'qkeras'
    if not (here / 'jet_tagger.h5').exists():
        raise HGQBridgeError(
            'the demo needs the fixtures of a source checkout', where=str(here), fix='run it from the repository (make demo)'
        )
    return here


def _step(n: int, text: str) -> float:
    print(f'\n[{n}/5] {text}', flush=True)
    return time.perf_counter()


def _deploy(model: Any, label: str, out: Path, x: np.ndarray) -> dict[str, Any]:
    from . import check, export

    result: dict[str, Any] = {}
    for target in TARGETS:
        report = check(model, target)
        print(report.to_text())
        exp = export(model, target, out / f'{label}_{target.replace(":", "_")}', x)
        print(exp.to_text())
        result[target] = exp.to_dict()
    return result


def _yes(flags: dict[str, bool]) -> str:
    return 'yes' if flags and all(flags.values()) else 'NO'


def _only(result: dict[str, Any], arrow: str) -> dict[str, bool]:
    flags = result[LUT_TARGET]['bit_exact']
    return {k: v for k, v in flags.items() if k.startswith('RTL') == (arrow == 'RTL')}


def _rtl(result: dict[str, Any]) -> str:
    flags = _only(result, 'RTL')
    return _yes(flags) if flags else 'not run (no verilator)'


def run_demo(out: Path | None, epochs: int) -> int:
    from . import import_model, verify
    from .datafiles import load_data
    from .finetune import finetune, metric_value
    from .inspect import compute_ebops
    from .outputs import output_folder

    out = out or Path(f'demo-out-{time.strftime("%Y%m%d-%H%M%S")}')
    output_folder(out, force=False)
    src = fixtures_dir()
    t_start = time.perf_counter()

    t0 = _step(1, f'Convert the QKeras jet tagger {src / "jet_tagger.h5"} and verify it against QKeras')
    conv = import_model(src / 'jet_tagger.h5')
    print(conv.report.to_text())
    ver = verify(conv, src / 'jet_tagger.golden.npz')
    print(ver.to_text())
    conv.model.save(out / 'jet_tagger_hgq.keras')
    data = load_data(src / 'jet_tagger.data.npz', ('x', 'y', 'x_val', 'y_val'))
    x_export = data['x_val'][:256]
    print(f'({time.perf_counter() - t0:.1f}s)')

    t0 = _step(2, 'Check and export the imported model to hls4ml (Vitis, C simulation) and alkaid')
    before = _deploy(conv.model, 'imported', out, x_export)
    print(f'({time.perf_counter() - t0:.1f}s)')

    t0 = _step(3, f'Fine-tune with heterogeneous bit widths ({epochs} epochs, beta ramped on EBOPs)')
    ft = finetune(
        conv.model,
        data['x'],
        data['y'],
        data['x_val'],
        data['y_val'],
        epochs=epochs,
        beta_min=1e-6,
        beta_max=3e-4,
        learning_rate=3e-3,
        batch_size=64,
        out_dir=out / 'finetune',
    )
    print(f'Pareto front, checkpoints, model.keras and pictures: {out / "finetune"}/')
    print(f'({time.perf_counter() - t0:.1f}s)')

    t0 = _step(4, 'Check and export the fine-tuned model')
    after = _deploy(ft.model, 'finetuned', out, x_export)
    print(f'({time.perf_counter() - t0:.1f}s)')

    _step(5, 'Summary')
    acc = [metric_value('accuracy', data['y_val'], m.predict([data['x_val']], verbose=0)) for m in (conv.model, ft.model)]
    ebops = [sum(compute_ebops(m).values()) for m in (conv.model, ft.model)]
    lut = [r[LUT_TARGET]['estimates']['LUT estimate (alkaid cost)'] for r in (before, after)]
    rows = [
        ('validation accuracy', f'{acc[0]:.4f}', f'{acc[1]:.4f}'),
        ('EBOPs', f'{ebops[0]}', f'{ebops[1]}  ({ebops[0] / max(ebops[1], 1):.1f}x fewer)'),
        ('alkaid LUT estimate', f'{lut[0]:.0f}', f'{lut[1]:.0f}  ({lut[0] / max(lut[1], 1):.1f}x fewer)'),
        ('QKeras -> HGQ2 bit-exact (normal, x4)', 'yes' if ver.bit_exact else 'NO', '(fine-tuned: new model)'),
        (
            'HGQ2 -> hls4ml C sim bit-exact (normal, x4)',
            _yes(before['hls4ml:vitis']['bit_exact']),
            _yes(after['hls4ml:vitis']['bit_exact']),
        ),
        ('HGQ2 -> alkaid emulator bit-exact (normal, x4)', _yes(_only(before, 'emulator')), _yes(_only(after, 'emulator'))),
        ('HGQ2 -> alkaid Verilog (verilator) bit-exact', _rtl(before), _rtl(after)),
    ]
    width = max(len(r[0]) for r in rows)
    table = [f'{"":<{width}}  {"imported (QKeras-exact)":<24}  fine-tuned HGQ2', '-' * (width + 50)]
    table += [f'{a:<{width}}  {b:<24}  {c}' for a, b, c in rows]
    print('\n'.join(table))
    ok = ver.bit_exact and all(_yes(r[t]['bit_exact']) == 'yes' for r in (before, after) for t in TARGETS)
    summary = {
        'rows': [{'what': a, 'imported': b, 'finetuned': c} for a, b, c in rows],
        'all_bit_exact': ok,
        'verify': ver.to_dict(),
        'exports': {'imported': before, 'finetuned': after},
        'finetune': ft.to_dict(),
        'pictures': [str(out / 'finetune' / ft.files['pareto_png']), str(out / 'finetune' / ft.files['bit_widths_png'])],
        'seconds': time.perf_counter() - t_start,
    }
    (out / 'demo_report.json').write_text(json.dumps(summary, indent=2, default=str) + '\n')
    print(
        f'\nEverything is in {out}/ (report: demo_report.json; pictures: finetune/pareto.png, finetune/bit_widths.png); '
        f'{summary["seconds"]:.0f}s in all.'
    )
    return 0 if ok else 1
