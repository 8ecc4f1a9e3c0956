"""Reading QKeras files with h5py/json only, and every way such a file can be wrong."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from hgqbridge.converters import read
from hgqbridge.errors import SourceFileError
from hgqbridge.graph import SourceGraph
from hgqbridge.limits import Limits

from ...conftest import QKERAS, QKERAS_V3


def read_h5(path: Path, limits: Limits = Limits()) -> SourceGraph:
    return read(path, None, limits)[0]


def read_json(path: Path, weights: Path | None) -> SourceGraph:
    return read(path, weights)[0]


read_keras = read_savedmodel = read_h5


def test_reads_full_h5_without_tensorflow() -> None:
    graph = read_h5(QKERAS / 'jet_tagger.h5')
    assert [layer.class_name for layer in graph][:3] == ['InputLayer', 'QDense', 'QActivation']
    assert graph.inputs == ['input_1'] and graph.outputs == ['softmax']
    assert graph.layer('fc1').weight('kernel').shape == (16, 64)
    assert graph.layer('relu1').inbound == ['fc1']


def test_reader_imports_no_framework(tmp_path: Path) -> None:
    code = (
        'import sys; from hgqbridge.converters import read; from pathlib import Path; '
        f'read(Path({str(QKERAS / "jet_tagger.h5")!r})); '
        'bad = [m for m in ("tensorflow", "keras", "qkeras", "tf_keras", "hgq") if m in sys.modules]; print(bad); sys.exit(len(bad))'
    )
    import subprocess

    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_reads_json_with_weights() -> None:
    graph = read_json(QKERAS / 'mixed_small.json', QKERAS / 'mixed_small_weights.h5')
    assert graph.layer('dense_b').config['activation']['class_name'] == 'quantized_relu'
    assert graph.layer('dense_float').weight('kernel').shape == (6, 3)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _corrupt(tmp_path: Path, name: str) -> Path:
    data = (QKERAS / 'jet_tagger.h5').read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda t: t / 'missing.h5', 'does not exist'),
        (lambda t: t, 'directory'),
        (lambda t: _write(t / 'empty.h5', b''), 'empty'),
        (lambda t: _write(t / 'text.h5', b'hello, not a model'), 'not an HDF5'),
        (lambda t: _corrupt(t, 'cut.h5'), 'truncated or corrupted|incomplete or corrupted'),
        (lambda t: shutil.copy(QKERAS / 'mixed_small_weights.h5', t / 'w.h5') and t / 'w.h5', 'no model architecture'),
    ],
    ids=['missing', 'directory', 'empty', 'not-hdf5', 'truncated', 'weights-only'],
)
def test_bad_h5(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(SourceFileError, match=message):
        read_h5(make(tmp_path))


@pytest.mark.parametrize(
    'text, message',
    [
        ('{not json', 'not valid JSON'),
        ('[1, 2]', 'not a Keras model config'),
        ('{"class_name": "Functional", "config": {"layers": 3}}', 'no list of layers'),
        ('{"class_name": "Functional", "config": {"layers": [{"class_name": "Dense"}]}}', 'lacks class_name, config or name'),
    ],
)
def test_bad_json(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / 'm.json'
    path.write_text(text)
    with pytest.raises(SourceFileError, match=message):
        read_json(path, QKERAS / 'mixed_small_weights.h5')


def test_json_and_weights_that_do_not_belong_together(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match='do not belong together'):
        read_json(QKERAS / 'mixed_small.json', _weights_of('jet_tagger', tmp_path))


def test_json_needs_weights() -> None:
    with pytest.raises(SourceFileError, match='--weights'):
        read_json(QKERAS / 'mixed_small.json', None)


def test_dangling_inbound(tmp_path: Path) -> None:
    config = json.loads((QKERAS / 'mixed_small.json').read_text())
    config['config']['layers'][2]['inbound_nodes'] = [[['nowhere', 0, 0, {}]]]
    path = tmp_path / 'm.json'
    path.write_text(json.dumps(config))
    with pytest.raises(SourceFileError, match='does not define'):
        read_json(path, QKERAS / 'mixed_small_weights.h5')


def _weights_of(name: str, tmp_path: Path) -> Path:
    """The model_weights group of a full .h5 copied out as a weights-only file."""
    import h5py

    out = tmp_path / f'{name}_weights.h5'
    with h5py.File(QKERAS / f'{name}.h5', 'r') as src, h5py.File(out, 'w') as dst:
        for key in src['model_weights']:
            src['model_weights'].copy(key, dst)
        for key, value in src['model_weights'].attrs.items():
            dst.attrs[key] = value
    return out


V3 = QKERAS_V3 / 'v3_cnn.keras'


def _rezip(tmp: Path, name: str, drop: str = '', replace: dict | None = None) -> Path:
    """A copy of the v3_cnn .keras archive without member ``drop`` and with members replaced."""
    import zipfile

    out = tmp / name
    with zipfile.ZipFile(V3) as src, zipfile.ZipFile(out, 'w') as dst:
        for info in src.infolist():
            if info.filename != drop:
                dst.writestr(info.filename, (replace or {}).get(info.filename, src.read(info.filename)))
    return out


def _h5_without_bias(tmp: Path) -> bytes:
    """model.weights.h5 of v3_cnn with the conv1 bias (q_conv2d/vars/1) deleted."""
    import io
    import zipfile

    import h5py

    buf = io.BytesIO(zipfile.ZipFile(V3).read('model.weights.h5'))
    with h5py.File(buf, 'r+') as f:
        del f['layers/q_conv2d/vars/1']
    return buf.getvalue()


def test_reads_qkeras_v3_keras_file() -> None:
    graph = read_keras(V3)
    assert [layer.class_name for layer in graph][:4] == ['InputLayer', 'QActivation', 'QConv2D', 'QActivation']
    conv = graph.layer('conv1')
    assert conv.weight('kernel').shape == (3, 3, 2, 4) and conv.weight('bias').shape == (4,)
    assert graph.layer('bn').weight('moving_variance').shape == (4,)


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda t: _write(t / 'x.keras', b'PK\x03\x04 truncated'), 'not a zip archive'),
        (lambda t: _write(t / 'x.keras', V3.read_bytes()[:2000]), 'not a zip archive|corrupted'),
        (lambda t: _rezip(t, 'x.keras', drop='model.weights.h5'), 'lacks required members'),
        (lambda t: _rezip(t, 'x.keras', drop='config.json'), 'lacks required members'),
        (lambda t: _rezip(t, 'x.keras', replace={'config.json': b'{oops'}), 'not valid JSON'),
        (lambda t: _rezip(t, 'x.keras', replace={'config.json': b'[]'}), 'not a Keras model config'),
        (
            lambda t: _rezip(t, 'x.keras', replace={'model.weights.h5': b'garbage'}),
            'weights.h5 in the .keras archive is corrupted',
        ),
        (lambda t: _rezip(t, 'x.keras', replace={'model.weights.h5': _h5_without_bias(t)}), 'do not match its class'),
    ],
    ids=['not-zip', 'truncated', 'no-weights', 'no-config', 'bad-json', 'json-list', 'bad-h5', 'missing-bias'],
)
def test_bad_keras(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(SourceFileError, match=message):
        read_keras(make(tmp_path))


SM = QKERAS / 'zoo_savedmodel_conv_bn_savedmodel'


def _sm_copy(tmp: Path, drop: str = '', replace: dict | None = None) -> Path:
    out = tmp / 'sm'
    shutil.copytree(SM, out)
    if drop:
        target = out / drop
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for name, data in (replace or {}).items():
        (out / name).write_bytes(data)
    return out


def test_reads_savedmodel_without_loading_its_functions() -> None:
    graph = read_savedmodel(SM)
    layer = graph.layer('c')
    assert layer.class_name == 'QConv2DBatchnorm' and layer.weight('kernel').shape == (3, 3, 2, 3)
    assert layer.weight('moving_variance').shape == (3,) and 'batchnorm/gamma:0' in ' '.join(layer.weights)


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda t: t, 'not a tf.keras SavedModel'),
        (lambda t: _sm_copy(t, drop='keras_metadata.pb'), 'not a tf.keras SavedModel'),
        (lambda t: _sm_copy(t, replace={'keras_metadata.pb': b'\x0a\x05broken'}), 'not a readable'),
        (lambda t: _sm_copy(t, drop='variables'), 'variables cannot be read'),
        (lambda t: _sm_copy(t, replace={'variables/variables.index': b'junk'}), 'variables cannot be read'),
    ],
    ids=['empty-dir', 'no-metadata', 'bad-metadata', 'no-variables', 'bad-index'],
)
def test_bad_savedmodel(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(SourceFileError, match=message):
        read_savedmodel(make(tmp_path))


def test_a_file_that_hangs_hdf5_is_a_clear_error(tmp_path: Path) -> None:
    """16 zero bytes over the global heap collection that holds the model_config string make the HDF5 C library
    loop; the reader's child process stops at its own CPU limit and the user gets one error."""
    data = (QKERAS / 'zoo_bits_symmetric.h5').read_bytes()
    path = _write(tmp_path / 'hang.h5', data[:2064] + bytes(16) + data[2080:])
    with pytest.raises(SourceFileError, match=r'did not finish within its CPU limit \(2 s\)'):
        read_h5(path, Limits(read_seconds=2))
