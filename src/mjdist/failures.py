"""Failures during training whose one-line message says everything, so they are reported without a traceback."""

from __future__ import annotations

from mjdist.errors import MjdistError


class TrainingFailure(MjdistError, RuntimeError):
    """Training cannot go on (a full disk, non-finite losses, a hang); the message is one line naming the cause.

    Unlike a user error (exit code 2, refused before anything starts) it happens during a run, which exits 1,
    or is restarted under ``--max-restarts``.
    """
