"""Files that are either absent or whole: written under a hidden temporary name, flushed to disk, renamed into place.

The one way mjdist writes what a crash, a full disk or a concurrent reader must never see half-written:
checkpoints, exported policies and ``summary.json``. Temporary names are unique per write (process and a random
part), so two writers never share one, and they start with a dot, so listings of a run skip them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` to fill a temporary file beside ``path``, make it durable, and rename it to ``path``
    (atomic: a reader sees the old file or the new one). The temporary file is removed if anything fails. The
    directory must exist."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        write(temporary)
        _fsync(temporary, os.O_RDONLY)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync(path.parent, os.O_RDONLY)  # the rename itself survives a crash


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data``, whole, or is left as it was."""
    replace_atomically(path, lambda temporary: temporary.write_bytes(data))


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
