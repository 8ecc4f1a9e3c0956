"""Soundness of ``check`` on float models: random float ONNX graphs (dense and convolutional stacks, weight scales
from near zero to huge, tiny and zero-range channels, with and without batch normalization and a softmax head),
converted with random policies (bits, calibration data at random scales), checked, and every model ``check``
calls deployable exported and compared with its HGQ2 model on normal, stress and far-out-of-range inputs.

A permissive error is a model called deployable whose export is not bit-exact: the goal is 0. The suite runs a
seeded few (tests/converters/deploy/test_soundness.py); ``python -m tests.converters.deploy.soundness --models N
--target da4ml`` runs more and prints the numbers the README quotes (tried, deployable, permissive errors).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCALES = (1e-7, 1e-3, 0.05, 0.5, 1.0, 4.0, 100.0, 1e4)
TINY_BIASES = (3e-18, 2.5e-12, 6e-7, -1e-9)


@dataclass
class Outcome:
    tried: int = 0
    deployable: int = 0
    unverified: int = 0
    refused: int = 0  # errors in check (not deployable for a known reason)
    exported: int = 0
    permissive: list[str] = field(default_factory=list)  # deployable, export NOT bit-exact
    export_failures: list[str] = field(default_factory=list)  # deployable, but the export step itself failed
    reasons: dict[str, int] = field(default_factory=dict)  # rule -> models it kept from being deployable

    def line(self) -> str:
        return (
            f'tried {self.tried}, deployable {self.deployable} (exported and compared {self.exported}), '
            f'unverified {self.unverified}, refused {self.refused}, permissive errors {len(self.permissive)}, '
            f'export failures {len(self.export_failures)}'
        )


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    w = rng.normal(size=shape) * rng.choice(SCALES)
    out_axis = 0  # ONNX: Gemm with transB=1 and Conv keep output channels first
    for c in range(shape[out_axis]):
        roll = rng.random()
        if roll < 0.1:
            w[c] = 0.0  # a zero channel
        elif roll < 0.2:
            w[c] *= 1e-8  # a tiny channel
    return w.astype(np.float32)


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    b = rng.normal(size=n) * rng.choice(SCALES)
    for c in range(n):
        roll = rng.random()
        if roll < 0.15:
            b[c] = rng.choice(TINY_BIASES)
        elif roll < 0.25:
            b[c] = -abs(b[c]) - 1e3  # a channel the ReLU after it keeps at 0 (zero range)
    return b.astype(np.float32)


def random_graph(rng: np.random.Generator, path: Path) -> tuple[tuple[int, ...], bool]:
    """Write a random float ONNX graph to ``path``; returns (channels-last input shape, has a softmax head)."""
    from onnx import TensorProto, helper, numpy_helper, save

    nodes, inits = [], []
    conv = rng.random() < 0.4
    channels, length = int(rng.integers(1, 4)), int(rng.integers(6, 10))
    width = int(rng.integers(3, 12))
    shape_in = [1, channels, length] if conv else [1, width]
    current, n = 'x', channels if conv else width

    def add(op: str, inputs: list[str], **attrs: object) -> str:
        out = f't{len(nodes)}'
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def const(value: np.ndarray) -> str:
        name = f'c{len(inits)}'
        inits.append(numpy_helper.from_array(value, name))
        return name

    def batchnorm(x: str, c: int) -> str:
        gamma = (rng.normal(size=c) * rng.choice(SCALES)).astype(np.float32)
        beta = _bias(rng, c)
        mean = rng.normal(size=c).astype(np.float32)
        var = (rng.random(c) * rng.choice(SCALES) + 1e-3).astype(np.float32)
        return add('BatchNormalization', [x, const(gamma), const(beta), const(mean), const(var)], epsilon=1e-3)

    if conv:
        for _ in range(int(rng.integers(1, 3))):
            filters = int(rng.integers(2, 6))
            current = add('Conv', [current, const(_weights(rng, (filters, n, 3))), const(_bias(rng, filters))], kernel_shape=[3])
            n, length = filters, length - 2
            if rng.random() < 0.3:
                current = batchnorm(current, n)
            current = add('Relu', [current])
        current = add('Flatten', [current], axis=1)
        n = n * length
    for depth in range(int(rng.integers(1, 4))):
        last = depth > 0 and rng.random() < 0.4
        units = int(rng.integers(2, 10))
        current = add('Gemm', [current, const(_weights(rng, (units, n))), const(_bias(rng, units))], transB=1)
        n = units
        if last:
            break
        if rng.random() < 0.3:
            current = batchnorm(current, n)
        current = add('Relu', [current])
    softmax = rng.random() < 0.4
    if softmax:
        current = add('Softmax', [current], axis=-1)
    graph = helper.make_graph(
        nodes,
        'random_float',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, n])],
        inits,
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)]), str(path))
    return ((int(shape_in[2]), channels) if conv else (width,)), softmax


def data(rng: np.random.Generator, shape: tuple[int, ...], n: int) -> np.ndarray:
    return (rng.normal(size=(n, *shape)) * rng.choice((0.01, 1.0, 30.0))).astype(np.float32)


def run(seed: int, models: int, target: str, work: Path) -> Outcome:
    """Convert, check and (when deployable) export ``models`` random float graphs on ``target``."""
    import hgqbridge
    from hgqbridge.errors import HGQBridgeError

    outcome = Outcome()
    for index in range(models):
        rng = np.random.default_rng([seed, index])
        path = work / f'm{index}.onnx'
        shape, _ = random_graph(rng, path)
        x = data(rng, shape, 256)
        calibration = {'x': x, 'x_val': data(rng, shape, 64)}
        bits = int(rng.choice((3, 4, 6, 8, 10, 12, 16)))
        outcome.tried += 1
        conv = hgqbridge.import_model(path, bits=bits, calibration=calibration)
        report = hgqbridge.check(conv.model, target)
        if not report.deployable:
            for rule in {i.reason.rsplit('[', 1)[-1].rstrip(']') for i in report.items if i.status in ('error', 'unverified')}:
                outcome.reasons[rule] = outcome.reasons.get(rule, 0) + 1
            errors = any(item.status == 'error' for item in report.items)
            outcome.refused += errors
            outcome.unverified += not errors
            continue
        outcome.deployable += 1
        fresh = np.concatenate([data(rng, shape, 64), 50 * data(rng, shape, 64), 1e4 * data(rng, shape, 16)])
        options = {'rtl': False} if target == 'da4ml' else {}
        try:
            exported = hgqbridge.export(conv.model, target, work / f'prj{index}', fresh, **options)
        except HGQBridgeError as err:
            outcome.export_failures.append(f'model {index} (bits {bits}): {str(err)[:200]}')
            continue
        outcome.exported += 1
        if not exported.ok:
            outcome.permissive.append(f'model {index} (bits {bits}): first divergence {exported.first_divergence}')
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', type=int, default=200)
    parser.add_argument('--seed', type=int, default=2026)
    parser.add_argument('--target', default='da4ml')
    parser.add_argument('--json', type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run(args.seed, args.models, args.target, Path(tmp))
    print(f'{args.target}, seed {args.seed}: {outcome.line()}')
    print('   not deployable because of:', ', '.join(f'{k} {v}' for k, v in sorted(outcome.reasons.items())))
    for line in outcome.permissive + outcome.export_failures:
        print('  ', line)
    if args.json:
        args.json.write_text(json.dumps({'target': args.target, 'seed': args.seed, **outcome.__dict__}, indent=2))


if __name__ == '__main__':
    main()
