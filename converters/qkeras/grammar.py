"""The QKeras quantizer string grammar: ``name(arg, ..., key=value)`` tokenised and parsed, never evaluated.

Values are integers, floats, True/False/None and quoted strings. Anything else (an unquoted word, nested
parentheses, a positional argument after a keyword) is a QuantizerSyntaxError saying what was received.
"""

from __future__ import annotations

import re
from typing import Any

from hgqbridge.errors import QuantizerSyntaxError

_TOKEN = re.compile(
    r'\s*(?:(?P<num>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))|(?P<name>[A-Za-z_]\w*)'
    r"|(?P<str>'[^']*'|\"[^\"]*\")|(?P<punct>[(),=\[\]]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == '':
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise QuantizerSyntaxError(
                'unexpected character in quantizer string', received=text, fix='check the quantizer string'
            )
        kind = m.lastgroup or ''
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _value(kind: str, tok: str, text: str) -> Any:
    if kind == 'num':
        value = float(tok)
        return int(value) if re.fullmatch(r'[-+]?\d+', tok) else value
    if kind == 'str':
        return tok[1:-1]
    if kind == 'name' and tok in ('True', 'False', 'None'):
        return {'True': True, 'False': False, 'None': None}[tok]
    raise QuantizerSyntaxError(
        f'argument {tok!r} is neither a number, True/False/None nor a quoted string',
        received=text,
        fix="quote string arguments, e.g. alpha='auto_po2' (QKeras itself mangles unquoted ones)",
    )


def parse_string(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """``'quantized_bits(6, 0, alpha=1)'`` → ``('quantized_bits', [6, 0], {'alpha': 1})``. Never evaluates."""
    toks = _tokens(text)
    if not toks or toks[0][0] != 'name':
        raise QuantizerSyntaxError(
            'a quantizer string must start with a name', received=text, fix='e.g. quantized_bits(6,0,alpha=1)'
        )
    name, rest = toks[0][1], toks[1:]
    if not rest:
        return name, [], {}
    if rest[0][1] != '(' or rest[-1][1] != ')':
        raise QuantizerSyntaxError('unbalanced or missing parentheses', received=text, fix='write name(arg, ..., key=value)')
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    body = rest[1:-1]
    if any(t[1] in ('(', ')') for t in body):
        raise QuantizerSyntaxError('nested or unbalanced parentheses', received=text, fix='write name(arg, ..., key=value)')
    items: list[list[tuple[str, str]]] = [[]]
    for tok in body:
        if tok[1] == ',':
            items.append([])
        else:
            items[-1].append(tok)
    if items == [[]]:
        return name, [], {}
    for item in items:
        if len(item) == 1:
            if kwargs:
                raise QuantizerSyntaxError(
                    'a positional argument follows a keyword argument', received=text, fix='put positional arguments first'
                )
            args.append(_value(*item[0], text))
        elif len(item) == 3 and item[0][0] == 'name' and item[1][1] == '=':
            kwargs[item[0][1]] = _value(*item[2], text)
        else:
            raise QuantizerSyntaxError('malformed argument list', received=text, fix='write name(arg, ..., key=value)')
    return name, args, kwargs
