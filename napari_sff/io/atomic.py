"""The one atomic writer: every file napari-sff writes goes through :func:`atomic_write`.

A result is written to a hidden temporary file beside its destination, flushed to disk, given the permissions an
ordinary ``open()`` would have given it (``0o666`` less the umask: ``mkstemp`` alone leaves 0600 files nobody else
can read) and only then renamed into place, so a crash or a kill never leaves half a file and colleagues on a
shared server can read the maps. Folders (a DICOM series) are published the same way by :func:`atomic_directory`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(f"{path} exists; choose another name or pass overwrite=True (--overwrite)")


def refuse_outputs(targets: Sequence[str | os.PathLike], *, inputs: Sequence[str | os.PathLike] = (),
                   overwrite: bool = False) -> None:
    """Refuse (one-line ValueError) outputs that are an input, or exist without ``overwrite`` -- checked before a
    long computation; :func:`atomic_write` checks existence again when it publishes."""
    given = {Path(path).resolve() for path in inputs if path is not None}
    for target in map(Path, targets):
        if target.resolve() in given:
            raise ValueError(f"{target} is an input; choose another output name")
        if target.exists() and not overwrite:
            raise ValueError(f"{target} exists; choose another name or pass --overwrite")


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``overwrite`` never replace a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path exists: no check-then-write race
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise _exists_error(path) from None
        os.replace(tmp, path)


def _suffix(path: Path) -> str:
    """Keep the full extension (``.nii.gz``) on the temporary file: writers such as nibabel choose by it."""
    name = path.name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return path.name[-len(double):]
    return path.suffix


@contextmanager
def atomic_write(path: str | os.PathLike, *, overwrite: bool = True, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit publish it as ``path`` (files follow the umask).

    The caller writes the whole file to the yielded path (by name: nibabel, safetensors, ``np.save`` ...). On an
    exception nothing is published and the temporary file is removed. ``overwrite=False`` refuses to replace an
    existing file, also one created while the write ran. ``mode`` overrides the permissions (before the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise _exists_error(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_suffix(path), dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, (0o666 if mode is None else mode) & ~current_umask())
        _publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write a text file (JSON, CSV, markdown) atomically; see :func:`atomic_write`."""
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on a clean exit rename it to ``path`` (a DICOM series, say).

    Files and folders inside get the umask's permissions. An existing ``path`` is refused unless ``overwrite``,
    which replaces it only after the new folder is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise _exists_error(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        mask = current_umask()
        for root, dirs, files in os.walk(tmp):
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
        if path.exists():
            if not overwrite:
                raise _exists_error(path)
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "previous")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
