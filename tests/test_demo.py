"""The demo runs the whole path and ends bit-exact at every arrow, with a smaller model."""

import json
from pathlib import Path

import pytest

from hgqbridge.demo import run_demo
from hgqbridge.errors import OutputExistsError


@pytest.mark.slow
def test_demo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'demo'
    assert run_demo(out, epochs=40) == 0
    printed = capsys.readouterr().out
    assert 'EBOPs' in printed and 'alkaid LUT estimate' in printed
    report = json.loads((out / 'demo_report.json').read_text())
    assert report['all_bit_exact'] is True
    assert report['verify']['bit_exact'] is True
    chosen = report['finetune']['chosen_epoch']
    assert chosen is not None
    history = report['finetune']['history']
    # the automatic beta (hgqbridge/beta.py) at 40 epochs: 1.95x fewer EBOPs measured on 2 cores; bench/ has the claims
    assert history[chosen]['ebops'] < report['finetune']['baseline_ebops'] / 1.5
    assert (out / 'finetune' / 'pareto.png').stat().st_size > 10_000 and (out / 'finetune' / 'bit_widths.png').is_file()
    assert (out / 'finetune' / 'pareto.json').is_file() and (out / 'finetune' / 'model.keras').is_file()
    for stage in ('imported', 'finetuned'):
        assert (out / f'{stage}_alkaid' / 'verilog').is_dir() and (out / f'{stage}_hls4ml_vitis' / 'firmware').is_dir()
    with pytest.raises(OutputExistsError):
        run_demo(out, epochs=1)
