"""hls4ml as an export target: its deployability rules (``rules.py``) and its export with the C-simulation proof
(``export.py``, imported when it runs)."""

from __future__ import annotations

from typing import Any

from ..deploy.target import Target
from .rules import BACKENDS, RULES, SUPPORTED, VERIFIED, parse


def _export(*args: Any, **kwargs: Any) -> Any:
    from .export import export

    return export(*args, **kwargs)


TARGET = Target('hls4ml', 'hls4ml:' + ' | hls4ml:'.join(BACKENDS), parse, RULES, _export, SUPPORTED, VERIFIED)
