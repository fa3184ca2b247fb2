"""Atomic file output.

Results must never be half-written: a reader (or a resumed run) either sees the old file or the
complete new one. Everything is written to a temporary sibling and moved into place with
``os.replace``, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from hplan.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared like any other file
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` when the block exits cleanly."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def check_out_dir(path: str | os.PathLike[str], *, owns: Sequence[str] = (), what: str = "output",
                  option: str = "--out") -> Path:
    """Refuse an output directory that cannot be used, before any work is done.

    Without this, a file in the way or an unwritable parent surfaced as a traceback after the
    episodes or epochs had run, and a directory holding someone else's files was written into.
    ``owns`` are names an earlier output of the same command leaves behind (``config.json`` of a
    training run): a non-empty directory holding none of them is not ours, and is refused.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(str(path), option, "exists and is not a directory; choose another " + option)
    _check_creatable(path, path, option)
    if owns and path.is_dir() and not any((path / name).exists() for name in owns):
        if any(not entry.name.startswith(".") for entry in path.iterdir()):
            raise ConfigError(str(path), option, f"not empty and not an earlier {what} (no {owns[0]}); "
                                                 f"choose another {option}")
    return path


def check_out_file(path: str | os.PathLike[str], *, option: str) -> Path:
    """Refuse an output *file* (a GIF, a report) that cannot be written, before any work: a
    directory in the way, or a folder that cannot be created or written."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(str(path), option, "is a directory; give a file name")
    _check_creatable(path, path.parent, option)
    return path


def _check_creatable(path: Path, folder: Path, option: str) -> None:
    """``folder`` (``path`` or its parent) exists or can be made: its nearest existing ancestor is
    a directory we can really create things in."""
    existing = folder
    while not existing.exists():  # the nearest existing ancestor is where the folder gets created
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(str(path), option, f"cannot create it: {existing} is not a directory")
    if not _can_create_in(existing):
        raise ConfigError(str(path), option, f"cannot write there: {existing} is not writable")


def _can_create_in(directory: Path) -> bool:
    """True when a folder can really be made in ``directory`` (made and removed at once).

    Why not ``os.access``: it answers for the permission bits only, and root passes them
    everywhere, while /proc, /sys or a read-only mount still refuse; the failure then came as a
    traceback after the work (``hplan run`` after playing its episodes)."""
    try:
        probe = tempfile.mkdtemp(prefix=".hplan-write-check-", dir=directory)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file hplan wrote (config.json, manifest.json, suite.json) that must hold an object.

    A damaged one (not UTF-8, not JSON, ``[]``) is a one-line ConfigError naming the file, not a
    traceback from whichever caller first does ``.get`` on it. A missing file raises FileNotFoundError.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "", "not a UTF-8 text file (damaged?)") from None
    except json.JSONDecodeError as err:
        raise ConfigError(str(path), "", f"not valid JSON ({err.msg}, line {err.lineno}; damaged?)") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a JSON object, got {type(data).__name__} (damaged?)")
    return data


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def write_dataframe(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame as parquet or CSV (by suffix), atomically."""
    suffix = Path(path).suffix
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            raise ValueError(f"unsupported table format {suffix!r} for {path}")


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (``os.umask`` can only be
    read by setting it, which would briefly change it for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars/arrays and paths (logs, manifests, summaries)."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between worker processes on one machine (or one shared file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
