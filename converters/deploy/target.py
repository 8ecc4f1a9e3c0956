"""What every export target declares in its folder's ``__init__.py``: its name, how to read its options, its
rules and its exporter. The door (``converters/__init__.py``) lists them in ``TARGETS``; nothing else knows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hgqbridge.errors import HGQBridgeError

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


def rtl_only(name: str, variant: str, options: dict[str, Any], variants_note: str = '') -> bool | None:
    """The options of a target that takes no variant and only ``rtl`` (alkaid, da4ml): its ``rtl`` (None: not
    given), or an HGQBridgeError naming the variant or the options it does not take."""
    if variant:
        raise HGQBridgeError(
            f'unknown target: {name} has no variants{variants_note}', received=f'{name}:{variant}', fix=f'use --target {name}'
        )
    unknown = sorted(k for k, v in options.items() if v is not None and k != 'rtl')
    if unknown:
        raise HGQBridgeError(f'option(s) that {name} does not take', received=unknown, fix='drop them (they are hls4ml options)')
    return options.get('rtl')
