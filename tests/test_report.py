"""Reports render as text, JSON and Markdown, and say what a reader needs: the verdict, per layer or input set."""

from __future__ import annotations

import json

from hgqbridge.report import CheckItem, CheckReport, ExportReport


def test_check_report_in_three_forms() -> None:
    report = CheckReport(
        'm', 'da4ml', [CheckItem('d', 'QDense', 'ok'), CheckItem('s', 'QSoftmax', 'error', 'no | table [rule]', 'use X')]
    )
    assert not report.deployable
    assert 'NOT deployable' in report.to_text() and json.loads(report.to_json())['deployable'] is False
    md = report.to_markdown().splitlines()
    assert md[0] == '**m on da4ml: NOT deployable**' and md[2] == '| status | layer | class | reason | fix |'
    assert md[5] == '| error | s | QSoftmax | no \\| table [rule] | use X |'  # a | in a cell is escaped


def test_export_report_markdown_lists_every_input_set() -> None:
    report = ExportReport(
        'da4ml',
        'prj',
        {'normal': True, 'stress': False},
        {'normal': 0, 'stress': 3},
        {'normal': 10, 'stress': 10},
        {'LUT estimate': 12.5},
        [],
        {},
        first_divergence={'stress': 'fc2'},
    )
    md = report.to_markdown()
    assert '| normal | 10 | 0 | yes |  |' in md and '| stress | 10 | 3 | NO | fc2 |' in md and '| LUT estimate |' in md
    assert not report.ok and report.verified
