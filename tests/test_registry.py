"""The Registry: exact names, one registration each, a status for the matrix, refusals with a fix, frozen after import."""

from __future__ import annotations

import pytest

from hgqbridge.registry import Registry, find


def _handler(layer: object) -> object:
    return layer


def test_register_declares_everything_in_one_place() -> None:
    reg: Registry = Registry('test layer', 'Test')
    reg.register('Dense', status='exact', weights=('kernel', 'bias'), builds=('QDense',), quantizes=True)(_handler)
    entry = reg.entry('Dense')
    assert entry is not None and entry.handler is _handler and entry.weights == ('kernel', 'bias') and entry.builds == ('QDense',)
    assert entry.quantizes and reg.names() == ['Dense'] and reg.entry('dense') is None  # exact names only


def test_a_name_is_registered_once_and_needs_a_status() -> None:
    reg: Registry = Registry('test layer', 'Test')
    reg.register('A', status='exact')(_handler)
    with pytest.raises(RuntimeError, match='registered twice'):
        reg.register('A', status='exact')(_handler)
    with pytest.raises(RuntimeError, match='registered twice'):
        reg.refuse('A', 'no', 'do this')
    with pytest.raises(RuntimeError, match='needs a status'):
        reg.register('B', status='')(_handler)


def test_refusals_and_freezing() -> None:
    reg: Registry = Registry('test layer', 'Test')
    reg.refuse('Lambda', 'bytecode', 'rewrite it')
    assert [(n, r.reason, r.fix) for n, r in reg.refused()] == [('Lambda', 'bytecode', 'rewrite it')] and reg.entry(
        'Lambda'
    ) is None
    reg.freeze()
    with pytest.raises(RuntimeError, match='frozen'):
        reg.register('C', status='exact')(_handler)


def test_find_looks_through_several_registries() -> None:
    a: Registry = Registry('a', 'A')
    b: Registry = Registry('b', 'B')
    a.register('X', status='exact')(_handler)
    b.register('Y', status='exact')(_handler)
    found = find((a, b), 'Y')
    assert found is not None and found[0] is b and find((a, b), 'Z') is None


def test_every_shipped_registry_is_frozen_and_every_entry_says_its_status() -> None:
    from hgqbridge.converters import registries

    for reg in registries():
        assert reg._frozen, reg.what
        for name in reg.names():
            entry = reg.entry(name)
            assert entry is not None and entry.status.strip(), name
        assert all(r.reason and r.fix for _, r in reg.refused()), reg.what
