"""One job per run directory: an exclusive lock held, for the whole job, by the process that writes the run.

The lock is a POSIX record lock (``fcntl.lockf``) on ``<run dir>/.mjdist.lock``, which names its holder (host and
pid). The kernel drops it when the holding process ends however it ends, so a crash leaves no stale lock; unlike
``flock``, a child the holder forks (torchrunx's log server) does not inherit it, so a leftover child cannot keep
it either. A second job that finds the lock held refuses at once, before it writes anything
(:class:`RunInUseError`, a UsageError). A process never holds one run twice: record locks do not conflict within
one process, so this module also remembers the runs its process holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from mjdist.errors import UsageError

LOCK_FILE = ".mjdist.lock"
"""In the run directory, hidden (listings of a run skip it); removed when the job ends."""

_held: set[Path] = set()
_held_guard = threading.Lock()


class RunInUseError(UsageError):
    """Another job (or this process) holds the run directory."""


@contextlib.contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for the block: create it (and its parents) if needed and lock it, or raise RunInUseError
    without writing anything. A UsageError out of the block (bad input found late) removes the directories this
    call made, if they are still empty."""
    run_dir = run_dir.absolute()
    with _held_guard:
        if run_dir in _held:
            raise RunInUseError(_in_use(run_dir, f"pid {os.getpid()} on {socket.gethostname()}, this process"))
        _held.add(run_dir)
    made = _missing_ancestors(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        descriptor = _lock(run_dir / LOCK_FILE)
        try:
            yield
        except UsageError:
            _release(run_dir / LOCK_FILE, descriptor)
            descriptor = None
            for directory in made:  # deepest first
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise
        finally:
            if descriptor is not None:
                _release(run_dir / LOCK_FILE, descriptor)
    finally:
        with _held_guard:
            _held.discard(run_dir)


def _missing_ancestors(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def _lock(path: Path) -> int:
    """A descriptor of ``path`` holding its lock, with this host and pid written in it; RunInUseError if held."""
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise RunInUseError(_in_use(path.parent, _holder(path))) from None
        if _same_file(path, descriptor):  # not a file its last holder removed while this opened it
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{socket.gethostname()} {os.getpid()}\n".encode())
            return descriptor
        os.close(descriptor)


def _same_file(path: Path, descriptor: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _release(path: Path, descriptor: int) -> None:
    """Remove the lock file, then let go of it (a job waiting on the removed file opens a new one)."""
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(descriptor)


def _holder(path: Path) -> str:
    """``pid P on HOST`` from the lock file; ``another process`` if it names none yet."""
    try:
        host, pid = path.read_text().split()
    except (OSError, ValueError):
        return "another process"
    return f"pid {pid} on {host}"


def _in_use(run_dir: Path, holder: str) -> str:
    return (
        f"run directory {run_dir} is in use by another job ({holder}); wait for that job to end or stop it, "
        "or give another --run-name"
    )
