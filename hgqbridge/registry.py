"""One Registry class: handlers keyed by the exact class name of what they handle.

Every converter folder owns its registries (module constants, filled by decorators at import time and never
changed afterwards). The support matrix in the README is generated from them (``hgqbridge support``).
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
    fix: str = ''


@dataclass
class Registry(Generic[H]):
    """Maps exact class names to handlers; also knows names that are refused on purpose."""

    what: str
    _handlers: dict[str, H] = field(default_factory=dict)
    _refused: dict[str, Refusal] = field(default_factory=dict)

    def register(self, *names: str) -> Callable[[H], H]:
        def decorate(handler: H) -> H:
            for name in names:
                if name in self._handlers or name in self._refused:
                    raise RuntimeError(f'{self.what} {name!r} is registered twice')
                self._handlers[name] = handler
            return handler

        return decorate

    def refuse(self, name: str, reason: str, fix: str = '') -> None:
        if name in self._handlers or name in self._refused:
            raise RuntimeError(f'{self.what} {name!r} is registered twice')
        self._refused[name] = Refusal(reason, fix)

    def get(self, name: str) -> H | None:
        return self._handlers.get(name)

    def refusal(self, name: str) -> Refusal | None:
        return self._refused.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._handlers

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def refused(self) -> Iterator[tuple[str, Refusal]]:
        yield from sorted(self._refused.items())
