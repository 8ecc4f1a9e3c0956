"""Outputs: checked before the work starts, written atomically, replaced only when hgqbridge wrote them.

``check_output`` runs first in every command that writes: an existing output is refused without ``--force``, and
even with ``--force`` hgqbridge replaces only what it wrote itself (a folder it marked, a ``.keras`` file it
marked, or an empty folder), never the current directory, one of its ancestors, the home folder, ``/``, or an
input of the same command. ``atomic_path`` then writes into a hidden sibling and renames it into place, so an
interrupted run (an error, Ctrl-C, SIGTERM) leaves the old output or none, and no temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import HGQBridgeError, OutputExistsError

#: The file inside every folder hgqbridge writes, and the member inside every .keras file it writes.
MARKER = '.hgqbridge-output'
KERAS_MARKER = 'hgqbridge.json'


def _marker_text(what: str) -> str:
    from . import __version__

    return json.dumps({'written_by': 'hgqbridge', 'version': __version__, 'what': what}) + '\n'


def written_by_hgqbridge(path: Path) -> bool:
    """A folder with hgqbridge's marker, or a .keras file holding its marker member."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return (path / MARKER).is_file()
    if path.is_file() and path.suffix == '.keras' and zipfile.is_zipfile(path):
        with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as archive:
            return KERAS_MARKER in archive.namelist()
    return False


def _protected(target: Path, inputs: Iterable[Path]) -> str | None:
    """Why ``target`` may never be replaced, or None."""
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        return 'it is the current directory or one of its parents'
    if target == Path.home().resolve() or target == Path(target.anchor):
        return 'it is the home folder or the root of the file system'
    for given in inputs:
        source = Path(given).resolve()
        if target == source or target in source.parents:
            return f'it is, or holds, an input of this command ({given})'
    return None


def check_output(path: Path, force: bool, inputs: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an output that exists (without ``force``), that hgqbridge did not write, that is
    protected, or whose folder cannot hold it."""
    target = path.resolve()
    why = _protected(target, inputs)
    if why is not None:
        raise HGQBridgeError(
            f'refusing to write the output there: {why}', where=str(path), fix='choose a new path for the output'
        )
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise HGQBridgeError(
            'the output cannot be created: a path above it is a file, not a folder', where=str(path), received=str(parent)
        )
    try:  # the real test (access() says yes to root even on /proc)
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix='.hgqbridge-probe.'))
    except OSError as err:
        raise HGQBridgeError(
            'the output cannot be created: its folder is not writable', where=str(path), received=f'{parent}: {err.strerror}'
        ) from None
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return  # an empty folder: nothing to lose
    if not force:
        raise OutputExistsError('the output already exists', where=str(path), fix='choose another path or pass --force')
    if not written_by_hgqbridge(path):
        raise OutputExistsError(
            '--force replaces only what hgqbridge wrote (a marked project folder or .keras file, or an empty '
            'folder), and this was not',
            where=str(path),
            fix='move it away yourself, or choose another path',
        )


def _mark(tmp: Path, what: str) -> None:
    if tmp.is_dir():
        (tmp / MARKER).write_text(_marker_text(what))
    elif tmp.suffix == '.keras' and zipfile.is_zipfile(tmp):
        with zipfile.ZipFile(tmp, 'a') as archive:
            archive.writestr(KERAS_MARKER, _marker_text(what))


@contextlib.contextmanager
def atomic_path(path: Path, force: bool, inputs: Iterable[Path] = (), what: str = 'output') -> Iterator[Path]:
    """Yield a temporary sibling path to write a file or folder into; on success it is marked as hgqbridge's and
    replaces ``path``. On any exit the temporary folder is gone."""
    inputs = list(inputs)
    check_output(path, force, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f'.{path.name}.'))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        _mark(tmp, what)
        check_output(path, force, inputs)  # the output may have appeared while we worked
        old = tmp_dir / f'{path.name}.old'
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old.exists() or old.is_symlink():
                os.replace(old, path)
            raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def output_folder(path: Path, force: bool, resume: bool = False, inputs: Iterable[Path] = ()) -> Path:
    """A folder that a long run fills step by step (fine-tuning checkpoints): created and marked up front, so that
    a later ``--force`` or ``--resume`` knows it is hgqbridge's. ``resume`` continues in a folder hgqbridge wrote."""
    if resume and path.is_dir():
        if not written_by_hgqbridge(path):
            raise HGQBridgeError(
                '--resume continues only in a folder an earlier hgqbridge run wrote',
                where=str(path),
                fix='drop --resume, or pass the output folder of the interrupted run',
            )
    else:
        check_output(path, force, inputs)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        path.mkdir(parents=True)
        (path / MARKER).write_text(_marker_text('folder'))
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (a temporary file next to it, then a rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
