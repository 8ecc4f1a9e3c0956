"""Errors read: what is wrong, where, what was received, what to do; and every problem a handler raises says
what to do (no LayerProblem without a fix anywhere in the code)."""

from __future__ import annotations

import ast

from hgqbridge.errors import HGQBridgeError, LayerProblem, Problem, UnsupportedError

from .conftest import ROOT


def test_message_reads_what_where_received_fix() -> None:
    err = HGQBridgeError('the thing is wrong', where='m.h5:layer', received=3, fix='do this')
    assert str(err) == 'm.h5:layer: the thing is wrong; received 3; do this'


def test_a_list_of_problems_is_one_line_then_one_line_each() -> None:
    err = UnsupportedError(
        'the model cannot be converted exactly',
        [Problem('m/a (X)', 'bad', 'fix a'), Problem('m/b (Y)', 'worse', 'fix b')],
        where='m.h5',
    )
    lines = str(err).splitlines()
    assert lines == [
        'm.h5: the model cannot be converted exactly (2 problems):',
        '  [error] m/a (X): bad. Fix: fix a',
        '  [error] m/b (Y): worse. Fix: fix b',
    ]


def test_layer_problem_carries_what_was_received() -> None:
    assert LayerProblem('units must be positive', 're-save', received=-3).reason == 'units must be positive; received -3'


def test_no_layer_problem_without_a_fix() -> None:
    """Every ``LayerProblem(reason, fix)`` in the code gives a non-empty fix."""
    missing = []
    for path in [*ROOT.glob('hgqbridge/**/*.py'), *ROOT.glob('converters/**/*.py')]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'LayerProblem':
                fix = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == 'fix'), None)
                if fix is None or (isinstance(fix, ast.Constant) and not fix.value):
                    missing.append(f'{path.relative_to(ROOT)}:{node.lineno}')
    assert missing == []
