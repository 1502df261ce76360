"""The exceptions mjdist raises, for Python callers and for the commands that map them to exit codes.

- :class:`MjdistError`: the base of every error below.
- :class:`UsageError`: bad input, found before anything was started or written (the commands exit with 2).
  :class:`ConfigError` (a config value or override), ``DeviceSelectionError`` (``gpu_ids``/``cpu_workers``
  or ``CUDA_VISIBLE_DEVICES``) and ``CheckpointError`` (a checkpoint or run directory) are kinds of it.
- :class:`RankFailedError`: a job that had started failed; it names the first rank that failed (the commands
  exit with 1).
- :class:`TrainingFailure`: raised inside a rank when training cannot go on (a full disk, non-finite losses); its
  one-line message is reported without a traceback, and the job fails with a RankFailedError.

Ctrl-C (and SIGTERM) is a ``KeyboardInterrupt``, as everywhere in Python: training stops after the current
iteration, which rank 0 saves, and every process of the job is ended.
"""

from __future__ import annotations


class MjdistError(Exception):
    """Base class of the errors mjdist raises; the message is one line."""


class UsageError(MjdistError, ValueError):
    """Bad input: the message says what was wrong and what would be right. Nothing was started or written."""


class ConfigError(UsageError):
    """A configuration value or override that cannot work (an unknown field, a value out of range)."""


class RankFailedError(MjdistError, RuntimeError):
    """A rank raised or was killed (or ranks disagreed at the end); every process of the job was ended."""

    def __init__(self, message: str, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank
        """The global rank that failed first; None when no single rank is to blame."""


class TrainingFailure(MjdistError, RuntimeError):
    """Training cannot go on (a full disk, non-finite losses, a hang); the message is one line naming the cause.

    Unlike a user error (exit code 2, refused before anything starts) it happens during a run, which exits 1,
    or is restarted under ``--max-restarts``.
    """
