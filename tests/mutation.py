"""Mutation fuzzing of model and data files: mutants of the committed fixtures, and a worker that runs them.

``mutants(seed, n, mode)`` makes ``n`` deterministic mutants (bit flips, truncation, zeroed blocks, swapped JSON
fields) of a few small fixtures in every source format, or of data and golden files. The worker
(``python -m tests.mutation CASES.json``) runs each mutant in its own folder and prints one JSON line per case
(``start`` before, the outcome after), so the parent can enforce a per-case time limit by killing it. Modes:
``convert`` runs ``hgqbridge convert`` end to end; ``parse`` runs what reads the file (the reader code the HDF5
child runs, called here directly so that thousands of mutants take a minute) and every layer handler;
``data`` reads a mutated data file (``--data``/``--calibration``) and a mutated golden file.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QKERAS = ROOT / 'fixtures' / 'qkeras'

#: (source files, the member a mutation targets) for each format (.h5, .json + .h5, .keras, SavedModel, .onnx);
#: small models, so a case takes about a second.
SOURCES = [
    (['zoo_bits_symmetric.h5'], 0),
    (['zoo_conv2d_strides_same.h5'], 0),
    (['mixed_small.json', 'mixed_small_weights.h5'], 0),
    (['mixed_small.json', 'mixed_small_weights.h5'], 1),
    (['../qkeras_v3/v3_sequential.keras'], 0),
    (['zoo_savedmodel_conv_bn_savedmodel'], 0),
    (['../onnx/qonnx_mlp.onnx'], 0),
]
KINDS = ('flip', 'truncate', 'zero', 'swap')
#: The parse mode reads a SavedModel one case in 29 (TensorFlow's checkpoint reader takes most of a second).
PARSE_SOURCES = [s for s in SOURCES if 'savedmodel' not in s[0][0]] * 4 + [s for s in SOURCES if 'savedmodel' in s[0][0]]
#: Data and golden files (a data file's arrays, a golden's per-layer outputs), for the ``data`` mode.
DATA_SOURCES = [(['jet_tagger.data.npz'], 0), (['zoo_bits_symmetric.golden.npz'], 0), (['../keras/k3_skip.data.npz'], 0)]


@dataclass
class Case:
    index: int
    kind: str
    files: list[str]  # the (mutated) model files, in the case's folder
    folder: str
    mode: str = 'convert'  # 'convert', 'parse' or 'data'


def _mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    if kind == 'flip':
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
    elif kind == 'truncate':
        buf = buf[: rng.randrange(len(buf))]
    elif kind == 'zero':  # a block replaced by zeros (of a length that may differ: structures shift too)
        start = rng.randrange(len(buf))
        zeros, span = rng.randint(1, 512), rng.randint(1, 512)
        buf[start : start + span] = bytes(min(len(buf) - start, zeros))
    return bytes(buf)


def _swap_json(text: str, rng: random.Random) -> str:
    """Swap the values of two keys somewhere in the JSON (names, shapes, quantizers, inbound nodes...)."""
    doc = json.loads(text)
    dicts: list[dict] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            dicts.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    a, b = rng.choice(dicts), rng.choice(dicts)
    if a and b:
        ka, kb = rng.choice(list(a)), rng.choice(list(b))
        a[ka], b[kb] = b[kb], a[ka]
    return json.dumps(doc)


def mutants(seed: int, n: int, where: Path, mode: str = 'convert', first: int = 0) -> list[Case]:
    """``n`` mutants under ``where`` (one folder each), deterministic for a seed; indices from ``first``."""
    rng = random.Random(seed)
    sources = {'data': DATA_SOURCES, 'parse': PARSE_SOURCES}.get(mode, SOURCES)
    cases = []
    for index in range(first, first + n):
        files, target = sources[index % len(sources)]
        kind = KINDS[(index // len(sources)) % len(KINDS)]
        folder = where / f'case{index:05d}'
        (folder / 'in').mkdir(parents=True)
        paths = []
        for k, name in enumerate(files):
            src = (QKERAS / name).resolve()
            dst = folder / 'in' / src.name
            if src.is_dir():
                shutil.copytree(src, dst)
                member = dst / ('keras_metadata.pb' if kind != 'swap' else 'variables/variables.index')
            else:
                shutil.copy(src, dst)
                member = dst
            if k == target:
                data = member.read_bytes()
                if kind == 'swap' and member.suffix == '.json':
                    member.write_text(_swap_json(data.decode(), rng))
                else:
                    member.write_bytes(_mutate(data, 'flip' if kind == 'swap' else kind, rng))
            paths.append(str(dst))
        cases.append(Case(index, kind, paths, str(folder), mode))
    return cases


def _convert(case: Case) -> str:
    """``hgqbridge convert`` on the mutant, as a user runs it."""
    import contextlib

    from hgqbridge.cli import main

    out = Path(case.folder) / 'out'
    args = ['convert', case.files[0], '-o', str(out / 'model.keras')] + (
        ['--weights', case.files[1]] if len(case.files) > 1 else []
    )
    with contextlib.redirect_stdout(sys.stderr):
        code = main(args)
    return 'converted' if code == 0 else 'refused' if code == 2 else f'exit {code}'


def _parse(case: Case) -> str:
    """The reader (the same functions the HDF5 child runs) and every layer handler, without building a model."""
    from hgqbridge.converters import SOURCES
    from hgqbridge.converters.hgq.driver import parse_all
    from hgqbridge.converters.keras.archive import load_keras
    from hgqbridge.converters.keras.config import graph_from_config
    from hgqbridge.converters.keras.hdf5 import load_h5, load_json
    from hgqbridge.converters.keras.savedmodel import load_savedmodel
    from hgqbridge.converters.onnx import read_onnx

    path = Path(case.files[0])
    registry = SOURCES[1].registries if path.suffix == '.onnx' else SOURCES[0].registries
    order = {n: e.weights for reg in SOURCES[0].registries for n in reg.names() if (e := reg.entry(n)) is not None}
    if path.suffix == '.onnx':
        graph = read_onnx(path)
    elif path.is_dir():
        graph = graph_from_config(*load_savedmodel(path), path)
    else:
        load = {
            '.h5': lambda: load_h5(path),
            '.keras': lambda: load_keras(path, order),
            '.json': lambda: load_json(path, Path(case.files[1])),
        }
        graph = graph_from_config(*load[path.suffix](), path)
    parse_all(graph, registry)
    return 'parsed'


def _data(case: Case) -> str:
    from hgqbridge.datafiles import load_data
    from hgqbridge.verify import load_golden

    path = Path(case.files[0])
    load_golden(path) if 'golden' in path.name else load_data(path)
    return 'parsed'


def run(cases: list[Case]) -> None:
    """Worker: run each case, print its outcome as one JSON line."""
    import hgqbridge

    proto = sys.stdout  # protocol lines only; whatever the CLI prints goes to stderr
    steps = {'convert': _convert, 'parse': _parse, 'data': _data}
    import h5py  # noqa: F401  (the imports first, so that the per-case limit measures the case alone)
    import onnx  # noqa: F401
    import tensorflow  # noqa: F401

    import hgqbridge.converters.onnx
    import hgqbridge.converters.qkeras

    print(json.dumps({'ready': True}), file=proto, flush=True)
    for case in cases:
        print(json.dumps({'start': case.index}), file=proto, flush=True)
        out = Path(case.folder) / 'out'
        out.mkdir()
        try:
            outcome = steps[case.mode](case)
        except hgqbridge.HGQBridgeError as err:
            outcome = 'refused' if case.mode != 'convert' else f'uncaught HGQBridgeError: {err}'  # main() prints these itself
        except BaseException as err:
            outcome = f'{type(err).__name__}: {str(err)[:300]}'
        left = sorted(p.name for p in out.iterdir())
        print(json.dumps({'done': case.index, 'outcome': outcome, 'left': left}), file=proto, flush=True)


if __name__ == '__main__':
    run([Case(**c) for c in json.loads(Path(sys.argv[1]).read_text())])
    sys.stdout.flush()


__all__ = ['Case', 'asdict', 'mutants', 'run']
