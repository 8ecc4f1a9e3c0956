"""The README's support matrix is the registries' own output, and its commands exist."""

from hgqbridge.cli import build_parser
from hgqbridge.support import support_markdown

from .conftest import ROOT


def test_support_matrix_is_current() -> None:
    readme = (ROOT / 'README.md').read_text()
    table = readme.split('<!-- support:begin -->\n')[1].split('\n<!-- support:end -->')[0]
    assert table == support_markdown(), 'regenerate: hgqbridge support, paste between the support markers'


def test_readme_cli_lines_parse() -> None:
    readme = (ROOT / 'README.md').read_text()
    lines = [line.split('#')[0].split() for line in readme.splitlines() if line.startswith('hgqbridge ')]
    assert len(lines) >= 7
    for words in lines:
        build_parser().parse_args(words[1:])
