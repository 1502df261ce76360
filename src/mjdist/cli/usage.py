"""What every task command (`train`, `play`) shares: parsing ``<prog> <task> [flags]``, and user mistakes as one
line on stderr with exit code 2, nothing written or started."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar, Union

import tyro

from mjdist.cli.mjlab import MJLAB_TASKS_HELP, parse_mjlab_task
from mjdist.mjlab_tasks import mjlab_task_ids
from mjdist.tasks import TaskSpec, get_task, registered_tasks

USAGE_EXIT_CODE = 2

ConfigT = TypeVar("ConfigT")


def parse_task_command(
    prog: str, argv: list[str] | None, config_type: type[ConfigT], task_default: Callable[[TaskSpec], ConfigT]
) -> tuple[TaskSpec, ConfigT]:
    """Set up console logging, then parse ``<prog> <task> [flags]``: one tyro subcommand per registered task,
    whose defaults are ``task_default(spec)``. An unknown task is a UsageError that lists the known ones."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    tasks = registered_tasks()
    if args and not args[0].startswith("-"):
        spec = get_task(args[0])
        if spec.name not in tasks:  # an mjlab task: its own flags, parsed as mjlab's train script parses them
            return spec, parse_mjlab_task(prog, spec, args[1:], config_type, task_default(spec))
    variants = tuple(
        Annotated[config_type, tyro.conf.subcommand(name, default=task_default(spec), description=spec.description)]
        for name, spec in tasks.items()
    )
    description = config_type.__doc__ or ""
    if mjlab_task_ids():
        description += MJLAB_TASKS_HELP.format(prog=prog, ids=", ".join(mjlab_task_ids()))
    cfg = tyro.cli(Union[variants], args=args, prog=prog, description=description)  # noqa: UP007
    return tasks[args[0]], cfg


def fail_usage(prog: str, message: str) -> int:
    """Print ``<prog>: error: <message>`` and return the usage exit code."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return USAGE_EXIT_CODE
