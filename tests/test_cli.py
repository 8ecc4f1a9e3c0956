"""The hgqbridge command: the README's commands work, bad input is one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hgqbridge.cli import main

from .conftest import QKERAS, ROOT


def test_help_is_instant_and_imports_no_framework() -> None:
    code = 'import sys, hgqbridge.cli as c; c.build_parser().format_help(); print([m for m in ("tensorflow", "keras", "hgq", "hls4ml", "ray") if m in sys.modules])'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == '[]', out.stdout + out.stderr  # how fast that is: bench/, not a timed test
    assert main.__module__ == 'hgqbridge.cli'


def test_convert_verify_inspect_check_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / 'model.keras'
    assert main(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(model), '--verify']) == 0
    out = capsys.readouterr().out
    assert 'bit-exact' in out and 'NOT' not in out and model.is_file()

    assert main(['inspect', str(model)]) == 0
    out = capsys.readouterr().out
    assert (
        'ap_fixed<6,1,AP_RND_CONV,AP_SAT>' in out and 'ap_ufixed<6,0,AP_RND_CONV,AP_SAT>' in out and 'Total EBOPs: 215454' in out
    )

    assert main(['check', str(model), '--target', 'da4ml', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['deployable'] is True

    data = tmp_path / 'data.npz'
    with np.load(QKERAS / 'jet_tagger.golden.npz') as g:
        np.savez(data, x=g['x_normal'][:64])
    assert main(['export', str(model), '--target', 'da4ml', '-o', str(tmp_path / 'prj'), '--data', str(data), '--no-rtl']) == 0
    assert 'bit-exact' in capsys.readouterr().out
    args = ['export', str(model), '--target', 'alkaid', '-o', str(tmp_path / 'prj_al'), '--data', str(data), '--no-rtl']
    assert main(args) == 0
    out = capsys.readouterr().out
    assert 'bit-exact' in out and 'LUT estimate (alkaid cost)' in out and (tmp_path / 'prj_al' / 'vhdl').is_dir()
    assert main(['check', str(model), '--target', 'alkaid:vitis']) == 2
    assert 'alkaid has no variants' in capsys.readouterr().err


def test_convert_json_with_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [
        'convert',
        str(QKERAS / 'mixed_small.json'),
        '--weights',
        str(QKERAS / 'mixed_small_weights.h5'),
        '-o',
        str(tmp_path / 'm.keras'),
    ]
    assert main([*args, '--verify']) == 0
    assert 'bit-exact' in capsys.readouterr().out


def _run(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    'args, message',
    [
        (['convert', 'nowhere.h5', '-o', 'x.keras'], 'does not exist'),
        (['convert', str(QKERAS / 'manifest.json'), '-o', 'x.keras'], 'not a Keras model config'),
        (['convert', str(QKERAS / 'mixed_small.json'), '-o', 'x.keras'], '--weights'),
        (['convert', str(QKERAS / 'jet_tagger.data.npz'), '-o', 'x.keras'], 'unknown model file type'),
        (['convert', str(QKERAS / 'jet_tagger.h5'), '-o', 'x.keras', '--input-format', 'int8'], 'expected fixed'),
        (['inspect', 'nowhere.keras'], 'does not exist'),
        (['check', str(QKERAS / 'jet_tagger.h5'), '--target', 'da4ml'], 'an HGQ2 model is a .keras file'),
        (['check', str(ROOT / 'fixtures' / 'qkeras_v3' / 'v3_mlp.keras'), '--target', 'da4ml'], 'cannot load the HGQ2 model'),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith(f'hgqbridge {args[0]}: error:')


def test_unsupported_layer_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = json.loads((QKERAS / 'mixed_small.json').read_text())
    config['config']['layers'][3]['class_name'] = 'Lambda'
    config['config']['layers'][4]['config']['activation'] = 'quantized_ulaw(8)'
    (tmp_path / 'bad.json').write_text(json.dumps(config))
    code, err = _run(
        [
            'convert',
            str(tmp_path / 'bad.json'),
            '--weights',
            str(QKERAS / 'mixed_small_weights.h5'),
            '-o',
            str(tmp_path / 'o.keras'),
        ],
        capsys,
    )
    assert code == 2 and '2 problems' in err and 'relu_a (Lambda)' in err and 'q_a (QActivation)' in err
    assert not (tmp_path / 'o.keras').exists()


def test_no_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'm.keras'
    out.write_text('precious')
    code, err = _run(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(out)], capsys)
    assert code == 2 and 'already exists' in err and out.read_text() == 'precious'
    code, err = _run(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(out), '--force'], capsys)
    assert code == 2 and 'replaces only what hgqbridge wrote' in err and out.read_text() == 'precious'
    ours = tmp_path / 'ours.keras'
    assert main(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(ours)]) == 0
    assert main(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(ours), '--force']) == 0
    assert ours.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ['m.keras', 'ours.keras']  # no temporary left behind


def test_data_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / 'm.keras'
    assert main(['convert', str(QKERAS / 'jet_tagger.h5'), '-o', str(model)]) == 0
    capsys.readouterr()
    cases = {
        'noarray.npz': ({'y': np.zeros(3)}, 'lacks array(s) x'),
        'nan.npz': ({'x': np.full((4, 16), np.nan)}, 'NaN or Inf'),
        'shape.npz': ({'x': np.zeros((4, 15))}, 'does not fit the model input'),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        code, err = _run(
            ['export', str(model), '--target', 'da4ml', '-o', str(tmp_path / f'prj_{name}'), '--data', str(tmp_path / name)],
            capsys,
        )
        assert code == 2 and message in err, err


def test_finetune_refuses_what_it_cannot_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A model with no trainable bit width, and a budget that is not a time: one line each, exit 2."""
    import keras

    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(2, activation='softmax')(inp), name='plain').save(tmp_path / 'plain.keras')
    rng = np.random.default_rng(0)
    y = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 16)]
    np.savez(
        tmp_path / 'd.npz',
        x=rng.normal(size=(16, 4)).astype(np.float32),
        y=y,
        x_val=rng.normal(size=(16, 4)).astype(np.float32),
        y_val=y,
    )
    args = ['finetune', str(tmp_path / 'plain.keras'), '--data', str(tmp_path / 'd.npz'), '-o', str(tmp_path / 'ft')]
    code, err = _run([*args, '--epochs', '1'], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert 'no trainable bit widths' in err and "received 'no HGQ2 quantizer in any layer'" in err and '--bits' in err
    code, err = _run([*args, '--budget', 'ten minutes', '--force'], capsys)
    assert code == 2 and 'invalid --budget' in err and '10m' in err
