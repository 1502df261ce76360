"""Parsing ``<prog> <mjlab task id> [flags]``: mjdist's flags next to mjlab's own, spelled as mjlab's scripts spell
them (``--env.scene.num-envs 8``, ``--agent.max-iterations 2``, ``--env.rewards.<term>.weight``)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, TypeVar

import tyro

from mjdist.tasks import TaskSpec

ConfigT = TypeVar("ConfigT")

MJLAB_TASKS_HELP = (
    "\n\nmjlab's tasks (mjlab is installed), with mjlab's flags as mjlab spells them: {ids}. "
    "'{prog} <ID> --help' lists a task's flags."
)


def parse_mjlab_task(prog: str, spec: TaskSpec, args: list[str], config_type: type[ConfigT], default: Any) -> ConfigT:
    """``args`` parsed into a ``config_type`` starting from ``default``, under mjlab's tyro settings; its ``env`` (and
    ``agent``, if it has one) are parsed as the task's mjlab config classes."""
    typed = _with_config_types(config_type, default)
    parsed = tyro.cli(typed, args=args, default=typed(**_values(default)), prog=f"{prog} {spec.name}")
    return config_type(**_values(parsed))  # the class every rank can import (the parsing one is made here)


def _values(config: Any) -> dict[str, Any]:
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config) if field.init}


def _with_config_types(config_type: type[ConfigT], default: Any) -> type[ConfigT]:
    """A subclass of ``config_type`` (a frozen dataclass) whose ``env``/``agent`` fields are declared with the types
    of ``default``'s values, so that tyro makes mjlab's flags from mjlab's classes, under mjlab's tyro settings
    (``--flag False`` for booleans, Python syntax for collections); mjdist's own flags keep theirs."""
    import mjlab

    retyped = [
        (name, Annotated[type(getattr(default, name)), *mjlab.TYRO_FLAGS])
        for name in ("env", "agent")
        if dataclasses.is_dataclass(getattr(default, name, None))
    ]
    return dataclasses.make_dataclass(config_type.__name__, retyped, bases=(config_type,), frozen=True)
