"""alkaid (da4ml's successor, same authors) as an export target: its deployability rules (``rules.py``), its
export with the emulator and RTL proofs (``export.py``, imported when it runs) and verilator (``rtl.py``).
alkaid and da4ml 0.6 live in one environment: they register HGQ2 tracers under different entry-point groups
(``alir_tracer.plugins`` / ``alkaid_keras`` and ``dais_tracer.plugins``)."""

from __future__ import annotations

from typing import Any

from ..deploy.target import Target
from .rules import RULES, SUPPORTED, VERIFIED, parse


def _export(*args: Any, **kwargs: Any) -> Any:
    from .export import export

    return export(*args, **kwargs)


TARGET = Target('alkaid', 'alkaid', parse, RULES, _export, SUPPORTED, VERIFIED)
