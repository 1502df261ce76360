"""A launch plan checked against this machine and its hosts before anything starts: the per-rank log directory can
be made, and (unless skipped) every host resolves and answers the SSH probe (:mod:`mjdist.launch.host_check`).
Nothing is created: a failure is one line, a UsageError."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mjdist.errors import UsageError
from mjdist.launch.host_check import check_hosts
from mjdist.launch.plan import LaunchPlan

LOG_DIR_VARIABLE = "TORCHRUNX_LOG_DIR"


def check_launch(plan: LaunchPlan, environ: Mapping[str, str], host_check: bool = True) -> None:
    """Refuse a plan whose per-rank log files cannot be written, or (with ``host_check``) whose hosts cannot be
    reached; a plan that runs in this process or under a scheduler has neither."""
    if plan.launcher != "torchrunx":
        return
    if plan.torchrunx_log_dir is not None:
        check_log_dir(Path(plan.torchrunx_log_dir), LOG_DIR_VARIABLE in environ)
    if host_check:
        check_hosts(plan.hosts, plan.ssh_config, environ)


def check_log_dir(log_dir: Path, from_environment: bool) -> None:
    """Raise UsageError (one line) unless ``log_dir`` exists as a writable directory or could be made as one; it
    names where the directory came from (TORCHRUNX_LOG_DIR or --torchrunx-log-dir) and what would be right."""
    existing = log_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file, not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    else:
        return
    fix = (
        f"set {LOG_DIR_VARIABLE} to a directory, or to '' for no log files"
        if from_environment
        else "give --torchrunx-log-dir a directory, or '' for no log files"
    )
    raise UsageError(f"cannot write the per-rank log files to {log_dir}: {problem}; {fix}")
