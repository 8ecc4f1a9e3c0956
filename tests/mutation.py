"""Mutation fuzzing of model files: mutants of the committed fixtures, and a worker that converts them.

``mutants(seed, n)`` makes ``n`` deterministic mutants (bit flips, truncation, zeroed blocks, swapped JSON
fields) of a few small fixtures in every source format. The worker (``python -m tests.mutation CASES.json``)
runs ``hgqbridge convert`` on each mutant in its own output folder and prints one JSON line per case
(``start`` before, the outcome after), so the parent can enforce a per-case time limit by killing it.
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


@dataclass
class Case:
    index: int
    kind: str
    files: list[str]  # the (mutated) model files, in the case's folder
    folder: str


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


def mutants(seed: int, n: int, where: Path) -> list[Case]:
    """``n`` mutants under ``where`` (one folder each), deterministic for a seed."""
    rng = random.Random(seed)
    cases = []
    for index in range(n):
        files, target = SOURCES[index % len(SOURCES)]
        kind = KINDS[(index // len(SOURCES)) % len(KINDS)]
        folder = where / f'case{index:03d}'
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
        cases.append(Case(index, kind, paths, str(folder)))
    return cases


def run(cases: list[Case]) -> None:
    """Worker: convert each case with the CLI, print its outcome as one JSON line."""
    import contextlib

    import hgqbridge
    from hgqbridge.cli import main

    proto = sys.stdout  # protocol lines only; whatever the CLI prints goes to stderr
    for case in cases:
        print(json.dumps({'start': case.index}), file=proto, flush=True)
        out = Path(case.folder) / 'out'
        out.mkdir()
        args = ['convert', case.files[0], '-o', str(out / 'model.keras')] + (['--weights', case.files[1]] if len(case.files) > 1 else [])
        try:
            with contextlib.redirect_stdout(sys.stderr):
                code = main(args)
            outcome = 'converted' if code == 0 else 'refused' if code == 2 else f'exit {code}'
        except hgqbridge.HGQBridgeError as err:  # main() prints these; reaching here would be a CLI bug
            outcome = f'uncaught HGQBridgeError: {err}'
        except BaseException as err:  # noqa: BLE001 - the point is to report anything else
            outcome = f'{type(err).__name__}: {str(err)[:300]}'
        left = sorted(p.name for p in out.iterdir())
        print(json.dumps({'done': case.index, 'outcome': outcome, 'left': left}), file=proto, flush=True)


if __name__ == '__main__':
    run([Case(**c) for c in json.loads(Path(sys.argv[1]).read_text())])
    sys.stdout.flush()


__all__ = ['Case', 'asdict', 'mutants', 'run']
