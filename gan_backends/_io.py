"""Atomic file writes: a crash mid-write never leaves a half-written result behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, rename it over ``path``,
    then flush the folder (the rename): after a crash or power loss ``path`` holds either its
    old bytes or all of the new ones."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows): the rename stands alone
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(
    path: str | Path, *, what: str, inputs: tuple[str | Path | None, ...] = (), overwrite: bool = True
) -> Path:
    """Refuse, before any work is done, an output ``path`` that is one of the ``inputs``, a
    folder, an existing file when ``overwrite`` is off, or a place that cannot be written (a
    probe file is created and removed there: permission bits say nothing to root, and nothing
    about a read-only mount). Raises :class:`~gan_backends.errors.OutputRefused` naming ``what``."""
    from .errors import OutputRefused

    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise OutputRefused(f"{what} {path} is the input {source}: refusing to write over it")
    if path.is_dir():
        raise OutputRefused(f"{what} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputRefused(f"{what} {path} exists; choose another name or pass --overwrite")
    folder = path.parent
    while not folder.exists():  # the folders that writing will create: probe the first that exists
        folder = folder.parent
    if not folder.is_dir():
        raise OutputRefused(f"{what} {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".gan-backends-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputRefused(f"{what} {path}: cannot write in {folder} ({exc.strerror or exc})") from None
    return path
