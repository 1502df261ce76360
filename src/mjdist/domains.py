"""The domains of config values: one-line checks that name the flag, what was given and what would be right.

The configs' ``validate`` methods (and the commands' checks of their own flags) call these, so every flag is
refused the same way. :func:`check_fields` adds what holds for every field of every config: a choice is one of its
choices, no NaN, no integer beyond 64 bits, no NUL character in a string or path. Each raises ValueError; planning
turns it into a ConfigError (exit code 2), before anything is written or started.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from pathlib import Path
from typing import Literal

INT64_MAX = 2**63 - 1
"""The largest integer torch, Warp and NumPy take as a count or index."""
FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: every float of the simulation and the learner becomes one (beyond it: inf)."""
NAME_MAX = 255
"""The longest file name (in bytes) Linux file systems accept."""


def flag_name(path: str) -> str:
    """``agent.algorithm.num_mini_batches`` as the flag ``--agent.algorithm.num-mini-batches``."""
    return "--" + path.replace("_", "-")


def at_least(flag: str, value: int, minimum: int) -> None:
    """``value`` is ``minimum`` or more."""
    if value < minimum:
        wanted = "0 or more" if minimum == 0 else f"at least {minimum}"
        raise ValueError(f"{flag} must be {wanted}, got {value}")


def positive_finite(flag: str, value: float) -> None:
    """``value`` is above 0 and a finite float32."""
    if not 0 < value <= FLOAT32_MAX:
        raise ValueError(f"{flag} must be a positive finite number (at most 3.4e+38), got {value}")


def finite(flag: str, value: float, minimum: float = -math.inf) -> None:
    """``value`` is a finite float32, ``minimum`` or more."""
    if not (abs(value) <= FLOAT32_MAX and value >= minimum):
        wanted = "" if minimum == -math.inf else f", {minimum:g} or more"
        raise ValueError(f"{flag} must be a finite number (at most 3.4e+38 in size){wanted}, got {value}")


def above_zero(flag: str, value: float) -> None:
    """``value`` is above 0 (infinity included: a bound that never binds)."""
    if not value > 0:
        raise ValueError(f"{flag} must be above 0 (inf: no bound), got {value}")


def finite_range(flag: str, bounds: tuple[float, float], minimum: float = -math.inf) -> None:
    """``bounds`` is a finite (low, high) range with low <= high, and low is ``minimum`` or more."""
    low, high = bounds
    if not (abs(low) <= FLOAT32_MAX and abs(high) <= FLOAT32_MAX and minimum <= low <= high):
        wanted = "" if minimum == -math.inf else f", from {minimum:g} up"
        raise ValueError(f"{flag} must be a finite range LOW HIGH with LOW <= HIGH{wanted}, got {low} {high}")


def seconds(flag: str, value: float, maximum: float) -> None:
    """``value`` is a number of seconds above 0 and at most ``maximum``."""
    if not 0 < value <= maximum:
        raise ValueError(f"{flag} must be a number of seconds above 0 and at most {maximum:g}, got {value}")


def path_component(flag: str, value: str, *, reserved: int = 0) -> None:
    """``value`` names one file or directory inside another: no ``/``, not ``.`` or ``..``, and short enough for a
    file name once ``reserved`` more bytes (a timestamp prefix) are added."""
    if value in {".", ".."} or "/" in value:
        raise ValueError(f"{flag} must be a single directory name (no '/', not '.' or '..'), got {value!r}")
    if len(value.encode(errors="surrogateescape")) + reserved > NAME_MAX:
        raise ValueError(f"{flag} must be at most {NAME_MAX - reserved} bytes long, got {len(value.encode())}")


def check_fields(config: object, prefix: str, skip: tuple[str, ...] = ()) -> None:
    """What holds for every field of a config dataclass (nested ones too): a choice is one of its choices, floats
    are numbers (not NaN), integers fit in 64 bits, strings and paths hold no NUL character. ``prefix`` is the
    flags' prefix (``env``, ``agent``, or ``""`` for a command's own flags); ``skip`` names fields that check
    themselves (a task's env and agent configs, whose ``validate`` knows their classes)."""
    hints = _type_hints(type(config))
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        if field.name in skip:
            continue
        value = getattr(config, field.name)
        path = f"{prefix}.{field.name}" if prefix else field.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_fields(value, path)
            continue
        kind = hints[field.name]
        items = value if isinstance(value, tuple) else (value,)
        if typing.get_origin(kind) is tuple:
            kind = typing.get_args(kind)[0]
        choices = typing.get_args(kind) if typing.get_origin(kind) is Literal else ()
        for item in items:
            if choices and item not in choices:
                raise ValueError(f"{flag_name(path)} must be one of {', '.join(map(str, choices))}, got {item!r}")
            _check_value(flag_name(path), item)


@functools.cache
def _type_hints(config_type: type) -> dict[str, object]:
    return typing.get_type_hints(config_type, include_extras=False)


def _check_value(flag: str, value: object) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{flag} must be a number, got nan")
    if isinstance(value, int) and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"{flag} must fit in 64 bits (at most {INT64_MAX}), got {value}")
    if isinstance(value, str | Path) and "\0" in str(value):
        raise ValueError(f"{flag} must not contain a NUL character, got {str(value)!r}")
