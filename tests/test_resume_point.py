"""How the ranks of a job choose one start point from what each found on its own disk (no process group: the
choice itself; tests/test_torchrun.py runs it across two torchrun nodes)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mjdist.tasks import get_task
from mjdist.train.config import TrainConfig
from mjdist.train.requeue import AUTO
from mjdist.train.resume_point import RanksDisagree, RankView, choose_start, local_view

SPEC = get_task("cartpole-balance")


def config(tmp_path: Path, resume: Path = AUTO) -> TrainConfig:
    return TrainConfig(env=SPEC.env, agent=SPEC.agent, log_root=tmp_path, run_name="requeued", resume=resume)


def views(cfg: TrainConfig, *found: tuple[str, int] | None) -> list[RankView]:
    """Rank r on host node<r>, which found ``found[r]`` (checkpoint, iteration) or nothing."""
    base = [local_view(cfg, SPEC.name, rank, f"node{rank}") for rank in range(len(found))]
    return [view if checkpoint is None else dataclasses.replace(view, checkpoint=checkpoint[0], iteration=checkpoint[1])
            for view, checkpoint in zip(base, found, strict=True)]  # fmt: skip


def test_the_newest_checkpoint_of_any_rank_wins_and_the_lowest_rank_among_equals(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert [view.checkpoint for view in views(cfg, None, None)] == [None, None]  # nothing on these disks
    assert choose_start(views(cfg, None, None), cfg) is None
    assert choose_start(views(cfg, None, ("/b/model_2.pt", 2), ("/c/model_4.pt", 4)), cfg).rank == 2
    assert choose_start(views(cfg, ("/a/model_4.pt", 4), None, ("/c/model_4.pt", 4)), cfg).rank == 0


def test_a_rank_started_with_other_flags_stops_every_rank_with_one_line(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    other = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, max_iterations=7))
    mixed = [views(cfg, None)[0], views(other, None, None)[1]]
    with pytest.raises(RanksDisagree, match=r"^rank 1 on node1 was started with --agent.max-iterations 7, rank 0 on "
                       r"node0 with --agent.max-iterations \d+; start every rank with the same command$"):  # fmt: skip
        choose_start(mixed, cfg)


def test_a_named_checkpoint_must_exist_on_some_node_and_be_usable_where_it_does(tmp_path: Path) -> None:
    missing = config(tmp_path, resume=tmp_path / "model_3.pt")
    with pytest.raises(RanksDisagree, match=r"model_3\.pt does not exist on any node of the job$"):
        choose_start(views(missing, None, None), missing)
    (tmp_path / "model_3.pt").write_text("not a checkpoint")
    broken = views(missing, None, None)
    assert broken[0].error is not None and broken[0].checkpoint is None
    with pytest.raises(RanksDisagree, match=r"^rank 0 on node0: cannot read checkpoint .*model_3.pt"):
        choose_start(broken, missing)
