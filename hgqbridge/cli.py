"""The ``hgqbridge`` command. ``--help`` answers at once: TensorFlow is imported only by the commands that need it.

Every HGQBridgeError ends as one line on stderr and exit code 2; ``check`` exits 1 when the model is not
deployable, ``export`` and ``convert --verify`` exit 1 when the result is not proven bit-exact (a mismatch, or
no compiler here to run the firmware model).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from .cli_train import cmd_finetune, cmd_sweep
from .errors import HGQBridgeError

EPILOG = """examples:
  hgqbridge convert fixtures/qkeras/jet_tagger.h5 -o model.keras --verify
  hgqbridge convert model.json --weights model_weights.h5 -o model.keras
  hgqbridge inspect model.keras
  hgqbridge check model.keras --target hls4ml:vitis
  hgqbridge export model.keras --target hls4ml:vitis -o prj_hls --data data.npz
  hgqbridge export model.keras --target alkaid -o prj_alkaid --data data.npz
  hgqbridge finetune model.keras --data data.npz -o finetuned/ --budget 10m --export alkaid
  hgqbridge sweep model.keras --data data.npz -o sweep/ --runs 8 --workers 2
  hgqbridge demo
"""


def _print_report(report: Any, as_json: bool, save: Path | None = None, markdown: bool = False) -> None:
    print(report.to_json() if as_json else report.to_markdown() if markdown else report.to_text())
    if save is not None:
        report.save(save)


def _limits(a: argparse.Namespace) -> Any:
    from .limits import Limits

    return Limits.parse(a.limit)


def cmd_convert(a: argparse.Namespace) -> int:
    from . import import_model, verify
    from .models import save_model
    from .outputs import check_output
    from .verify import load_golden

    golden = None
    if a.verify is not None:
        golden = Path(a.verify) if a.verify else a.source.with_name(a.source.name.split('.')[0] + '.golden.npz')
    inputs = tuple(p for p in (a.source, a.weights, a.calibration, golden) if p is not None)
    check_output(a.output, a.force, inputs)  # before the work, not after
    if golden is not None:
        load_golden(golden)  # a broken golden file is refused before the conversion, too
    conv = import_model(
        a.source,
        a.weights,
        a.input_format,
        bits=a.bits,
        dummy=a.dummy,
        calibration=a.calibration,
        fold_batchnorm=a.fold_batchnorm,
        limits=_limits(a),
        uniform_activations=a.uniform_activations,
    )
    print(conv.report.to_text())
    status = 0
    if golden is not None:
        report = verify(conv, golden)
        print(report.to_text())
        status = 0 if report.bit_exact else 1
    save_model(conv.model, a.output, a.force, inputs)
    print(f'wrote {a.output}')
    return status


def cmd_inspect(a: argparse.Namespace) -> int:
    from .inspect import inspect_dict, inspect_text
    from .models import load_model

    model = load_model(a.model, _limits(a))
    print(json.dumps(inspect_dict(model), indent=2) if a.json else inspect_text(model))
    return 0


def _target_options(a: argparse.Namespace) -> dict[str, Any]:
    """The target options the user gave (None: not given; each target says which it takes)."""
    rtl = False if getattr(a, 'no_rtl', False) else None
    return {'io_type': a.io_type, 'strategy': a.strategy, 'reuse_factor': a.reuse_factor, 'rtl': rtl}


def cmd_check(a: argparse.Namespace) -> int:
    from . import check
    from .models import load_model

    report = check(load_model(a.model, _limits(a)), a.target, **_target_options(a))
    _print_report(report, a.json, markdown=a.markdown)
    return 0 if report.deployable else 1


def cmd_export(a: argparse.Namespace) -> int:
    from . import check, export
    from .datafiles import load_data
    from .models import load_model
    from .outputs import check_output

    if a.timeout is not None and not a.timeout > 0:
        raise HGQBridgeError('--timeout must be a positive number of seconds', received=a.timeout, fix='e.g. --timeout 600')
    check_output(a.output, a.force, (a.model, a.data))
    limits = _limits(a)
    x = load_data(a.data, limits=limits)['x']
    model = load_model(a.model, limits)
    if not a.quiet:
        for item in check(model, a.target, **_target_options(a)).items:
            if item.layer_class == 'model' and item.reason.endswith('[export-cost]'):
                fix = f' Fix: {item.fix}' if item.status == 'warning' else ''
                print(f'hgqbridge export: {item.status}: {item.reason}{fix}', file=sys.stderr, flush=True)
    options = _target_options(a)
    sources = (a.model, a.data)
    report = export(model, a.target, a.output, x, a.force, sources, progress=not a.quiet, timeout=a.timeout, **options)
    _print_report(report, a.json, markdown=a.markdown)
    return 0 if report.ok else 1


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(a.output, a.epochs)


def cmd_support(a: argparse.Namespace) -> int:
    from .support import support_markdown

    print(support_markdown())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='hgqbridge',
        description='Move QKeras models onto HGQ2 bit-exactly, fine-tune them, and export verified FPGA firmware.',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest='command', required=True, metavar='COMMAND')
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '--limit',
        action='append',
        metavar='NAME=N',
        help='raise a budget for untrusted files, e.g. layers=5000 '
        '(layers, elements, weight_bytes, data_bytes, read_seconds, read_memory; see SECURITY.md)',
    )
    common.add_argument('--debug', action='store_true', help='print the traceback of an internal error')

    c = sub.add_parser('convert', parents=[common], help='convert a QKeras or Keras model file into an HGQ2 .keras model')
    c.add_argument(
        'source', type=Path, help='SOURCE.h5, SOURCE.json with --weights, SOURCE.keras, SOURCE.onnx, or a SavedModel folder'
    )
    c.add_argument('--weights', type=Path, help='weights .h5 for a .json architecture')
    c.add_argument('-o', '--output', type=Path, required=True, help='output .keras file')
    c.add_argument(
        '--verify', nargs='?', const='', metavar='GOLDEN', help='compare with golden outputs (default SOURCE.golden.npz)'
    )
    c.add_argument(
        '--input-format', help="firmware input type when the source does not quantize its input (default 'fixed<16,6>')"
    )
    c.add_argument('--bits', type=int, help='float (plain Keras) layers: bits of every weight and activation (default 8)')
    c.add_argument(
        '--calibration',
        type=Path,
        metavar='DATA',
        help='float layers: .npz with x (and y, x_val, y_val) to set activation ranges',
    )
    c.add_argument('--dummy', action='store_true', help='float layers: HGQ2 dummy quantizers, i.e. the float model itself')
    c.add_argument(
        '--uniform-activations',
        action='store_true',
        help='float layers: one format per activation tensor, not per element (hls4ml io_stream needs it)',
    )
    c.add_argument('--fold-batchnorm', action='store_true', help='fold float BatchNormalization into the Dense/Conv before it')
    c.add_argument('--force', action='store_true', help='replace an output that hgqbridge wrote earlier')
    c.set_defaults(run=cmd_convert)

    i = sub.add_parser('inspect', parents=[common], help='per layer: input/weight/output fixed-point formats and EBOPs')
    i.add_argument('model', type=Path)
    i.add_argument('--json', action='store_true')
    i.set_defaults(run=cmd_inspect)

    for name, helptext, run in (
        ('check', 'can the target deploy this model? every layer, with reason and fix', cmd_check),
        ('export', 'write the firmware project and prove it bit-exact', cmd_export),
    ):
        s = sub.add_parser(name, parents=[common], help=helptext)
        s.add_argument('model', type=Path)
        s.add_argument(
            '--target',
            required=True,
            help='an export target: hls4ml:BACKEND (vitis, vivado, oneapi, quartus, catapult), alkaid or da4ml; '
            'hgqbridge support lists them',
        )
        s.add_argument('--io-type', help='hls4ml: io_parallel (default) or io_stream')
        s.add_argument('--strategy', help='hls4ml: latency (default), resource or distributed_arithmetic')
        s.add_argument('--reuse-factor', type=int, help='hls4ml: the reuse factor (default 1)')
        s.add_argument('--json', action='store_true', help='print the report as JSON')
        s.add_argument('--markdown', action='store_true', help='print the report as a Markdown table')
        if name == 'export':
            s.add_argument('-o', '--output', type=Path, required=True, help='project folder')
            s.add_argument('--data', type=Path, required=True, help='.npz with array x (inputs to compare on)')
            s.add_argument('--force', action='store_true', help='replace a project folder that hgqbridge wrote earlier')
            s.add_argument('--no-rtl', action='store_true', help='alkaid, da4ml: skip the verilator simulation of the Verilog')
            s.add_argument(
                '--timeout', type=float, metavar='SECONDS', help='stop cleanly (nothing written, exit 2) after this long'
            )
            s.add_argument('--quiet', action='store_true', help='no estimate and no progress lines on stderr')
        s.set_defaults(run=run)

    f = sub.add_parser('finetune', parents=[common], help='heterogeneous-bit-width fine-tuning (EBOPs-regularised)')
    w = sub.add_parser('sweep', parents=[common], help='many fine-tunes as Ray Tune trials, one merged Pareto front')
    for s, what in ((f, 'model.keras, pareto.json, checkpoints, pictures'), (w, 'trials/, pareto.json, pareto.png, model.keras')):
        s.add_argument('model', type=Path)
        s.add_argument('--data', type=Path, required=True, help='.npz with x, y, x_val, y_val (and x_test, y_test)')
        s.add_argument('-o', '--output', type=Path, required=True, help=f'output folder: {what}')
        s.add_argument('--epochs', type=int, help='epochs per run (default 30, or what --budget allows)')
        s.add_argument('--budget', help='time per run, e.g. 90s, 10m, 1h (the epochs are planned from the second one)')
        s.add_argument('--tolerance', type=float, default=0.005, help='allowed loss of the validation metric')
        s.add_argument('--metric', choices=('accuracy', 'mse'), default='accuracy')
        s.add_argument('--learning-rate', type=float, default=3e-3, help='the start of the cosine schedule')
        s.add_argument('--export', metavar='TARGET', help='export the chosen model to TARGET and prove it bit-exact')
        s.add_argument('--resume', action='store_true', help='continue an interrupted run in the same output folder')
        s.add_argument('--force', action='store_true', help='replace an output folder that hgqbridge wrote earlier')
    f.add_argument('--beta-min', type=float, help="experts: the first epoch's beta (default: automatic, see README)")
    f.add_argument('--beta-max', type=float, help="experts: the last epoch's beta")
    f.add_argument('--batch-size', type=int, help='default: about 40 steps per epoch (16 to 1024)')
    f.add_argument('--diagnose', action='store_true', help='also train with float (dummy) quantizers to locate a problem')
    f.set_defaults(run=cmd_finetune)
    w.add_argument('--runs', type=int, default=4, help='fine-tunes (beta ranges, seeds, learning rates)')
    w.add_argument('--workers', type=int, default=1, help='trials at once on this machine (embedded Ray)')
    w.add_argument('--address', help='an existing Ray cluster (ray://host:10001 or host:6379); out/ must be shared')
    w.set_defaults(run=cmd_sweep)

    d = sub.add_parser('demo', parents=[common], help='the whole path on a shipped QKeras jet tagger, ending with a table')
    d.add_argument('-o', '--output', type=Path, help='a new folder for everything the demo writes (default demo-out-<time>)')
    d.add_argument('--epochs', type=int, default=40, help='fine-tuning epochs')
    d.set_defaults(run=cmd_demo)

    s = sub.add_parser('support', parents=[common], help='print the support matrix (generated from the registries)')
    s.set_defaults(run=cmd_support, needs_tensorflow=False)
    return p


class Interrupted(KeyboardInterrupt):
    """SIGTERM (what ``kill``, ``timeout`` and a cancelled CI job send) or SIGHUP, raised like Ctrl-C so that every
    ``finally`` runs: temporary folders are removed and the reader child is killed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # let the clean-up finish
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _failure(err: BaseException, debug: bool) -> str:
    """The one line for an exception that is not an HGQBridgeError."""
    if isinstance(err, OSError):
        return f'{err.strerror or err}' + (f': {err.filename}' if err.filename else '') + ' (a file system problem, not a bug)'
    if isinstance(err, MemoryError):
        return 'out of memory; the model or the data is larger than this machine holds (see --limit and SECURITY.md)'
    if isinstance(err, RecursionError):
        return 'the model is nested too deeply to process (a file built to exhaust the stack?)'
    where = '' if debug else '; rerun with --debug for the traceback'
    return (
        f'internal error, a bug in hgqbridge: {type(err).__name__}: {" ".join(str(err).split())[:300]}; please report it on '
        f'the hgqbridge issue tracker with this line and the command{where}'
    )


