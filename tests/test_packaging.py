"""What `pip install .` installs is the whole tool: every package folder is in the wheel, and nothing imports the
bare top-level name ``converters`` (it exists only as ``hgqbridge.converters``).

The wheel itself is built, installed into a fresh venv and run from outside the source tree by ``.ci/wheel-smoke``
(part of ``make test``); these tests catch the same mistakes without building anything.
"""

from __future__ import annotations

import re
import sys
import tomllib

from .conftest import ROOT


def _package_folders() -> set[str]:
    """Every folder with an ``__init__.py`` under hgqbridge/ and converters/, as its installed dotted name."""
    names = set()
    for init in [*ROOT.glob('hgqbridge/**/__init__.py'), *ROOT.glob('converters/**/__init__.py')]:
        parts = init.parent.relative_to(ROOT).parts
        names.add('.'.join(('hgqbridge', *parts) if parts[0] == 'converters' else parts))
    return names


def test_every_package_folder_is_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools']
    listed = set(config['packages'])
    folders = _package_folders()
    assert folders - listed == set(), f'pyproject.toml [tool.setuptools] packages lacks {sorted(folders - listed)}'
    assert listed - folders == set(), f'pyproject.toml lists packages with no folder: {sorted(listed - folders)}'
    assert config['package-dir'] == {'hgqbridge': 'hgqbridge', 'hgqbridge.converters': 'converters'}


def test_nothing_imports_the_bare_converters_name() -> None:
    pattern = re.compile(r'^\s*(from|import)\s+converters\b', re.MULTILINE)
    offenders = [
        str(p.relative_to(ROOT))
        for folder in ('hgqbridge', 'converters', 'tests', 'bench', 'fixtures')
        for p in (ROOT / folder).rglob('*.py')
        if pattern.search(p.read_text(encoding='utf-8'))
    ]
    assert offenders == []
    assert 'converters' not in sys.modules
