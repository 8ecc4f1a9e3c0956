"""Report dataclasses for conversion, verification, check and export; each renders as text, JSON and Markdown."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem


def _table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace('|', '\\|').replace('\n', ' ')

    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    return '\n'.join(lines + ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows])


class _Report:
    def to_markdown(self) -> str:
        """The report as a Markdown section (a title line, then a table), for CI summaries and pull requests."""
        title, head, rows = self._markdown()
        return f'**{title}**\n\n{_table(head, rows)}\n'

    def _markdown(self) -> tuple[str, list[str], list[list[Any]]]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_jsonable)

    def save(self, path: Path) -> Path:
        from .outputs import atomic_write_text

        atomic_write_text(path, self.to_json() + '\n')
        return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, 'item'):
        return value.item()
    if hasattr(value, 'tolist'):
        return value.tolist()
    return str(value)


@dataclass
class LayerNote:
    source: str
    source_class: str
    hgq_class: str
    notes: list[str] = field(default_factory=list)


@dataclass
class ConversionReport(_Report):
    source: str
    framework: str
    model: str
    layers: list[LayerNote]
    hgq_layers: list[str]
    summary: list[str] = field(default_factory=list)  # model-level notes: the float policy, float vs quantized

    def _markdown(self) -> tuple[str, list[str], list[list[Any]]]:
        rows = [[n.source, n.source_class, n.hgq_class, '; '.join(n.notes)] for n in self.layers]
        return f'{self.source} ({self.framework}) -> HGQ2 model {self.model}', ['source layer', 'class', 'HGQ2', 'notes'], rows

    def to_text(self) -> str:
        lines = [f'Converted {self.source} ({self.framework}) into HGQ2 model {self.model!r}:']
        for note in self.layers:
            lines.append(f'  {note.source:<20} {note.source_class:<14} -> {note.hgq_class}')
            lines.extend(f'  {"":<20} {"":<14}    note: {n}' for n in note.notes)
        lines.extend(f'  {line}' for line in self.summary)
        return '\n'.join(lines)


@dataclass
class LayerMatch:
    """One source tensor compared with its counterpart in the converted model."""

    layer: str
    values: int
    mismatches: int
    max_abs_diff: float
    exact_required: bool  # False for float layers (softmax), whose error is only measured
    reason: str = ''  # why it is not required to be exact
    max_ulps: float = 0.0  # max |diff| in units in the last place (float32) of the tensor's largest magnitude

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0


@dataclass
class VerifyReport(_Report):
    """Bit-exactness of every compared tensor, on normal and on x4 stress inputs."""

    source: str
    reference: str
    results: dict[str, list[LayerMatch]]  # input set ('normal', 'stress') -> per-layer comparison
    bit_exact: bool
    first_divergence: dict[str, str | None]
    missing: list[str] = field(default_factory=list)

    def _markdown(self) -> tuple[str, list[str], list[list[Any]]]:
        rows = [
            [kind, m.layer, m.values, m.mismatches, 'yes' if m.exact_required else f'no: {m.reason}', f'{m.max_ulps:.3g}']
            for kind, matches in self.results.items()
            for m in matches
        ]
        verdict = 'bit-exact' if self.bit_exact else 'NOT bit-exact'
        return (
            f'{self.source} vs {self.reference}: {verdict}',
            ['inputs', 'layer', 'values', 'differ', 'exact required', 'ulp'],
            rows,
        )

    def to_text(self) -> str:
        inexact = sorted({m.layer for ms in self.results.values() for m in ms if not m.exact_required and m.mismatches})
        verdict = 'bit-exact' if self.bit_exact else 'NOT bit-exact'
        if self.bit_exact and inexact:
            verdict = f'bit-exact on every quantized tensor; {", ".join(inexact)} matched to a measured error (see below)'
        lines = [f'Verification of {self.source} against {self.reference}: {verdict}']
        for kind, matches in self.results.items():
            n_exact = sum(m.values for m in matches if m.exact_required)
            bad = [m for m in matches if m.exact_required and m.mismatches]
            lines.append(
                f'  {kind:<7} {len([m for m in matches if m.exact_required])} quantized tensors, {n_exact} values: '
                + ('all equal (numpy.array_equal)' if not bad else f'{sum(m.mismatches for m in bad)} values differ')
            )
            for m in bad:
                lines.append(f'          {m.layer}: {m.mismatches}/{m.values} differ, max |diff| {m.max_abs_diff:.3g}')
            if self.first_divergence.get(kind):
                lines.append(f'          first diverging layer: {self.first_divergence[kind]}')
            for m in matches:
                if not m.exact_required:
                    lines.append(
                        f'          {m.layer}: {m.reason}, not required to be exact; max |diff| {m.max_abs_diff:.3g}'
                        f' ({m.max_ulps:.3g} ulp of its largest value)'
                    )
        if self.missing:
            lines.append(f'  not compared (no counterpart): {", ".join(self.missing)}')
        return '\n'.join(lines)


@dataclass
class CheckItem:
    layer: str
    layer_class: str
    status: str  # 'ok', 'warning', 'unverified' (cannot be proven bit-exact on every input), 'error'
    reason: str = ''
    fix: str = ''


@dataclass
class CheckReport(_Report):
    model: str
    target: str
    items: list[CheckItem]

    @property
    def deployable(self) -> bool:
        """True only when no item is an error or unverified: an export that cannot be proven bit-exact on every
        input is never called deployable."""
        return all(item.status not in ('error', 'unverified') for item in self.items)

    @property
    def unverified(self) -> list[CheckItem]:
        return [item for item in self.items if item.status == 'unverified']

    def problems(self) -> list[Problem]:
        return [Problem(i.layer, i.reason, i.fix, i.status) for i in self.items if i.status != 'ok']

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), 'deployable': self.deployable}

    def _verdict(self) -> str:
        if self.deployable:
            return 'deployable'
        if any(item.status == 'error' for item in self.items):
            return 'NOT deployable'
        return 'unverified (NOT deployable: bit-exactness on every input cannot be proven)'

    def _markdown(self) -> tuple[str, list[str], list[list[Any]]]:
        rows = [[i.status, i.layer, i.layer_class, i.reason, i.fix] for i in self.items]
        verdict = self._verdict()
        return f'{self.model} on {self.target}: {verdict}', ['status', 'layer', 'class', 'reason', 'fix'], rows

    def to_text(self) -> str:
        lines = [f'Deployability of {self.model!r} on {self.target}:']
        for item in self.items:
            extra = f' - {item.reason}' + (f' Fix: {item.fix}' if item.fix else '') if item.reason else ''
            lines.append(f'  {item.status.upper():<10} {item.layer:<22} {item.layer_class:<22}{extra}')
        lines.append('Verdict: ' + (self._verdict() if self.deployable else f'{self._verdict()} (see above)'))
        return '\n'.join(lines)


@dataclass
class ExportReport(_Report):
    """What an export wrote and proved: bit-exactness per input set, estimates, sizes, timings."""

    target: str
    out_dir: str
    bit_exact: dict[str, bool]  # input set -> firmware model == HGQ2 model
    mismatches: dict[str, int]
    compared_values: dict[str, int]
    estimates: dict[str, Any]
    files: list[str]
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    bytes_written: int = 0
    first_divergence: dict[str, str | None] = field(default_factory=dict)  # input set -> first differing layer

    @property
    def ok(self) -> bool:
        return bool(self.bit_exact) and all(self.bit_exact.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), 'ok': self.ok, 'verified': self.verified}

    @property
    def verified(self) -> bool:
        """Whether any firmware model was run and compared at all (oneAPI/Catapult cannot be compiled here)."""
        return bool(self.bit_exact)

    def _markdown(self) -> tuple[str, list[str], list[list[Any]]]:
        rows = [
            [
                kind,
                self.compared_values[kind],
                self.mismatches[kind],
                'yes' if exact else 'NO',
                self.first_divergence.get(kind) or '',
            ]
            for kind, exact in self.bit_exact.items()
        ]
        rows += [[key, '', '', '', value] for key, value in self.estimates.items() if not isinstance(value, dict)]
        verdict = 'bit-exact' if self.ok else 'NOT bit-exact' if self.verified else 'written, NOT verified'
        head = ['inputs', 'values', 'differ', 'bit-exact', 'first divergence']
        return f'export to {self.target} in {self.out_dir}: {verdict}', head, rows

    def to_text(self) -> str:
        verdict = (
            'bit-exact' if self.ok else 'NOT bit-exact' if self.verified else 'written, NOT verified (no compiler for it here)'
        )
        lines = [f'Export to {self.target} in {self.out_dir}: {verdict}']
        for kind, exact in self.bit_exact.items():
            lines.append(
                f'  {kind:<7} {self.compared_values[kind]} values compared, {self.mismatches[kind]} differ'
                + (' (numpy.array_equal)' if exact else '')
            )
            if kind in self.first_divergence:
                lines.append(
                    f'          first diverging layer: {self.first_divergence[kind] or "(none found in the per-layer trace)"}'
                )
        for key, value in self.estimates.items():
            if isinstance(value, dict):
                value = ', '.join(f'{k} {v}' for k, v in value.items())
            lines.append(f'  {key}: {value}')
        lines.append(f'  written: {len(self.files)} files, {self.bytes_written / 1024:.0f} KiB')
        lines.append('  time: ' + ', '.join(f'{k} {v:.1f}s' for k, v in self.seconds.items()))
        lines.extend(f'  note: {n}' for n in self.notes)
        return '\n'.join(lines)
