"""One writer per run: an exclusive advisory lock on a file in the run's directory.

Every writer of a run (:class:`~trajbench.store.writer.RunWriter`, so the Recorder, the
importers and the generation workers alike) holds :func:`lock_run`'s lock on
``<store>/<run path>/.trajbench-lock`` from before it opens the run until it closes it. A
second writer fails at once with :class:`~trajbench.errors.RunLockedError`, one line
naming the run and the holder written into the file (pid, host, since when).

Why ``fcntl.flock`` (the operating system's advisory lock) and no library: the kernel
releases the lock when its process dies, however it dies, so the lock of a killed writer
is never stale: the next writer simply takes it and writes its own name into the file.
(``filelock`` uses the same call on POSIX; it would add nothing but a dependency.) The
lock is released by deleting the file and then closing it; a writer that acquires the
lock checks that the file it locked is still the one at the path, else tries again, so
two writers can never both hold a lock (one on a deleted file, one on its successor).

The file's name starts with a dot: zarr never treats it as a node, trajbench's readers,
validator and store hash ignore it (``docs/format.md``, "Locks"). Locks are taken on local
stores only: fsspec stores (``s3://``, ``memory://``) have no advisory locks, and the
lock is then the caller's business. Nor are they taken where ``fcntl`` does not exist
(Windows).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import TracebackType

from trajbench.errors import RunLockedError, StoreError
from trajbench.store.root import utc_now

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunLock", "lock_run", "is_lock_file"]

#: Name of the lock file in a run's directory (a dotfile: no zarr node).
LOCK_NAME = ".trajbench-lock"
# Attempts to lock a file that a releasing writer deletes meanwhile (each retry means the
# previous holder let go between our open and our lock: a handful at most).
_ATTEMPTS = 20


def is_lock_file(name: str) -> bool:
    """Whether a file name (the last path segment) is a run's lock file."""
    return name == LOCK_NAME


class RunLock:
    """The held lock of one run; :meth:`release` (or leaving a ``with`` block) lets go."""

    def __init__(self, path: Path, fd: int, run: str, root: Path | None = None) -> None:
        self.path = path
        self.run = run
        self._fd: int | None = fd
        self._root = root

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Delete the lock file and let go of the lock (idempotent).

        The file is deleted while the lock is held, so a writer waiting on it finds a
        deleted file and tries again on a new one (see the module docstring)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)
        _remove_empty(self.path.parent, self._root)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:  # a writer that was never closed: the kernel frees it anyway
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def lock_run(
    directory: str | os.PathLike[str],
    run: str,
    store: str,
    root: str | os.PathLike[str] | None = None,
) -> RunLock | None:
    """Take the exclusive lock of the run whose directory is ``directory`` (created if
    missing), or raise :class:`~trajbench.errors.RunLockedError` naming ``run`` in
    ``store`` and the holder. None where advisory locks do not exist (no ``fcntl``).

    ``root`` (the store's directory): on release, the directories that taking the lock
    created and that stayed empty are removed up to it, so a writer that failed before
    creating its run leaves nothing behind."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    folder = Path(directory)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory of run '{run}' in '{store}': {exc}"
        ) from None
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a releasing writer removed the empty directory: retry
            folder.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file '{path}' of run '{run}': {exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"run '{run}' in '{store}' is being written by another process ({holder});"
                " wait for it to finish or stop it (one writer per run)"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock '{path}' of run '{run}': {exc}") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:  # its holder deleted it as we opened it: retry
            os.close(fd)
            continue
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
        return RunLock(path, fd, run, Path(root) if root is not None else None)
    raise RunLockedError(
        f"run '{run}' in '{store}': could not take its lock '{path}' in {_ATTEMPTS} attempts"
        " (other writers keep taking and releasing it)"
    )


def _read_holder(fd: int) -> str:
    """The holder a lock file names, as ``pid 123 on host h since ...`` (best effort)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
        data = json.loads(text)
        return f"pid {data['pid']} on host {data['host']} since {data['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _remove_empty(directory: Path, root: Path | None) -> None:
    """Remove ``directory`` if the lock file was all it held, and its parents that are
    then empty, up to (not including) ``root``; without ``root`` only ``directory``."""
    while True:
        try:
            directory.rmdir()
        except OSError:
            return
        if root is None or directory.parent == root or root not in directory.parents:
            return
        directory = directory.parent
