"""Every flag's domain, with cases generated from the configs themselves.

For every numeric, sequence, string and path field of the train, play and bench configs (nested ones and the task's
own fields included), boundary values (0, -1, NaN, +-inf, huge, empty, path-like strings) replace the default,
and hypothesis draws more values, several fields at a time. The property: each config is refused with a one-line
UsageError of a kind that docs/bad-input.md lists (where tests/test_bad_input.py shows it exits 2 and writes
nothing), having written nothing; or it is accepted. The quick tests plan (in this process, nothing starts); the
slow test trains every accepted train case for one iteration, many cases to a run.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mjdist
from mjdist.bench.config import BenchConfig
from mjdist.errors import UsageError
from mjdist.launch.devices import DeviceRequest
from mjdist.play.config import PlayConfig
from mjdist.play.run import plan_play
from mjdist.rl.config import ACTIVATIONS
from mjdist.tasks import get_task, registered_tasks
from mjdist.train.config import TrainConfig
from mjdist.train.run import plan_run, run_training

TASK = get_task("cartpole-balance")
QUADRUPED = get_task("velocity-flat-quadruped")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"

INTS = (0, -1, 1, 2, 2**31, 2**63)
FLOATS = (0.0, -1.0, 1.0, math.nan, math.inf, -math.inf, 1e308, 5e-324)
STRINGS = ("", ".", "..", "/", "a/b", "../up", "x" * 300, "nul\0byte", " ")
NOT_GENERATED = {
    "train": {"gpu_ids", "cpu_workers", "hosts", "ssh_config", "torchrunx_log_dir"},
    "quadruped": {"gpu_ids", "cpu_workers", "hosts", "ssh_config", "torchrunx_log_dir"},
    "play": {"gpu_ids"},
    "bench": set(),
}
"""Fields whose domains other tests cover: devices (test_devices, test_bad_input), hosts and their SSH config and
the per-rank log directory (the launch checks)."""
NOT_TRAINED = {"log_root", "resume", "max_iterations", "max_restarts"}
"""Accepted values of these are planned but not trained: a log root may be anywhere (/ is writable by root), a
resume needs a checkpoint, the training runs do one iteration, and restarts matter only after a failure (where
2^31 of them would go on for ever; tests/test_survival.py covers restarts)."""
TIME_BOUND = {"num_learning_epochs", "decimation"}
"""Fields whose huge values are accepted but cost time, not memory (2^31 epochs would train for ages): their
trained values are at most 8."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated input: a field of one command's config (a path of field names) and its value."""

    command: Literal["train", "quadruped", "play", "bench"]
    """``quadruped``: train velocity-flat-quadruped (its own env fields); the others use cartpole-balance."""
    path: tuple[str, ...]
    value: Any

    def __str__(self) -> str:
        return f"{self.command} --{'.'.join(self.path).replace('_', '-')} {self.value!r}"


