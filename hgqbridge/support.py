"""The support matrix, generated from the registries and the targets' tables (the README's table is this output)."""

from __future__ import annotations

from typing import Any


def _cell(builds: tuple[str, ...], target: Any) -> str:
    if not builds:
        return 'n/a (removed)'
    missing = [b for b in builds if b not in target.accepts]
    if missing:
        return 'no: ' + ', '.join(missing) if len(missing) == len(builds) else 'partly (not ' + ', '.join(missing) + ')'
    return 'proven bit-exact' if all(b in target.proven for b in builds) else 'accepted (upstream table)'


def support_markdown() -> str:
    from .converters import TARGETS, registries

    targets = list(TARGETS.values())
    lines: list[str] = []
    for registry in registries():
        layered = registry.what != 'QKeras quantizer'
        head = f'| {registry.what} | status |' + (' HGQ2 layers |' + ''.join(f' {t.name} |' for t in targets) if layered else '')
        lines += [head, '|---|---|' + ('---|' * (1 + len(targets)) if layered else '')]
        for name in registry.names():
            entry = registry.entry(name)
            if entry is None:
                continue
            extra = (
                f' {", ".join(entry.builds) or "-"} |' + ''.join(f' {_cell(entry.builds, t)} |' for t in targets)
                if layered
                else ''
            )
            lines.append(f'| `{name}` | {entry.status} |{extra}')
        for name, refusal in registry.refused():
            lines.append(f'| `{name}` | refused: {refusal.reason} |' + (' |' * (1 + len(targets)) if layered else ''))
        lines.append('')
    lines += ['| HGQ2 / Keras layer |' + ''.join(f' {t.name} |' for t in targets), '|---|' + '---|' * len(targets)]
    for name in sorted({c for t in targets for c in t.accepts}):
        cells = [
            'proven bit-exact' if name in t.proven else 'accepted (upstream table)' if name in t.accepts else 'no'
            for t in targets
        ]
        lines.append(f'| `{name}` |' + ''.join(f' {c} |' for c in cells))
    return '\n'.join(lines)
