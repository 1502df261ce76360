"""The task registry refuses a malformed entry point, naming it: a name that is not lowercase-kebab, an object
that is not a TaskSpec, or a TaskSpec whose name differs from its entry point's."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from mjdist import tasks
from mjdist.tasks import ENTRY_POINT_GROUP, TaskRegistryError


def registry_of(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str]) -> dict[str, tasks.TaskSpec]:
    """What the registry loads when only ``entries`` (name, "module:attribute") are installed (uncached)."""
    installed = [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in entries]
    monkeypatch.setattr(tasks, "entry_points", lambda group: installed if group == ENTRY_POINT_GROUP else [])
    return tasks.registered_tasks.__wrapped__()


def test_well_formed_entry_points_load_sorted_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = registry_of(monkeypatch, ("cartpole-swingup", "mjdist_tasks.cartpole:SWINGUP"),
                         ("cartpole-balance", "mjdist_tasks.cartpole:BALANCE"))  # fmt: skip
    assert list(loaded) == ["cartpole-balance", "cartpole-swingup"]
    assert loaded["cartpole-balance"].name == "cartpole-balance"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (("Cartpole_Balance", "mjdist_tasks.cartpole:BALANCE"),
         "task name 'Cartpole_Balance' (from mjdist_tasks.cartpole:BALANCE) is not lowercase-kebab, "
         "e.g. 'cartpole-balance'"),
        (("cartpole-balance", "mjdist.tasks:ENTRY_POINT_GROUP"),
         "entry point 'cartpole-balance' -> mjdist.tasks:ENTRY_POINT_GROUP must be a TaskSpec named "
         "'cartpole-balance'"),
        (("cartpole-upright", "mjdist_tasks.cartpole:BALANCE"),
         "entry point 'cartpole-upright' -> mjdist_tasks.cartpole:BALANCE must be a TaskSpec named "
         "'cartpole-upright'"),
    ],
    ids=["not-kebab", "not-a-task-spec", "other-name"],
)  # fmt: skip
def test_a_malformed_entry_point_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, entry: tuple[str, str], message: str
) -> None:
    with pytest.raises(TaskRegistryError) as raised:
        registry_of(monkeypatch, ("cartpole-swingup", "mjdist_tasks.cartpole:SWINGUP"), entry)
    assert str(raised.value) == message
