"""Hostile and broken model and data files, made on the fly (nothing binary is committed).

Each ``Case`` writes its files into a fresh folder (the command's working directory) and says what the command
line is and what must happen: the exit code and a fragment of the one error line. ``SECRET`` is what a leak would
copy into an output: a local file that hostile files point at, which must never be read.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QKERAS = ROOT / 'fixtures' / 'qkeras'
KERAS = ROOT / 'fixtures' / 'keras'
SECRET = b'HGQBRIDGE-SECRET-MARKER-' * 64  # 1536 bytes, more than any weight below takes


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], list[str]]  # writes the files into the folder, returns the command line (after `hgqbridge`)
    message: str  # a fragment of the one error line
    code: int = 2


def _secret(folder: Path) -> str:
    (folder / 'secret.txt').write_bytes(SECRET)
    return 'secret.txt'


# ---- references out of the file --------------------------------------------------------------------------------------


def _h5_with(folder: Path, source: Path, name: str, change: Callable) -> Path:
    import h5py

    target = folder / name
    shutil.copy(source, target)
    with h5py.File(target, 'r+') as f:
        change(f, folder)
    return target


def _weight_paths(f: object) -> list[str]:
    import h5py

    found: list[str] = []
    f.visititems(lambda n, obj: found.append(n) if isinstance(obj, h5py.Dataset) else None)  # type: ignore[attr-defined]
    return found


def _external_storage(f: object, folder: Path) -> None:
    """Replace the first weight by a dataset whose bytes live in the secret file (HDF5 external storage)."""
    first = _weight_paths(f)[0]
    ds = f[first]  # type: ignore[index]
    shape, dtype = ds.shape, ds.dtype
    del f[first]  # type: ignore[attr-defined]
    f.create_dataset(first, shape=shape, dtype=dtype, external=[(_secret(folder), 0, int(np.prod(shape)) * dtype.itemsize)])  # type: ignore[attr-defined]


def _external_link(f: object, folder: Path) -> None:
    import h5py

    first = _weight_paths(f)[0]
    del f[first]  # type: ignore[attr-defined]
    f[first] = h5py.ExternalLink(_secret(folder), '/data')  # type: ignore[index]


def _virtual(f: object, folder: Path) -> None:
    import h5py

    first = _weight_paths(f)[0]
    shape, dtype = f[first].shape, f[first].dtype  # type: ignore[index]
    del f[first]  # type: ignore[attr-defined]
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    layout[...] = h5py.VirtualSource(_secret(folder), '/data', shape=shape)
    f.create_virtual_dataset(first, layout)  # type: ignore[attr-defined]


def _soft_link(f: object, folder: Path) -> None:
    import h5py

    paths = _weight_paths(f)
    del f[paths[0]]  # type: ignore[attr-defined]
    f[paths[0]] = h5py.SoftLink('/' + paths[1])  # type: ignore[index]


def _h5_case(change: Callable) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        _h5_with(folder, QKERAS / 'jet_tagger.h5', 'model.h5', change)
        return ['convert', 'model.h5', '-o', 'out.keras']

    return make


def _keras_with_external_storage(folder: Path, source: Path, name: str) -> Path:
    """A .keras archive whose model.weights.h5 keeps one variable in the secret file."""
    import h5py

    with zipfile.ZipFile(source) as archive:
        members = {i.filename: archive.read(i.filename) for i in archive.infolist()}
    weights = folder / 'weights.tmp.h5'
    weights.write_bytes(members['model.weights.h5'])
    with h5py.File(weights, 'r+') as f:
        _external_storage(f, folder)
    members['model.weights.h5'] = weights.read_bytes()
    weights.unlink()
    with zipfile.ZipFile(folder / name, 'w') as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return folder / name


def _keras_source(folder: Path) -> list[str]:
    _keras_with_external_storage(folder, KERAS / 'k3_skip.keras', 'model.keras')
    return ['convert', 'model.keras', '-o', 'out.keras', '--dummy']


def _onnx_external(where: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        from onnx import TensorProto, helper, save

        secret = _secret(folder)
        weight = helper.make_tensor('w', TensorProto.FLOAT, [4, 2], [0.0] * 8)
        weight.ClearField('float_data')
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (('location', secret), ('offset', '0'), ('length', '32')):
            weight.external_data.add(key=key, value=value)
        x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 2])
        if where == 'initializer':
            graph = helper.make_graph([helper.make_node('MatMul', ['x', 'w'], ['y'])], 'g', [x], [y], [weight])
        else:
            const = helper.make_node('Constant', [], ['w'], value=weight)
            graph = helper.make_graph([const, helper.make_node('MatMul', ['x', 'w'], ['y'])], 'g', [x], [y])
        save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), str(folder / 'model.onnx'))
        return ['convert', 'model.onnx', '-o', 'out.keras', '--dummy']

    return make


def _onnx_graph(nodes: list, inits: list, folder: Path, functions: list | None = None, n_out: int = 2) -> list[str]:
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, n_out])
    opsets = [helper.make_opsetid('', 17), helper.make_opsetid('com.example', 1)]
    model = helper.make_model(helper.make_graph(nodes, 'g', [x], [y], inits), opset_imports=opsets, functions=functions or [])
    save(model, str(folder / 'model.onnx'))
    return ['convert', 'model.onnx', '-o', 'out.keras', '--dummy']


def _weight(name: str, rows: int = 4, cols: int = 2) -> object:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.full((rows, cols), 0.5, dtype=np.float32), name)


def _custom_domain(folder: Path) -> list[str]:
    from onnx import helper

    nodes = [helper.make_node('Gemm', ['x', 'w'], ['h']), helper.make_node('Relu', ['h'], ['y'], domain='com.example')]
    return _onnx_graph(nodes, [_weight('w')], folder)


def _local_function(folder: Path) -> list[str]:
    from onnx import helper

    body = [helper.make_node('Neg', ['a'], ['b'])]
    relu = helper.make_function('com.example', 'Relu', ['a'], ['b'], body, [helper.make_opsetid('', 17)])
    nodes = [helper.make_node('Gemm', ['x', 'w'], ['h']), helper.make_node('Relu', ['h'], ['y'], domain='com.example')]
    return _onnx_graph(nodes, [_weight('w')], folder, [relu])


# ---- sizes a file declares ---------------------------------------------------------------------------------------------


def _json_model(folder: Path, layers: list[dict], weights: dict[str, dict[str, np.ndarray]] | None = None) -> list[str]:
    import h5py

    config = {
        'class_name': 'Functional',
        'config': {
            'name': 'm',
            'layers': layers,
            'input_layers': [[layers[0]['name'], 0, 0]],
            'output_layers': [[layers[-1]['name'], 0, 0]],
        },
    }
    (folder / 'model.json').write_text(json.dumps(config))
    with h5py.File(folder / 'weights.h5', 'w') as f:
        f.attrs['layer_names'] = np.array([name.encode() for name in (weights or {})], dtype='S64')
        for name, named in (weights or {}).items():
            g = f.create_group(name)
            g.attrs['weight_names'] = np.array([k.encode() for k in named], dtype='S64')
            for key, value in named.items():
                g[key] = value
    return ['convert', 'model.json', '--weights', 'weights.h5', '-o', 'out.keras']


def _layer(name: str, cls: str, inbound: str | None, **config: object) -> dict:
    return {
        'class_name': cls,
        'name': name,
        'config': {'name': name, **config},
        'inbound_nodes': [[[inbound, 0, 0, {}]]] if inbound else [],
    }


def _huge_kernel_size(folder: Path) -> list[str]:
    layers = [
        _layer('in', 'InputLayer', None, batch_input_shape=[None, 8, 8, 1]),
        _layer('c', 'Conv2D', 'in', filters=2, kernel_size=[100000, 100000], padding='same'),
    ]
    return _json_model(
        folder, layers, {'c': {'c/kernel:0': np.ones((3, 3, 1, 2), np.float32), 'c/bias:0': np.zeros(2, np.float32)}}
    )


def _huge_input(folder: Path) -> list[str]:
    layers = [
        _layer('in', 'InputLayer', None, batch_input_shape=[None, 100_000_000]),
        _layer('q', 'QActivation', 'in', activation='quantized_bits(8, 0, alpha=1)'),
    ]
    return _json_model(folder, layers)


def _huge_padding(folder: Path) -> list[str]:
    layers = [
        _layer('in', 'InputLayer', None, batch_input_shape=[None, 8, 1]),
        _layer('p', 'ZeroPadding1D', 'in', padding=[1_000_000_000, 1_000_000_000]),
        _layer('q', 'QActivation', 'p', activation='quantized_bits(8, 0, alpha=1)'),
    ]
    return _json_model(folder, layers)


def _chain(n: int) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        layers = [_layer('in', 'InputLayer', None, batch_input_shape=[None, 4])]
        layers += [_layer(f'a{i}', 'Activation', layers[-1]['name'], activation='relu') for i in range(n)]
        return _json_model(folder, layers)

    return make


def _deep_config(folder: Path) -> list[str]:
    (folder / 'model.json').write_text('{"class_name": "Functional", "config": ' + '[' * 100_000 + ']' * 100_000 + '}')
    return _json_model_files_only(folder)


def _json_model_files_only(folder: Path) -> list[str]:
    import h5py

    with h5py.File(folder / 'weights.h5', 'w') as f:
        f.attrs['layer_names'] = np.array([], dtype='S1')
    return ['convert', 'model.json', '--weights', 'weights.h5', '-o', 'out.keras']


def _onnx_folding_bomb(folder: Path) -> list[str]:
    """8 MB of constants whose broadcast product would be 2^41 values."""
    from onnx import helper, numpy_helper

    a = numpy_helper.from_array(np.ones((1 << 20, 1), np.float32), 'a')
    b = numpy_helper.from_array(np.ones((1, 1 << 21), np.float32), 'b')
    nodes = [helper.make_node('Mul', ['a', 'b'], ['c']), helper.make_node('Gemm', ['x', 'w'], ['y'])]
    return _onnx_graph(nodes, [a, b, _weight('w')], folder)


def _negative_variance(folder: Path) -> list[str]:
    import h5py

    shutil.copy(KERAS / 'k2_jet_bn.h5', folder / 'model.h5')
    with h5py.File(folder / 'model.h5', 'r+') as f:
        name = next(n for n in _weight_paths(f) if n.endswith('moving_variance:0'))
        f[name][0] = -1.0
    return ['convert', 'model.h5', '-o', 'out.keras', '--dummy']


# ---- data files ----------------------------------------------------------------------------------------------------


def _npz_bomb(folder: Path) -> list[str]:
    """256 KB on disk, 256 MB of zeros once inflated, against a budget of 100 MB (the default is 4 GiB): refused
    from the zip header's declared size, before anything is inflated."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {'descr': '<f4', 'fortran_order': False, 'shape': (1 << 22, 16)})
    with zipfile.ZipFile(folder / 'data.npz', 'w', zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open('x.npy', 'w', force_zip64=True) as fh:
            fh.write(buf.getvalue())
            for _ in range(16):
                fh.write(bytes(1 << 24))
    return [
        'export',
        str(folder / 'model.keras'),
        '--target',
        'da4ml',
        '-o',
        'prj',
        '--data',
        'data.npz',
        '--limit',
        'data_bytes=100000000',
    ]


def _npz_header_lies(folder: Path) -> list[str]:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {'descr': '<f4', 'fortran_order': False, 'shape': (1 << 40, 16)})
    with zipfile.ZipFile(folder / 'data.npz', 'w') as archive:
        archive.writestr('x.npy', buf.getvalue() + bytes(64))
    return ['convert', str(QKERAS / 'jet_tagger.h5'), '-o', 'out.keras', '--bits', '8', '--calibration', 'data.npz']


