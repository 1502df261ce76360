"""The metrics writer behind ``--agent.logger none``: checkpoints are still saved, no metrics are written."""

from __future__ import annotations

from rsl_rl.utils.log_writer import LogWriter


class NullLogWriter(LogWriter):
    """Discards scalars. rsl_rl saves checkpoints only where a writer exists, hence a writer at all."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None:
        """Discard the scalar."""
