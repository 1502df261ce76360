"""Which checkpoint a path names: a run's checkpoints by iteration (9 before 10), the newest loadable one (newer
broken ones named), the newest run of an experiment that has one, and a checkpoint file given directly; each
refusal is one line naming the path."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch

from mjdist.checkpoints import (
    CheckpointError,
    checkpoint_iteration,
    latest_run,
    list_checkpoints,
    load_weights_only,
    newest_loadable_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    write_checkpoint,
)

TASK = "cartpole-balance"


def save(path: Path, iteration: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint({"actor_state_dict": {"w": torch.full((2,), float(iteration))}, "critic_state_dict": {},
                      "optimizer_state_dict": {}, "iter": iteration, "infos": {"task": TASK}}, path)  # fmt: skip
    return path


def test_checkpoints_are_listed_by_iteration_not_by_name(tmp_path: Path) -> None:
    for iteration in (10, 9, 100):
        save(tmp_path / f"model_{iteration}.pt", iteration)
    (tmp_path / "model_final.pt").write_bytes(b"")
    assert [path.name for path in list_checkpoints(tmp_path)] == ["model_9.pt", "model_10.pt", "model_100.pt"]
    assert list_checkpoints(tmp_path / "missing") == []


def test_a_name_that_is_not_a_checkpoints_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as raised:
        checkpoint_iteration(tmp_path / "policy.pt")
    assert str(raised.value) == f"{tmp_path}/policy.pt is not a checkpoint (expected a file named model_<iteration>.pt)"


def test_newer_broken_checkpoints_are_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save(tmp_path / "model_9.pt", 9)
    (tmp_path / "model_10.pt").write_bytes(b"cut off")
    (tmp_path / "model_11.pt").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert newest_loadable_checkpoint(tmp_path, TASK).iteration == 9
    assert [message.split(":")[0] for message in caplog.messages] == [
        "Skipping checkpoint model_11.pt",
        "Skipping checkpoint model_10.pt",
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, "run directory {run} does not exist"),
        ([], "run directory {run} has no model_<iteration>.pt checkpoints"),
        (["model_3.pt", "model_12.pt"], "no checkpoint in {run} can be used (skipped model_12.pt, model_3.pt)"),
    ],
    ids=["missing", "empty", "all-broken"],
)
def test_a_run_without_a_loadable_checkpoint_is_refused(tmp_path: Path, files: list[str] | None, message: str) -> None:
    run = tmp_path / "run"
    if files is not None:
        run.mkdir()
        for name in files:
            (run / name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as raised:
        newest_loadable_checkpoint(run, TASK)
    assert str(raised.value) == message.format(run=run)


def test_the_latest_run_is_the_newest_with_a_checkpoint(tmp_path: Path) -> None:
    experiment = tmp_path / "cartpole_balance"
    save(experiment / "2026-01-01_00-00-00" / "model_0.pt", 0)
    save(experiment / "2026-01-02_00-00-00" / "model_0.pt", 0)
    (experiment / "2026-01-03_00-00-00").mkdir()  # newer, but nothing saved yet
    (experiment / "2026-01-04_00-00-00").write_text("a file, not a run")
    assert latest_run(experiment) == experiment / "2026-01-02_00-00-00"


@pytest.mark.parametrize("made", [False, True], ids=["missing", "without-checkpoints"])
def test_an_experiment_without_a_run_with_checkpoints_is_refused(tmp_path: Path, made: bool) -> None:
    experiment = tmp_path / "cartpole_balance"
    if made:
        (experiment / "2026-01-01_00-00-00").mkdir(parents=True)
    with pytest.raises(CheckpointError) as raised:
        latest_run(experiment)
    assert str(raised.value) == f"no run with checkpoints under {experiment}; train one first, or pass --checkpoint"


def test_a_checkpoint_is_resolved_from_its_file_or_its_run(tmp_path: Path) -> None:
    save(tmp_path / "model_4.pt", 4)
    save(tmp_path / "model_7.pt", 7)
    assert resolve_checkpoint(tmp_path / "model_4.pt", TASK).iteration == 4
    assert resolve_checkpoint(tmp_path, TASK).iteration == 7
    with pytest.raises(CheckpointError) as raised:
        resolve_checkpoint(tmp_path / "model_5.pt", TASK)
    assert str(raised.value) == f"checkpoint {tmp_path}/model_5.pt does not exist"
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        resolve_checkpoint(tmp_path / "weights.pt", TASK)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "{path} is not an rsl_rl checkpoint (it holds a list)"),
        ({"iter": 3, "actor_state_dict": {}}, "{path} is not an rsl_rl checkpoint (missing critic_state_dict, "
                                              "optimizer_state_dict)"),
        ({"iter": 3, "actor_state_dict": {}, "critic_state_dict": {}, "optimizer_state_dict": {},
          "infos": {"task": "cartpole-swingup"}},
         "checkpoint {path} was trained on task 'cartpole-swingup', not 'cartpole-balance'"),
    ],
    ids=["not-a-dict", "missing-parts", "other-task"],
)  # fmt: skip
def test_a_file_that_is_not_a_checkpoint_of_the_task_is_refused(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "model_3.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path, TASK)
    assert str(raised.value) == message.format(path=path)


def test_an_unreadable_file_is_refused_in_the_unpicklers_words_without_torchs_advice(tmp_path: Path) -> None:
    path = tmp_path / "model_3.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(pickle.UnpicklingError) as original:
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path, TASK)
    reason = str(raised.value).removeprefix(f"cannot read checkpoint {path}: ")
    assert reason != str(raised.value) and "weights_only" not in reason
    assert reason in [line.strip() for line in str(original.value).splitlines()]  # a line of torch's error


def test_a_damaged_archive_is_refused_with_the_first_line_of_torchs_error(tmp_path: Path) -> None:
    path = save(tmp_path / "model_3.pt", 3)
    path.write_bytes(path.read_bytes()[:200])  # cut off: the zip archive has no central directory
    with pytest.raises(Exception) as original:
        torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path, TASK)
    assert str(raised.value) == f"cannot read checkpoint {path}: {str(original.value).strip().splitlines()[0]}"


def test_a_checkpoint_carries_its_whole_state_and_a_train_cfg_only_when_it_is_one(tmp_path: Path) -> None:
    path = save(tmp_path / "model_3.pt", 3)
    checkpoint = read_checkpoint(path, TASK)
    assert (checkpoint.path, checkpoint.iteration, checkpoint.train_cfg) == (path.absolute(), 3, None)
    assert set(checkpoint.state) == {"actor_state_dict", "critic_state_dict", "infos", "iter", "optimizer_state_dict"}
    state = {**checkpoint.state, "infos": {"task": TASK, "train_cfg": "not a dict"}}
    torch.save(state, path)
    assert read_checkpoint(path, TASK).train_cfg is None
    torch.save({**state, "infos": {"task": TASK, "train_cfg": {"seed": 1}}}, path)
    assert read_checkpoint(path, TASK).train_cfg == {"seed": 1}


def test_tensors_load_where_map_location_puts_them(tmp_path: Path) -> None:
    path = save(tmp_path / "model_3.pt", 3)
    loaded = load_weights_only(path, map_location="meta")
    assert loaded["actor_state_dict"]["w"].device == torch.device("meta")
