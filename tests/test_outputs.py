"""Outputs: checked before the work, atomic, marked, and replaced only when hgqbridge wrote them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hgqbridge.errors import HGQBridgeError, OutputExistsError
from hgqbridge.outputs import MARKER, atomic_path, check_output, output_folder, written_by_hgqbridge


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / 'prj'
    with atomic_path(target, force=False) as tmp:
        tmp.mkdir()
        (tmp / 'a.txt').write_text('new')
    assert (target / 'a.txt').read_text() == 'new'
    with pytest.raises(RuntimeError), atomic_path(target, force=True) as tmp:
        tmp.mkdir()
        (tmp / 'a.txt').write_text('half')
        raise RuntimeError('interrupted')
    assert (target / 'a.txt').read_text() == 'new'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['prj']
    with pytest.raises(OutputExistsError), atomic_path(target, force=False):
        pass


def test_force_replaces_only_what_hgqbridge_wrote(tmp_path: Path) -> None:
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('mine')
    with pytest.raises(OutputExistsError, match='replaces only what hgqbridge wrote'):
        check_output(mine, force=True)
    ours = tmp_path / 'ours'
    with atomic_path(ours, force=False, what='test') as tmp:
        tmp.mkdir()
    assert (ours / MARKER).is_file() and written_by_hgqbridge(ours)
    check_output(ours, force=True)  # ours: may be replaced
    (tmp_path / 'empty').mkdir()
    check_output(tmp_path / 'empty', force=False)  # an empty folder holds nothing to lose


def test_a_keras_file_is_marked(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / 'm.keras'
    with atomic_path(path, force=False) as tmp, zipfile.ZipFile(tmp, 'w') as archive:
        archive.writestr('config.json', '{}')
    assert written_by_hgqbridge(path)
    plain = tmp_path / 'plain.keras'
    with zipfile.ZipFile(plain, 'w') as archive:
        archive.writestr('config.json', '{}')
    assert not written_by_hgqbridge(plain)


@pytest.mark.parametrize('where', ['.', '..', '/', 'HOME'])
def test_protected_places(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / 'a' / 'b'
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv('HOME', str(tmp_path / 'a'))
    with pytest.raises(HGQBridgeError, match='refusing to write the output there'):
        check_output(tmp_path / 'a' if where == 'HOME' else Path(where), force=True)


def test_an_input_is_never_an_output(tmp_path: Path) -> None:
    source = tmp_path / 'model.h5'
    source.write_bytes(b'x')
    for target in (source, tmp_path):
        with pytest.raises(HGQBridgeError, match='an input of this command'):
            check_output(target, force=True, inputs=[source])


def test_resume_only_in_a_folder_hgqbridge_wrote(tmp_path: Path) -> None:
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'f').write_text('')
    with pytest.raises(HGQBridgeError, match='--resume continues only'):
        output_folder(tmp_path / 'x', force=False, resume=True)
    made = output_folder(tmp_path / 'y', force=False)
    assert output_folder(made, force=False, resume=True) == made
