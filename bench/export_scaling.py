"""Benchmark: how an export's time and memory grow with the model, phase by phase, bridge against target.

Float Keras models of growing size (dense; Conv1D and Conv2D with growing kernels and channels) are converted
with calibration to 8 bits (as a new user would), checked, and exported with each target through hgqbridge; next
to each, the same target is driven directly through its own API on the same quantized model (da4ml: HGQ2's tracer
+ comb_trace + predict + its Verilog; alkaid: alkaid's Keras tracer + trace + predict + its projects; hls4ml:
convert_from_keras_model + compile + predict; with -rtl, the Verilog verilated and run) and the Keras model's
predict. hls4ml io_stream takes one format per activation tensor, so its models are converted with
``uniform_activations``. alkaid's direct run writes the three flavours the bridge writes (Verilog, VHDL, Vitis
HLS), as ``alkaid convert`` does one per call. The bridge's overhead is the ratio of the two; each phase's growth
exponent is fitted against the multiplications the firmware unrolls (converters/deploy/cost.py), and so is the fit
that ``check`` quotes (``cost.FITS``).

    .venv/bin/python bench/export_scaling.py            # default sizes: a few minutes on 2 cores
    .venv/bin/python bench/export_scaling.py --large    # also the big ones (hours with da4ml)
    .venv/bin/python bench/export_scaling.py --targets da4ml,da4ml-rtl,alkaid,alkaid-rtl,vitis,vitis-stream,vitis-resource
    .venv/bin/python bench/export_scaling.py --large --max-multiplications 40000 --hls-max-multiplications 3300
    .venv/bin/python bench/export_scaling.py --update --targets vitis-stream   # re-measure some, keep the other rows

Prints a table, writes bench/results/export_scaling.json (with the machine's details and load) and
export_scaling.png. Times are wall seconds and CPU seconds (this process and the compilers it runs): on a shared
machine wall time includes waiting for a core, CPU time does not. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine  # bench/machine.py (a script's folder is on its path)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = Path(__file__).resolve().parents[1]
#: (name, kind, spec). dense: layer widths, input first; conv1d: (length, channels, kernel, filters, layers);
#: conv2d: (side, channels, kernel, filters, layers). Every model ends in Flatten, Dense(5).
DEFAULT = [
    ('dense 16x16x8x5', 'dense', (16, 16, 8, 5)),
    ('dense 16x32x16x5', 'dense', (16, 32, 16, 5)),
    ('dense 16x64x32x5', 'dense', (16, 64, 32, 5)),
    ('conv1d 8x3 k3 f4', 'conv1d', (8, 3, 3, 4, 1)),
    ('conv1d 12x3 k5 f8', 'conv1d', (12, 3, 5, 8, 1)),
    ('conv2d 5x5x2 k3 f4', 'conv2d', (5, 2, 3, 4, 1)),
]
LARGE = [
    ('dense 16x128x64x5', 'dense', (16, 128, 64, 5)),
    ('dense 16x256x128x5', 'dense', (16, 256, 128, 5)),
    ('dense 16x500x500x500x500x500x5', 'dense', (16, 500, 500, 500, 500, 500, 5)),
    ('conv1d 32x7 k9 f16 x2', 'conv1d', (32, 7, 9, 16, 2)),
    ('conv2d 10x10x3 k3 f16 x2', 'conv2d', (10, 3, 3, 16, 2)),
    ('issue #21: conv1d 100x7 k40 f32 x3, dense 50', 'conv1d', (100, 7, 40, 32, 3)),
]
#: name -> (hgqbridge target text, options, runs on the default sizes)
TARGETS: dict[str, tuple[str, dict[str, Any], bool]] = {
    'da4ml': ('da4ml', {'rtl': False}, True),
    'da4ml-rtl': ('da4ml', {'rtl': True}, False),
    'alkaid': ('alkaid', {'rtl': False}, True),
    'alkaid-rtl': ('alkaid', {'rtl': True}, False),
    'vitis': ('hls4ml:vitis', {}, True),
    'vitis-stream': ('hls4ml:vitis', {'io_type': 'io_stream'}, False),
    'vitis-resource': ('hls4ml:vitis', {'strategy': 'resource', 'reuse_factor': 4}, False),
}
#: hls4ml compiles take a minute each on 2 shared cores: by default only models up to this many multiplications
#: (the two smallest dense ones; ``--hls-max-multiplications``).
HLS_MAX_MULTIPLICATIONS = 1104
#: The issue's phases, from the progress records of converters/deploy/progress.py.
PHASES = {
    'convert': ('convert model',),
    'check': ('check',),
    'trace/compile': ('prepare', 'calibrate', 'trace', 'combine', 'convert', 'compile', 'write'),
    'emulate/C-sim': ('compare normal',),
    'stress proof': ('compare stress',),
    'RTL simulation': ('verilate', 'compare RTL normal', 'compare RTL stress'),
}


def build(kind: str, spec: tuple[int, ...]) -> Any:
    import keras

    if kind == 'dense':
        inp = keras.Input((spec[0],))
        h = inp
        for width in spec[1:-1]:
            h = keras.layers.Dense(width, activation='relu')(h)
        return keras.Model(inp, keras.layers.Dense(spec[-1])(h))
    side, channels, kernel, filters, layers = spec
    conv = keras.layers.Conv1D if kind == 'conv1d' else keras.layers.Conv2D
    inp = keras.Input((side, channels) if kind == 'conv1d' else (side, side, channels))
    h = inp
    for _ in range(layers):
        h = conv(filters, kernel, padding='same', activation='relu')(h)
    h = keras.layers.Flatten()(h)
    if side >= 100:  # the model
        h = keras.layers.Dense(50, activation='relu')(h)
    return keras.Model(inp, keras.layers.Dense(5)(h))


def float_multiplications(model: Any) -> int:
    """Multiplications the firmware will unroll, from the float model (kernel size x output positions), before any
    conversion: what ``--max-multiplications`` compares."""
    import numpy as np

    total = 0
    for layer in model.layers:
        kernel = getattr(layer, 'kernel', None)
        if kernel is not None:
            positions = int(np.prod(layer.output.shape[1:-1])) if len(layer.output.shape) > 2 else 1
            total += int(np.prod(kernel.shape)) * positions
    return total


def direct(core: Any, target: str, options: dict, x: Any, out: Path) -> None:
    """The target driven through its own API on the same (calibrated, quantized) model, on the normal inputs, writing
    one project (da4ml: the Verilog; hls4ml: its project, as compile does)."""
    import numpy as np

    from hgqbridge.converters.deploy import firmware

    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if target == 'da4ml':
        from da4ml.converter import trace_model
        from da4ml.trace import comb_trace

        port = firmware.input_port_format(core)
        assert port is not None
        from da4ml.codegen import RTLModel

        comb = comb_trace(*trace_model(core, inputs_kif=(port.k, port.i, port.f)))
        comb.predict(flat)
        RTLModel(comb, 'direct', out / 'verilog', flavor='verilog', print_latency=False).write()
        if options.get('rtl'):
            from hgqbridge.converters.da4ml.rtl import compile_rtl, verilator_env

            env = verilator_env()
            if env is not None:
                compile_rtl(comb, 'direct', out / 'verilog', env).predict(flat)
    elif target == 'alkaid':
        from alkaid.codegen import HLSModel, RTLModel
        from alkaid.converter import trace_model as alkaid_model
        from alkaid.trace import trace as alkaid_trace

        from hgqbridge.converters.alkaid.export import CLOCK_NS, LATENCY_CUTOFF_NS

        port = firmware.input_port_format(core)
        assert port is not None
        comb = alkaid_trace(*alkaid_model(core, inputs_kif=(port.k, port.i, port.f)))
        comb.predict(flat, n_threads=1)
        common = {'clock_period': CLOCK_NS, 'print_latency': False}
        rtl = RTLModel(comb, out / 'verilog', 'direct', flavor='verilog', latency_cutoff=LATENCY_CUTOFF_NS, **common)
        rtl.write()  # and the two other flavours the bridge writes, as ``alkaid convert`` writes each
        RTLModel(comb, out / 'vhdl', 'direct', flavor='vhdl', latency_cutoff=LATENCY_CUTOFF_NS, **common).write()
        HLSModel(comb, out / 'hls', 'direct', flavor='vitis', **common).write()
        if options.get('rtl'):
            from hgqbridge.converters.alkaid.rtl import compile_rtl as alkaid_compile
            from hgqbridge.converters.alkaid.rtl import verilator_env as alkaid_env

            env = alkaid_env()
            if env is not None:
                alkaid_compile(rtl, env).predict(flat, n_threads=1)
    else:
        import contextlib
        import io

        import hls4ml

        config = {'Model': {'Precision': 'ap_fixed<1,0>', 'ReuseFactor': options.get('reuse_factor', 1)}}
        config['Model']['Strategy'] = str(options.get('strategy', 'latency')).capitalize()
        with contextlib.redirect_stdout(io.StringIO()):
            hls = hls4ml.converters.convert_from_keras_model(
                core, output_dir=str(out), backend='Vitis', io_type=options.get('io_type', 'io_parallel'), hls_config=config
            )
            hls.compile()
        hls.predict(np.ascontiguousarray(flat))
    core.predict(np.asarray(x), batch_size=len(x), verbose=0)


def run_case(name: str, kind: str, spec: tuple, targets: list[str], tmp: Path, hls_max: int) -> list[dict]:
    import numpy as np

    import hgqbridge
    from hgqbridge.converters.deploy import cost, firmware
    from hgqbridge.converters.deploy.facts import layer_facts
    from hgqbridge.converters.deploy.progress import Progress, active, rss_mib

    float_model = build(kind, spec)
    x = np.random.default_rng(0).normal(size=(64, *float_model.inputs[0].shape[1:])).astype(np.float32)
    float_model.save(tmp / 'model.keras')
    converted: dict[bool, Any] = {}  # uniform activations (io_stream takes only those) -> (model, its convert record)

    def convert(uniform: bool) -> tuple[Any, Any]:
        if uniform not in converted:
            progress = Progress('bench', None)
            with active(progress), progress.phase('convert model'):
                quantized = hgqbridge.convert(tmp / 'model.keras', bits=8, calibration={'x': x}, uniform_activations=uniform)
            converted[uniform] = quantized, progress.records[-1]
        return converted[uniform]

    m = cost.multiplications(layer_facts(convert(False)[0]))
    weights = int(sum(np.prod(w.shape) for w in float_model.get_weights()))
    rows = []
    for tname in targets:
        text, options, _ = TARGETS[tname]
        if text.startswith('hls4ml') and m > hls_max:
            continue
        model, convert_record = convert(options.get('io_type') == 'io_stream')
        progress = Progress('bench', None)
        before = rss_mib()
        try:
            with active(progress):
                with progress.phase('check'):
                    hgqbridge.check(model, text, **options)
                report = hgqbridge.export(model, text, tmp / f'prj_{tname}', x, **options)
        except hgqbridge.HGQBridgeError as err:  # check refused the model for this target: a row that says why
            rows.append({'model': name, 'target': tname, 'multiplications': m, 'refused': str(err).splitlines()[-1].strip()})
            print(f'{name:<34} {tname:<15} {m:>10,} refused: {rows[-1]["refused"]}', flush=True)
            continue
        bridge = {r.name: r for r in [convert_record, *progress.records]}
        direct_progress = Progress('bench', None)
        inputs = firmware.prepare(model, x)
        firmware.calibrate(inputs.core, inputs)
        with active(direct_progress), direct_progress.phase('direct'):
            direct(inputs.core, text, options, inputs.sets['normal'], tmp / f'direct_{tname}')
        d = direct_progress.records[-1]
        phases = {p: round(sum(bridge[n].cpu_seconds for n in names if n in bridge), 3) for p, names in PHASES.items()}
        export_names = [n for names in list(PHASES.values())[2:] for n in names if n in bridge]
        export_wall = sum(bridge[n].seconds for n in export_names)
        export_cpu = sum(bridge[n].cpu_seconds for n in export_names)
        rows.append(
            {
                'model': name,
                'target': tname,
                'multiplications': m,
                'weights': weights,
                'bit_exact': report.ok,
                'export wall s': round(export_wall, 2),
                'export cpu s': round(export_cpu, 2),
                'export peak MiB': round(max(bridge[n].peak_mib for n in export_names), 1),
                'export memory growth MiB': round(max(bridge[n].peak_mib for n in export_names) - before, 1),
                'memory before export MiB': round(before, 1),
                'direct wall s': round(d.seconds, 2),
                'direct cpu s': round(d.cpu_seconds, 2),
                'overhead (cpu ratio)': round(export_cpu / max(d.cpu_seconds, 1e-9), 2),
                'phases cpu s': phases,
                'bridge phases': {
                    n: [round(r.seconds, 3), round(r.cpu_seconds, 3), round(r.peak_mib, 1)] for n, r in bridge.items()
                },
            }
        )
        print(_row_text(rows[-1]), flush=True)
        for folder in (tmp / f'prj_{tname}', tmp / f'direct_{tname}'):
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def _row_text(row: dict) -> str:
    return (
        f'{row["model"]:<34} {row["target"]:<15} {row["multiplications"]:>10,} {row["export wall s"]:>9.1f} '
        f'{row["export cpu s"]:>9.1f} {row["direct cpu s"]:>9.1f} {row["overhead (cpu ratio)"]:>6.2f} '
        f'{row["export peak MiB"]:>8.0f} {"yes" if row["bit_exact"] else "NO":>5}'
    )


def fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares of log y = log a + b log x: (a, b), or None with fewer than two distinct sizes."""
    import numpy as np

    pts = [(x, y) for x, y in points if x > 0 and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    b, la = np.polyfit(lx, ly, 1)
    return float(np.exp(la)), float(b)


def fits(rows: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for tname in sorted({r['target'] for r in rows}):
        mine = [r for r in rows if r['target'] == tname]
        entry: dict[str, Any] = {'models': len(mine), 'largest multiplications': max(r['multiplications'] for r in mine)}
        for label, key in (
            ('export cpu s', 'export cpu s'),
            ('direct cpu s', 'direct cpu s'),
            ('memory growth MiB', 'export memory growth MiB'),
        ):
            ab = fit([(r['multiplications'], r[key]) for r in mine])
            entry[label] = None if ab is None else {'a': ab[0], 'b': ab[1]}
        entry['phase exponents'] = {}
        for phase in PHASES:
            ab = fit([(r['multiplications'], r['phases cpu s'][phase]) for r in mine])
            entry['phase exponents'][phase] = None if ab is None else round(ab[1], 2)
        entry['cost fit'] = cost_fit(mine)
        out[tname] = entry
    return out


def cost_fit(rows: list[dict]) -> dict | None:
    """The numbers for converters/deploy/cost.py FITS: seconds = fixed + a * M ** b, where a, b fit the phase that
    grows (trace/compile) and ``fixed`` is the mean of the rest of the export; peak MiB = base + d * M ** e."""
    import numpy as np

    rtl = any(r['phases cpu s']['RTL simulation'] > 0 for r in rows)  # verilator grows too: fit the whole export
    growing = [r['export cpu s'] if rtl else r['phases cpu s']['trace/compile'] for r in rows]
    grow = fit([(r['multiplications'], y) for r, y in zip(rows, growing)])
    memory = fit([(r['multiplications'], r['export memory growth MiB']) for r in rows])
    if grow is None or memory is None:
        return None
    rest = [0.0 if rtl else r['export cpu s'] - r['phases cpu s']['trace/compile'] for r in rows]
    if memory[1] <= 0:  # memory does not grow over these sizes: a constant, the median growth
        memory = (float(np.median([max(r['export memory growth MiB'], 0.0) for r in rows])), 0.0)
    return {
        'fixed': round(float(np.mean(rest)), 3),
        'a': float(f'{grow[0]:.4g}'),
        'b': round(grow[1], 3),
        'base': round(float(np.median([r['memory before export MiB'] for r in rows])), 1),
        'd': float(f'{memory[0]:.4g}'),
        'e': round(memory[1], 3),
        'largest': max(r['multiplications'] for r in rows),
        'growth_measured': grow[1] > 0.1,
    }


def document(earlier: dict | None, run: dict, rows: list[dict]) -> dict:
    """The JSON: this run's rows and, from ``earlier`` (a document this script wrote), the rows of the (model,
    target) pairs not measured now; each row's ``run`` indexes ``runs`` (machine and command); fits over all."""
    old: dict = earlier or {'rows': []}
    runs = old.get('runs') or ([{'machine': old['machine'], 'command': old['command']}] if 'machine' in old else [])
    now = {(r['model'], r['target']) for r in rows}
    kept = [{**r, 'run': r.get('run', 0)} for r in old['rows'] if (r['model'], r['target']) not in now]
    merged = kept + [{**r, 'run': len(runs)} for r in rows]
    fitted = fits([r for r in merged if 'refused' not in r])
    return {**run, 'runs': [*runs, run], 'rows': merged, 'fits': fitted}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for i, tname in enumerate(sorted({r['target'] for r in rows})):
        mine = sorted((r for r in rows if r['target'] == tname), key=lambda r: r['multiplications'])
        ms = [r['multiplications'] for r in mine]
        c = colours[i % len(colours)]
        axes[0].plot(ms, [r['export cpu s'] for r in mine], 'o-', color=c, label=f'{tname}: hgqbridge export')
        axes[0].plot(ms, [r['direct cpu s'] for r in mine], 's--', color=c, mfc='none', label=f'{tname}: target API directly')
        axes[1].plot(ms, [r['export peak MiB'] for r in mine], 'o:', color=c, label=f'{tname}: hgqbridge export')
    for ax, ylabel in zip(axes, ('CPU seconds (process + compilers)', 'peak resident memory of the process (MiB)')):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('multiplications unrolled (fan-in x outputs x positions, summed over layers)')
        ax.set_ylabel(ylabel)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: hides no point
    axes[0].set_title('export time against model size')
    axes[1].set_title('export peak memory against model size')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--large', action='store_true', help='also the large models (hours with da4ml on 2 cores)')
    p.add_argument('--targets', help=f'comma-separated, from {", ".join(TARGETS)} (default: the ones marked default)')
    p.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results')
    p.add_argument('--only', help='run only the models whose name contains this text')
    p.add_argument('--max-multiplications', type=int, help='skip the models that unroll more multiplications than this')
    p.add_argument(
        '--hls-max-multiplications',
        type=int,
        default=HLS_MAX_MULTIPLICATIONS,
        help=f'run the hls4ml targets only on models up to this many multiplications (default {HLS_MAX_MULTIPLICATIONS})',
    )
    p.add_argument('--replot', type=Path, metavar='JSON', help='only redraw the PNG of an earlier run (no measuring)')
    p.add_argument(
        '--update',
        action='store_true',
        help="keep the earlier run's rows of the (model, target) pairs not measured now; every row names its run",
    )
    a = p.parse_args()
    if a.replot:
        plot([r for r in json.loads(a.replot.read_text())['rows'] if 'refused' not in r], a.replot.with_suffix('.png'))
        return 0
    targets = a.targets.split(',') if a.targets else [t for t, (_, _, on) in TARGETS.items() if on]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        p.error(f'unknown target(s) {unknown}; use {", ".join(TARGETS)}')
    info = machine('keras', 'hgq', 'da4ml', 'alkaid', 'hls4ml')
    cases = [c for c in DEFAULT + (LARGE if a.large else []) if a.only is None or a.only in c[0]]
    print(
        f'{"model":<34} {"target":<15} {"mults":>10} {"wall s":>9} {"cpu s":>9} {"direct":>9} {"ratio":>6} {"peak MiB":>8} exact'
    )
    rows: list[dict] = []
    t0 = time.perf_counter()
    path = a.out / 'export_scaling.json'
    earlier = json.loads(path.read_text()) if a.update and path.is_file() else None
    a.out.mkdir(parents=True, exist_ok=True)
    doc = document(earlier, {'machine': info, 'command': ' '.join(sys.argv)}, rows)
    with tempfile.TemporaryDirectory(prefix='hgqbridge-bench-') as tmp:
        for name, kind, spec in cases:  # written after every model: an interrupted run keeps what it measured
            if a.max_multiplications is not None and float_multiplications(build(kind, spec)) > a.max_multiplications:
                print(f'{name:<34} skipped: more than {a.max_multiplications:,} multiplications', flush=True)
                continue
            rows.extend(run_case(name, kind, spec, targets, Path(tmp), a.hls_max_multiplications))
            info['total seconds'] = round(time.perf_counter() - t0, 1)
            info['load average at end'] = os.getloadavg()
            doc = document(earlier, {'machine': info, 'command': ' '.join(sys.argv)}, rows)
            path.write_text(json.dumps(doc, indent=2) + '\n')
    if not rows:
        print('no model ran: nothing written')
        return 1
    print('\nfits (x = multiplications unrolled): cpu seconds = a * x^b; per-phase growth exponents')
    for tname, entry in doc['fits'].items():
        e, dfit = entry['export cpu s'], entry['direct cpu s']
        print(
            f'  {tname:<15} export a={e["a"]:.3g} b={e["b"]:.2f}' if e else f'  {tname:<15} (one size)',
            f'| direct b={dfit["b"]:.2f}' if dfit else '',
            '| phases ' + ', '.join(f'{k} {v}' for k, v in entry['phase exponents'].items() if v is not None),
        )
        if entry['cost fit']:
            print(f'  {"":<15} for converters/deploy/cost.py FITS: {entry["cost fit"]}')
    plot([r for r in doc['rows'] if 'refused' not in r], a.out / 'export_scaling.png')
    print(f'wrote {path} and {a.out / "export_scaling.png"} in {info["total seconds"]} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