def _npz(arrays: dict[str, np.ndarray], command: str = 'calibrate') -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        np.savez(folder / 'data.npz', **arrays)
        if command == 'finetune':
            return ['finetune', str(folder / 'model.keras'), '--data', 'data.npz', '-o', 'ft', '--epochs', '1']
        return ['convert', str(KERAS / 'k3_skip.keras'), '-o', 'out.keras', '--calibration', 'data.npz']

    return make


def _fifo(folder: Path) -> list[str]:
    os.mkfifo(folder / 'data.npz')
    return ['convert', str(KERAS / 'k3_skip.keras'), '-o', 'out.keras', '--calibration', 'data.npz']


def _truncated_golden(folder: Path) -> list[str]:
    data = (QKERAS / 'jet_tagger.golden.npz').read_bytes()
    (folder / 'golden.npz').write_bytes(data[: len(data) // 2])
    return ['convert', str(QKERAS / 'jet_tagger.h5'), '-o', 'out.keras', '--verify', 'golden.npz']


# ---- outputs ---------------------------------------------------------------------------------------------------------


def _user_files(folder: Path) -> None:
    (folder / 'thesis.tex').write_text('years of work')


def _output(args: list[str], setup: Callable[[Path], None] = _user_files) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        setup(folder)
        return args

    return make


def _inside_file(folder: Path) -> None:
    (folder / 'plain').write_text('a file')


def _resume_broken(folder: Path) -> list[str]:
    (folder / 'ft').mkdir()
    (folder / 'ft' / '.hgqbridge-output').write_text('{}')
    (folder / 'ft' / 'state.json').write_text('{"next_epoch": "soon"')
    np.savez(folder / 'data.npz', **_training_arrays())
    return ['finetune', str(folder / 'model.keras'), '--data', 'data.npz', '-o', 'ft', '--resume', '--epochs', '2']


def _training_arrays(n: int = 32, width: int = 16, classes: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]
    return {
        'x': rng.normal(size=(n, width)).astype(np.float32),
        'y': y,
        'x_val': rng.normal(size=(n, width)).astype(np.float32),
        'y_val': y,
    }


# ---- odd configs that used to end in a traceback ---------------------------------------------------------------------


def _quantizer_integer(folder: Path) -> list[str]:
    layers = [
        _layer('in', 'InputLayer', None, batch_input_shape=[None, 4]),
        _layer('q', 'QActivation', 'in', activation={'class_name': 'quantized_bits', 'config': {'bits': 8, 'integer': 10**30}}),
    ]
    return _json_model(folder, layers)


def _gemm_1d(folder: Path) -> list[str]:
    from onnx import helper, numpy_helper

    return _onnx_graph(
        [helper.make_node('Gemm', ['x', 'w'], ['y'])], [numpy_helper.from_array(np.ones(4, np.float32), 'w')], folder
    )


def _leaky_alpha(folder: Path) -> list[str]:
    from onnx import helper

    nodes = [helper.make_node('Gemm', ['x', 'w'], ['h']), helper.make_node('LeakyRelu', ['h'], ['y'], alpha='abc')]
    return _onnx_graph(nodes, [_weight('w')], folder)


MODEL_KERAS = 'model.keras'  # cases that need an HGQ2 model get one made by the test (tests/test_hostile.py)

CASES = [
    # 1. nothing outside the given files is read
    Case('h5-external-storage', _h5_case(_external_storage), 'refers to data outside itself'),
    Case('h5-external-link', _h5_case(_external_link), 'refers to data outside itself'),
    Case('h5-virtual-dataset', _h5_case(_virtual), 'refers to data outside itself'),
    Case('h5-soft-link', _h5_case(_soft_link), 'refers to data outside itself'),
    Case('keras-source-external-storage', _keras_source, 'refers to data outside itself'),
    Case('onnx-external-initializer', _onnx_external('initializer'), 'stored in other files'),
    Case('onnx-external-constant', _onnx_external('constant'), 'stored in other files'),
    # 2. --force replaces only what hgqbridge wrote, never a protected place, and an existing output stops the run first
    Case('force-cwd', _output(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', '.', '--force']), 'the current directory'),
    Case('force-parent', _output(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', '..', '--force']), 'the current directory'),
    Case(
        'force-root',
        _output(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', '/', '--force']),
        'the current directory or one of its parents',
    ),
    Case('force-input', _output(['convert', 'thesis.tex', '-o', 'thesis.tex', '--force']), 'an input of this command'),
    Case(
        'force-user-folder',
        _output(
            ['convert', str(QKERAS / 'jet_tagger.h5'), '-o', 'mine', '--force'],
            lambda f: ((f / 'mine').mkdir(), (f / 'mine' / 'notes.txt').write_text('mine')),
        ),
        'replaces only what hgqbridge wrote',
    ),
    Case('exists-no-force', _output(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', 'thesis.tex']), 'already exists'),
    Case(
        'output-under-file',
        _output(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', 'plain/out.keras'], _inside_file),
        'is a file, not a folder',
    ),
    Case('output-under-proc', _output(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', '/proc/self/out.keras']), 'not writable'),
    # 4. sizes are checked before they are allocated
    Case('conv-kernel-size-1e5', _huge_kernel_size, 'does not match the saved kernel'),
    Case('input-1e8', _huge_input, 'exceeds the elements limit'),
    Case('zero-padding-1e9', _huge_padding, 'exceeds the elements limit'),
    Case('chain-10k-layers', _chain(10_000), 'exceeds the layers limit'),
    Case('config-nested-100k', _deep_config, 'nested too deeply'),
    Case('onnx-folding-2-tib', _onnx_folding_bomb, 'exceeds the elements limit'),
    # 5. data files are validated like model files
    Case('npz-inflates-256-mb', _npz_bomb, 'exceeds the data_bytes limit'),
    Case('npz-header-2-pow-40', _npz_header_lies, 'declares shape'),
    Case('npz-zero-rows', _npz({'x': np.zeros((0, 16), np.float32)}), 'holds no samples'),
    Case('npz-beyond-float32', _npz({'x': np.full((4, 16), 1e300)}), "beyond float32's range"),
    Case('npz-fifo', _fifo, 'not a regular file'),
    Case('golden-truncated', _truncated_golden, 'not a readable .npz'),
    Case('finetune-y-rows', _npz({**_training_arrays(), 'y': _training_arrays()['y'][:7]}, 'finetune'), 'has 7 rows'),
    Case(
        'finetune-x-val-width',
        _npz({**_training_arrays(), 'x_val': np.zeros((32, 15), np.float32)}, 'finetune'),
        'does not fit the model input',
    ),
    Case(
        'finetune-classes',
        _npz({**_training_arrays(), 'y': np.eye(4, dtype=np.float32)[np.zeros(32, int)]}, 'finetune'),
        'does not fit the model output',
    ),
    Case(
        'finetune-not-one-hot',
        _npz({**_training_arrays(), 'y_val': np.full((32, 5), 0.2, np.float32)}, 'finetune'),
        'not one-hot',
    ),
    # 7. what would silently change the model is refused
    Case('bn-negative-variance', _negative_variance, 'variance + epsilon <= 0'),
    Case('onnx-custom-domain', _custom_domain, 'belong to a domain'),
    Case('onnx-local-function', _local_function, 'defines its own functions'),
    # 8. one line, never a traceback
    Case('quantizer-integer-1e30', _quantizer_integer, 'integer must be a whole number'),
    Case('onnx-gemm-1d-weight', _gemm_1d, 'must be 2-D'),
    Case('onnx-leaky-alpha-text', _leaky_alpha, 'alpha must be a non-negative number'),
    Case('finetune-resume-corrupt', _resume_broken, 'cannot be resumed'),
    Case(
        'limit-not-a-number',
        _output(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', 'o.keras', '--limit', 'layers=many']),
        'NAME=POSITIVE_INTEGER',
    ),
]