def leaf_fields(config: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every field that holds a value (not a nested config), with its type."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            yield from leaf_fields(value, (*path, field.name))
        else:
            yield (*path, field.name), hints[field.name]


def boundaries(kind: Any) -> tuple[Any, ...]:
    """The boundary values of a field's type (none for booleans)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in {typing.Union, types.UnionType}:
        return (None, *(v for arg in args if arg is not type(None) for v in boundaries(arg)))
    if typing.get_origin(kind) is Literal:
        return ("", "tensorboard ", "none/")
    if typing.get_origin(kind) is tuple:
        items = boundaries(args[0])
        if args[-1] is Ellipsis:
            return ((), *((item,) for item in items), tuple(items[:2]))
        return tuple(fixed_length_boundaries(items, len(args)))
    return {int: INTS, float: FLOATS, str: STRINGS, Path: tuple(Path(s) for s in STRINGS)}.get(kind, ())


def fixed_length_boundaries(items: tuple[Any, ...], length: int) -> Iterator[tuple[Any, ...]]:
    """Pairs of boundary values for fixed-length tuples (ranges): each value paired with 0 and with itself."""
    for item in items:
        yield (item,) * length
        yield (item, *(0.0,) * (length - 1))


def defaults(command: str) -> object:
    if command == "train":
        return TrainConfig(env=TASK.env, agent=TASK.agent)
    if command == "quadruped":
        return TrainConfig(env=QUADRUPED.env, agent=QUADRUPED.agent)
    if command == "play":
        return PlayConfig(env=TASK.play_env or TASK.env, agent="zero")
    return BenchConfig()


def boundary_cases() -> list[Case]:
    """Every field x every boundary value of its type (for the quadruped, its env's fields)."""
    return [
        Case(command, path, value)  # type: ignore[arg-type]
        for command in ("train", "quadruped", "play", "bench")
        for path, kind in leaf_fields(defaults(command))
        if path[-1] not in NOT_GENERATED[command] and (command != "quadruped" or path[0] == "env")
        for value in boundaries(kind)
    ]


def replaced(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    return dataclasses.replace(config, **{path[0]: replaced(getattr(config, path[0]), path[1:], value)})


def with_cases(config: Any, cases: list[Case], tmp: Path) -> Any:
    """``config`` with each case's value, runs and results under ``tmp`` unless a case sets them."""
    if isinstance(config, TrainConfig | PlayConfig):
        config = dataclasses.replace(config, log_root=tmp / "runs")
    if isinstance(config, BenchConfig):
        config = dataclasses.replace(config, results=tmp / "results.jsonl")
    for case in cases:
        config = replaced(config, case.path, case.value)
    return config


def verdict(command: str, cases: list[Case], tmp: Path) -> str | None:
    """None if the config with ``cases`` is accepted, else its one-line refusal; asserts nothing was written."""
    config = with_cases(defaults(command), cases, tmp)
    plan: Callable[[], object] = {
        "train": lambda: plan_run(TASK, config, DeviceRequest.from_flags((), None)),
        "quadruped": lambda: plan_run(QUADRUPED, config, DeviceRequest.from_flags((), None)),
        "play": lambda: plan_play(TASK, config, DeviceRequest.from_flags((), None)),
        "bench": lambda: config.validate(tuple(registered_tasks())),
    }[command]
    try:
        plan()
    except UsageError as error:
        message = str(error)
    except ValueError as error:  # bench's validate: the bench command turns it into a UsageError
        assert command == "bench", f"{cases}: {type(error).__name__}: {error}"
        message = str(error)
    else:
        message = None
    assert sorted(tmp.rglob("*")) == [], f"{cases} wrote {sorted(tmp.rglob('*'))}"
    return message


def documented_kinds() -> list[re.Pattern[str]]:
    """The errors of docs/bad-input.md as patterns, matched at the start of a message as test_bad_input matches
    them: the values and flags they show (numbers, quoted values, paths, placeholders) stand for any."""
    errors = [line.rsplit("| `", 1)[1].rstrip("` |").replace("\\|", "|") for line in DOCS.read_text().splitlines()
              if line.startswith("| `")]  # fmt: skip
    patterns = [" ".join(_word_pattern(word) for word in error.split(" ")) for error in errors]
    return [re.compile(re.sub(r"\.\*(?: \.\*)+", ".*", pattern)) for pattern in patterns]  # one for a list


def _word_pattern(word: str) -> str:
    core = word.strip("(),;:")
    if core.startswith("--"):  # the same rule for another flag is the same kind of error
        start = word.index(core)
        return re.escape(word[:start]) + r"--[\w.-]+" + re.escape(word[start + len(core) :])
    if word.endswith(",") and not re.search(r"[0-9{'/]", word):  # an item of a list (of any length)
        return ".*"
    if re.search(r"[0-9{'/]|^-?(nan|inf)$", core):  # a value
        start = word.index(core) if core else 0
        return re.escape(word[:start]) + ".*" + re.escape(word[start + len(core) :])
    return re.escape(word)


KINDS = documented_kinds()
CASES = boundary_cases()


def check_property(command: str, cases: list[Case], tmp: Path) -> str | None:
    message = verdict(command, cases, tmp)
    if message is not None:
        assert "\n" not in message and message, f"{cases}: {message!r}"
        assert any(kind.match(message) for kind in KINDS), f"{cases}: not in docs/bad-input.md: {message}"
    return message


@pytest.fixture(autouse=True)
def _no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    for variable in ("RANK", "WORLD_SIZE", "TORCHRUNX_LOG_DIR", "MUJOCO_GL"):
        monkeypatch.delenv(variable, raising=False)


def test_every_boundary_value_of_every_field_is_refused_in_one_documented_line_or_planned(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(tmp)  # relative log roots land here if anything is written
    refused = [case for case in CASES if check_property(case.command, [case], tmp) is not None]
    print(f"{len(CASES)} boundary cases: {len(refused)} refused, {len(CASES) - len(refused)} accepted")
    assert len({case.path for case in CASES}) > 60  # the walk found the fields (train, play and bench)
    must_refuse = {("env", "num_envs"): 0, ("agent", "actor", "hidden_dims"): (), ("run_name",): "a/b",
                   ("agent", "experiment_name"): "..", ("kernel_compile_wait_s",): -1.0,
                   ("timeout",): math.nan}  # fmt: skip
    assert {(case.path, case.value) for case in refused} >= set(must_refuse.items())


def _values(kind: Any) -> st.SearchStrategy[Any]:
    if typing.get_origin(kind) in {typing.Union, types.UnionType}:
        return st.one_of(*(_values(arg) for arg in typing.get_args(kind)))
    if typing.get_origin(kind) is tuple:
        item = _values(typing.get_args(kind)[0])
        length = None if typing.get_args(kind)[-1] is Ellipsis else len(typing.get_args(kind))
        return st.lists(item, min_size=length or 0, max_size=length or 4).map(tuple)
    base = {int: st.integers(), float: st.floats(), str: st.text(max_size=300), Path: st.text().map(Path),
            type(None): st.none()}.get(kind)  # fmt: skip
    picks = st.sampled_from(boundaries(kind)) if boundaries(kind) else st.nothing()
    return st.one_of(picks, base) if base is not None else picks


TRAIN_FIELDS = [
    (path, kind)
    for path, kind in leaf_fields(defaults("train"))
    if path[-1] not in NOT_GENERATED["train"] and typing.get_origin(kind) is not Literal and kind is not bool
]


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_drawn_values_of_several_fields_at_once_are_refused_in_one_documented_line_or_planned(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path_factory.mktemp("drawn")
    monkeypatch.chdir(tmp)
    fields = data.draw(st.lists(st.sampled_from(TRAIN_FIELDS), min_size=1, max_size=3, unique_by=lambda f: f[0]))
    cases = [Case("train", path, data.draw(_values(kind), label=".".join(path))) for path, kind in fields]
    check_property("train", cases, tmp)


def trained_batches(tmp: Path) -> list[list[Case]]:
    """The accepted train cases, packed into as few configs as planning accepts together."""
    accepted = [case for case in CASES if case.command == "train" and case.path[-1] not in NOT_TRAINED
                and verdict("train", [case], tmp) is None and not _costs_time(case)]  # fmt: skip
    batches: list[list[Case]] = []
    for case in accepted:
        for batch in batches:
            if all(other.path != case.path for other in batch) and verdict("train", [*batch, case], tmp) is None:
                batch.append(case)
                break
        else:
            batches.append([case])
    return batches


def _costs_time(case: Case) -> bool:
    values = case.value if isinstance(case.value, tuple) else (case.value,)
    return case.path[-1] in TIME_BOUND and any(isinstance(v, int | float) and v > 8 for v in values)


@pytest.mark.slow
def test_accepted_boundary_values_train_for_one_iteration(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = tmp_path_factory.mktemp("plan")
    monkeypatch.chdir(tmp)
    batches = trained_batches(tmp)
    print(f"training {sum(map(len, batches))} accepted cases in {len(batches)} runs")
    failures: list[str] = []
    for index, batch in enumerate(batches):
        train_one_iteration(batch, tmp / f"run{index}", failures)
    assert failures == []


def train_one_iteration(batch: list[Case], tmp: Path, failures: list[str]) -> None:
    """Train ``batch`` for one iteration; on a failure, each half again, down to the cases that fail alone."""
    small = {("env", "num_envs"): 4, ("agent", "num_steps_per_env"): 4, ("agent", "max_iterations"): 1}
    paths = {case.path for case in batch}
    base = [Case("train", path, value) for path, value in small.items() if path not in paths]
    cfg = with_cases(defaults("train"), [*base, *batch], tmp)
    try:
        result = run_training(TASK, cfg, DeviceRequest.from_flags(("None",), None))
    except Exception as error:
        if len(batch) > 1:
            train_one_iteration(batch[: len(batch) // 2], tmp / "a", failures)
            train_one_iteration(batch[len(batch) // 2 :], tmp / "b", failures)
        else:
            failures.append(f"{batch[0]}: {type(error).__name__}: {error}")
        return
    assert result.iterations == 1, [str(case) for case in batch]


API_ROWS = [line.split(" | ") for line in DOCS.read_text().splitlines() if line.startswith("| `mjdist.")]


@pytest.mark.parametrize("row", API_ROWS, ids=[row[0] for row in API_ROWS])
def test_the_python_api_rows_are_refused_as_documented(
    row: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    call, error = row[0].removeprefix("| `").removesuffix("`"), row[2].removeprefix("`").removesuffix("` |")
    with pytest.raises(UsageError) as refusal:
        eval(call, {"mjdist": mjdist})  # the docs' own example call
    assert str(refusal.value) == error
    assert list(tmp_path.iterdir()) == []


def test_the_activations_are_those_rsl_rl_knows() -> None:
    from rsl_rl.utils import resolve_nn_activation

    with pytest.raises(ValueError) as unknown:
        resolve_nn_activation("relu6")
    assert str(unknown.value).endswith(f"Valid activations are: {list(ACTIVATIONS)}")
