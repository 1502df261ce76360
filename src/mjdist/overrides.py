"""Config objects from Python callers: a task's default config, replaced by an object or changed by a dict.

``{"num_envs": 64, "rewards": {"pole_angle": -2.0}}`` changes two fields of a task's environment config, the
second inside a nested config; a dict field (an mjlab task's ``rewards``) keeps the entries not named. Unknown fields
and entries, and values of the wrong type, are ConfigErrors that name them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from mjdist.errors import ConfigError

ConfigT = TypeVar("ConfigT")


def resolve_config(default: ConfigT, given: ConfigT | Mapping[str, Any] | None, name: str) -> ConfigT:
    """``default`` when nothing is given, ``given`` when it is a config of the same class, else ``default``
    with the overrides of the dict ``given`` applied."""
    if given is None:
        return default
    if isinstance(given, Mapping):
        return _apply(default, given, name)
    if type(given) is not type(default):
        raise ConfigError(
            f"{name} must be a {type(default).__name__} (the task's config class) or a dict of overrides, "
            f"got a {type(given).__name__}"
        )
    return given


def _apply(config: Any, overrides: Mapping[str, Any], path: str) -> Any:
    fields = {field.name: field for field in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"{path} has no field {key!r}; its fields are: {', '.join(sorted(fields))}")
        if value is None and "None" in str(fields[key].type):
            changes[key] = None
        else:
            changes[key] = _value(getattr(config, key), value, f"{path}.{key}")
    return dataclasses.replace(config, **changes)


def _merge(current: Mapping[str, Any], overrides: Mapping[str, Any], path: str) -> dict[str, Any]:
    """A dict field (an mjlab config's ``rewards``, ``observations``...) with some entries changed: the others stay."""
    unknown = sorted(set(overrides) - set(current))
    if unknown:
        raise ConfigError(f"{path} has no entry {unknown[0]!r}; its entries are: {', '.join(map(str, current))}")
    return {**current, **{key: _value(current[key], value, f"{path}.{key}") for key, value in overrides.items()}}


def _value(current: Any, value: Any, path: str) -> Any:
    """``value`` checked against the field's current value (its type), converted where that is lossless."""
    if dataclasses.is_dataclass(current) and not isinstance(current, type):
        if isinstance(value, Mapping):
            return _apply(current, value, path)
        if type(value) is not type(current):
            raise ConfigError(f"{path} takes a {type(current).__name__} or a dict of overrides, got {value!r}")
        return value
    if isinstance(current, Mapping) and isinstance(value, Mapping):
        return _merge(current, value, path)
    if isinstance(current, tuple) and isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(current, bool) or isinstance(value, bool):
        if type(current) is not type(value):
            raise ConfigError(f"{path} takes a {type(current).__name__}, got {value!r}")
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(f"{path} takes a {type(current).__name__}, got {value!r}")
    return value
