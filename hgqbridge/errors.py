"""Every user-facing failure of hgqbridge is an HGQBridgeError.

A message reads: what is wrong, where (file, layer path), what was received, what to do. Conversions and
checks collect every problem first and raise once (``ProblemsError``), so a user sees the whole list.
"""

from __future__ import annotations

from dataclasses import dataclass


class HGQBridgeError(Exception):
    """Base class. ``str(err)`` is a one-line, Keras-style message."""

    def __init__(self, what: str, *, where: str | None = None, received: object = None, fix: str | None = None):
        self.what, self.where, self.received, self.fix = what, where, received, fix
        super().__init__(self.message())

    def message(self) -> str:
        parts = [self.what if self.where is None else f'{self.where}: {self.what}']
        if self.received is not None:
            parts.append(f'received {self.received!r}')
        if self.fix:
            parts.append(self.fix)
        return '; '.join(parts)


class SourceFileError(HGQBridgeError):
    """A model file cannot be read: missing, not a model, corrupted, or inconsistent."""


class QuantizerSyntaxError(SourceFileError):
    """A quantizer string or dict is malformed."""


class DataFileError(HGQBridgeError):
    """A data file (.npz) is missing arrays, or holds the wrong shape, dtype or non-finite values."""


class LimitError(HGQBridgeError):
    """A file declares a size beyond a budget of ``hgqbridge.limits.Limits``."""


class OutputExistsError(HGQBridgeError):
    """An output already exists and --force was not given."""


@dataclass(frozen=True)
class Problem:
    """One thing that stops a layer from being converted, checked or exported."""

    layer: str
    reason: str
    fix: str = ''
    severity: str = 'error'  # 'error' or 'warning'

    def line(self) -> str:
        fix = f' Fix: {self.fix}' if self.fix else ''
        return f'[{self.severity}] {self.layer}: {self.reason}.{fix}'


class LayerProblem(Exception):
    """Raised inside a handler (or a spec while it builds) for one layer; the driver turns it into a Problem and
    goes on. ``fix`` is required: a problem always says what to do."""

    def __init__(self, reason: str, fix: str, *, received: object = None):
        self.reason = reason if received is None else f'{reason}; received {received!r}'
        self.fix = fix
        super().__init__(self.reason)


class ProblemsError(HGQBridgeError):
    """Several layers cannot be converted/exported; ``problems`` lists all of them."""

    def __init__(self, what: str, problems: list[Problem], *, where: str | None = None):
        self.problems = problems
        listing = ''.join(f'\n  {p.line()}' for p in problems)
        super().__init__(f'{what} ({len(problems)} problem{"s" * (len(problems) != 1)}):{listing}', where=where)


class UnsupportedError(ProblemsError):
    """The source model uses layers or quantizers that cannot be converted exactly."""


class ExportError(HGQBridgeError):
    """An export step (write, compile, trace) failed."""