def _import_tensorflow_quietly() -> None:
    """TensorFlow 2.21 writes absl INFO lines (oneDNN, CUDA) to file descriptor 2 while it loads, whatever
    TF_CPP_MIN_LOG_LEVEL says, which would break the promise that a failure is one line. So fd 2 points at a
    temporary file during the import; what it caught is shown only if the import itself fails."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
    if 'tensorflow' in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    # A signal during the import is held until it ends: raised inside TensorFlow's import, Ctrl-C can be swallowed
    # by one of its probes, and the run would go on (seen under load: the CLI then read a hanging file for minutes).
    # A second signal is not held: a hung import still stops.
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)
        if len(held) > 1:
            raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)

    previous = _catch((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), hold)
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            except BaseException:
                os.dup2(saved, 2)
                caught.seek(0)
                sys.stderr.write(caught.read().decode(errors='replace'))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held:
        raise KeyboardInterrupt if held[0] == signal.SIGINT else Interrupted(held[0])


def _catch(signals: tuple[int, ...], handler: Any) -> dict[int, Any]:
    """Install ``handler`` for each signal the process does not ignore (``nohup`` ignores SIGHUP, a background job
    in a script SIGINT: those stay ignored); the previous handlers, to restore."""
    return {sig: signal.signal(sig, handler) for sig in signals if signal.getsignal(sig) != signal.SIG_IGN}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, 'debug', False))
    previous = _catch((signal.SIGTERM, signal.SIGHUP), _on_signal)
    try:
        if getattr(args, 'needs_tensorflow', True):
            _import_tensorflow_quietly()
        return int(args.run(args))
    except HGQBridgeError as err:
        print(f'hgqbridge {args.command}: error: {err}', file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`
        return 0
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        print(
            f'hgqbridge {args.command}: interrupted ({signal.Signals(signum).name}); no output was written or replaced, '
            'and no temporary file is left',
            file=sys.stderr,
        )
        return 128 + int(signum)
    except Exception as err:
        if debug:
            traceback.print_exc()
        print(f'hgqbridge {args.command}: error: {_failure(err, debug)}', file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == '__main__':
    sys.exit(main())
