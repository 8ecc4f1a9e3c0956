"""Budgets: the most an untrusted model or data file may make hgqbridge allocate, count or wait for.

Every size a file declares (a weight's shape, an input width, a padding, a constant-folding result, a data
array's header) is checked against these before anything of that size is allocated, so a 1 KB file cannot ask
for gigabytes. The defaults are far above the models people put on FPGAs (a few hundred thousand weights,
tensors of thousands of values, tens of layers); a model that really is larger raises them, on the command line
with ``--limit NAME=VALUE`` (repeatable) or from Python with ``Limits(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from .errors import HGQBridgeError, LimitError


@dataclass(frozen=True)
class Limits:
    """``layers``: layers (or ONNX nodes) in one model. ``elements``: values in one tensor of one sample (an
    input, a layer's output, a folded constant, a per-element quantizer). ``weight_bytes``: all weight arrays of
    one model together. ``data_bytes``: all arrays of one data file together, uncompressed. ``read_seconds`` /
    ``read_memory``: CPU time and address space of the child process that parses HDF5 files."""

    layers: int = 2000
    elements: int = 1 << 24
    weight_bytes: int = 1 << 31
    data_bytes: int = 1 << 32
    read_seconds: int = 120
    read_memory: int = 1 << 33

    @classmethod
    def parse(cls, items: list[str] | None) -> Limits:
        """``['layers=5000', 'elements=1e8']`` on top of the defaults."""
        names = [f.name for f in fields(cls)]
        limits = cls()
        for item in items or []:
            name, _, text = item.partition('=')
            try:
                value = float(text)
            except ValueError:
                value = float('nan')
            if name.strip() not in names or not (value >= 1 and value < 2**62 and value == int(value)):
                raise HGQBridgeError(
                    'a --limit must be NAME=POSITIVE_INTEGER', received=item, fix=f'NAME is one of {", ".join(names)}'
                )
            limits = replace(limits, **{name.strip(): int(value)})
        return limits

    def check(self, name: str, value: int | float, what: str, where: str) -> None:
        """Raise a LimitError when ``value`` exceeds the budget ``name``."""
        if value > getattr(self, name):
            raise LimitError(
                f'{what} exceeds the {name} limit',
                where=where,
                received=f'{value:.0f} > {getattr(self, name)}',
                fix=f'if the model really is this large, raise it: --limit {name}={int(value)}',
            )
