"""da4ml as an export target: its deployability rules (``rules.py``), its export with the emulator and RTL proofs
(``export.py``, imported when it runs), the exact RND_CONV decomposition (``rounding.py``) and verilator
(``rtl.py``)."""

from __future__ import annotations

from typing import Any

from ..deploy.target import Target
from .rules import RULES, SUPPORTED, VERIFIED, parse


def _export(*args: Any, **kwargs: Any) -> Any:
    from .export import export

    return export(*args, **kwargs)


TARGET = Target('da4ml', 'da4ml', parse, RULES, _export, SUPPORTED, VERIFIED)
