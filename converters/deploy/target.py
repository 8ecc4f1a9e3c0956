"""What every export target declares in its folder's ``__init__.py``: its name, how to read its options, its
rules and its exporter. The door (``converters/__init__.py``) lists them in ``TARGETS``; nothing else knows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .rules import Rule


@dataclass(frozen=True)
class Target:
    """``parse(variant, options)`` turns ``--target NAME[:variant]`` and the CLI's options (only those the user
    gave; None is 'not given') into the target's own option dataclass, or raises an HGQBridgeError naming what is
    wrong; ``rules`` is the target's table; ``export(model, options, out_dir, x, force, sources)`` writes the
    project and proves it (imported when it runs: the toolchain is heavy). ``accepts``: HGQ2 / Keras classes it
    deploys, ``proven``: those its export tests prove bit-exact."""

    name: str
    usage: str
    parse: Callable[[str, dict[str, Any]], Any]
    rules: list[Rule]
    export: Callable[..., Any]
    accepts: tuple[str, ...]
    proven: tuple[str, ...]
