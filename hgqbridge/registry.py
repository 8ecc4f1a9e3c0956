"""One Registry class: handlers keyed by the exact class name of what they handle, each with what it declares.

A handler is registered once per exact name, with everything the rest of the tool needs to know about that
source layer: its support ``status`` (the support matrix prints it), the ``weights`` it reads in the order
Keras 3 creates them (``.keras`` archives name variables by position only), the HGQ2 / Keras classes it
``builds`` (what the targets' tables are checked against), and whether it ``quantizes`` (a layer that carries the
source's own quantizers: a model with one is converted bit-exactly, a model without is a float model). Known
names that are refused on purpose carry the reason and what to do. Every converter folder owns its registries,
fills them at import and freezes them; nothing changes them afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

H = TypeVar('H', bound=Callable)


@dataclass(frozen=True)
class Refusal:
    """A known name that is deliberately not converted, with the reason and what to do instead."""

    reason: str
    fix: str


@dataclass(frozen=True)
class Entry(Generic[H]):
    """A registered handler and what it declares about its layer."""

    handler: H
    status: str
    weights: tuple[str, ...] = ()
    builds: tuple[str, ...] = ()
    quantizes: bool = False


@dataclass
class Registry(Generic[H]):
    """Maps exact class names to handlers; also knows names that are refused on purpose."""

    what: str  # what a key is, e.g. 'QKeras layer'
    framework: str  # the source framework its entries belong to, e.g. 'QKeras'
    _entries: dict[str, Entry[H]] = field(default_factory=dict)
    _refused: dict[str, Refusal] = field(default_factory=dict)
    _frozen: bool = False

    def _claim(self, name: str) -> None:
        if self._frozen:
            raise RuntimeError(f"the {self.what} registry is frozen; register {name!r} in its folder's modules")
        if name in self._entries or name in self._refused:
            raise RuntimeError(f'{self.what} {name!r} is registered twice')

    def register(
        self, name: str, *, status: str, weights: tuple[str, ...] = (), builds: tuple[str, ...] = (), quantizes: bool = False
    ) -> Callable[[H], H]:
        """Register the decorated handler for the one class ``name``."""

        def decorate(handler: H) -> H:
            self._claim(name)
            if not status:
                raise RuntimeError(f'{self.what} {name!r} needs a status for the support matrix')
            self._entries[name] = Entry(handler, status, tuple(weights), tuple(builds), quantizes)
            return handler

        return decorate

    def refuse(self, name: str, reason: str, fix: str) -> None:
        self._claim(name)
        self._refused[name] = Refusal(reason, fix)

    def freeze(self) -> Registry[H]:
        self._frozen = True
        return self

    def entry(self, name: str) -> Entry[H] | None:
        return self._entries.get(name)

    def refusal(self, name: str) -> Refusal | None:
        return self._refused.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def refused(self) -> Iterator[tuple[str, Refusal]]:
        yield from sorted(self._refused.items())


def find(registries: tuple[Registry, ...], name: str) -> tuple[Registry, Entry] | None:
    """The registry and entry that handle ``name`` among several (each name belongs to at most one)."""
    for registry in registries:
        entry = registry.entry(name)
        if entry is not None:
            return registry, entry
    return None
