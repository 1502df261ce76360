"""Plans past one host: ``--hosts`` (rank order, seeds, devices, the writer, logs, refusals), ``--hosts auto``
from a SLURM allocation, and rank mode under torchrun-style variables. Dry runs only: nothing starts."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mjdist.cli.train import main
from mjdist.launch.launcher import ENV_VARS_FOR_RANKS

RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SLURM_STEP_VARIABLES = ("SLURM_STEP_ID", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODEID",
                        "SLURM_STEP_TASKS_PER_NODE")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, no_gpus: None) -> None:
    for variable in ("CUDA_VISIBLE_DEVICES", "TORCHRUNX_LOG_DIR", "OMP_NUM_THREADS", "SLURM_JOB_ID", "SLURM_JOBID",
                     "TORCHELASTIC_RUN_ID", *SLURM_STEP_VARIABLES, *RANK_VARIABLES):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)


def plan_of(capsys: pytest.CaptureFixture[str], log_root: Path, *args: str) -> dict:
    assert main(["cartpole-balance", "--log-root", str(log_root), "--dry-run", *args]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and not log_root.exists()
    return json.loads(out[0])


def refusal(capsys: pytest.CaptureFixture[str], log_root: Path, *args: str) -> str:
    assert main(["cartpole-balance", "--log-root", str(log_root), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not log_root.exists()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: error: "), captured.err
    return lines[0]


def rank_rows(plan: dict) -> list[tuple]:
    return [(r["rank"], r["host"], r["local_rank"], r["device"], r["physical_gpu"], r["seed"]) for r in plan["ranks"]]


def test_cpu_workers_repeat_on_every_host_in_host_order(capsys, log_root: Path) -> None:
    plan = plan_of(capsys, log_root, "--hosts", "node-a", "node-b", "--gpu-ids", "None", "--cpu-workers", "2",
                   "--agent.seed", "7")  # fmt: skip
    assert plan["launcher"] == "torchrunx" and plan["world_size"] == 4 and plan["backend"] == "gloo"
    assert plan["hosts"] == ["node-a", "node-b"]
    assert rank_rows(plan) == [
        (0, "node-a", 0, "cpu", None, 7), (1, "node-a", 1, "cpu", None, 8),
        (2, "node-b", 0, "cpu", None, 9), (3, "node-b", 1, "cpu", None, 10),
    ]  # fmt: skip
    assert plan["torch_threads"] == 1
    assert plan["torchrunx_log_dir"] == str(Path(plan["run_dir"]) / "torchrunx")  # on the launching host


def test_gpu_ids_mean_the_same_gpus_on_every_host(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    plan = plan_of(capsys, log_root, "--hosts", "10.0.0.1", "10.0.0.2", "10.0.0.3", "--gpu-ids", "3", "1")
    assert plan["world_size"] == 6 and plan["backend"] == "nccl"
    assert [(r["host"], r["device"], r["physical_gpu"], r["seed"]) for r in plan["ranks"]] == [
        (host, f"cuda:{local}", gpu, 42 + 2 * index + local)
        for index, host in enumerate(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        for local, gpu in enumerate(["7", "5"])
    ]


def test_one_gpu_on_each_of_two_hosts_is_a_two_rank_nccl_job(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    plan = plan_of(capsys, log_root, "--hosts", "a", "b", "--gpu-ids", "1")
    assert plan["backend"] == "nccl" and plan["torchrunx_log_dir"] is not None
    assert rank_rows(plan) == [(0, "a", 0, "cuda:0", "1", 42), (1, "b", 0, "cuda:0", "1", 43)]


def test_one_rank_on_another_host_still_goes_there_through_torchrunx(capsys, log_root: Path, monkeypatch) -> None:
    cpu = plan_of(capsys, log_root, "--hosts", "node-a", "--gpu-ids", "None")
    assert cpu["launcher"] == "torchrunx" and cpu["world_size"] == 1 and cpu["backend"] is None
    assert cpu["torchrunx_log_dir"] is not None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    gpu = plan_of(capsys, log_root, "--hosts", "node-a", "--gpu-ids", "1")
    assert [(r["device"], r["physical_gpu"]) for r in gpu["ranks"]] == [("cuda:0", "5")]  # it sees only GPU 5


def test_the_ssh_config_travels_in_the_plan(capsys, log_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  StrictHostKeyChecking no\n")
    plan = plan_of(capsys, log_root, "--hosts", "a", "b", "--gpu-ids", "None", "--ssh-config", str(config))
    assert plan["ssh_config"] == str(config)


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        (["localhost", "node-b"], "localhost is this machine's loopback name, which other hosts cannot reach"),
        (["node-a", "127.0.0.1"], "127.0.0.1 is this machine's loopback name"),
        (["node-a", "node-a"], "host node-a is given twice in --hosts; list each host once"),
        (["auto", "node-a"], "--hosts auto cannot be combined with host names"),
    ],
)
def test_host_lists_that_cannot_work_are_refused(capsys, log_root: Path, hosts: list[str], message: str) -> None:
    assert message in refusal(capsys, log_root, "--hosts", *hosts, "--gpu-ids", "None", "--dry-run")


def test_a_missing_ssh_config_is_refused(capsys, log_root: Path, tmp_path: Path) -> None:
    line = refusal(capsys, log_root, "--hosts", "a", "b", "--ssh-config", str(tmp_path / "nope"), "--gpu-ids", "None")
    assert "no such file" in line


def test_hosts_auto_outside_slurm_is_this_host(capsys, log_root: Path) -> None:
    plan = plan_of(capsys, log_root, "--hosts", "auto", "--gpu-ids", "None", "--cpu-workers", "2")
    assert plan["hosts"] == ["localhost"] and plan["world_size"] == 2


def fake_scontrol(directory: Path, body: str) -> None:
    """A stand-in for SLURM's scontrol (no SLURM here): prints the allocation the way `show hostnames` does."""
    script = directory / "scontrol"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_hosts_auto_inside_slurm_reads_the_allocation(capsys, log_root: Path, tmp_path: Path, monkeypatch) -> None:
    fake_scontrol(tmp_path, '[ "$1 $2" = "show hostnames" ] && printf "gpu-07\\ngpu-09\\n"')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    plan = plan_of(capsys, log_root, "--hosts", "auto", "--gpu-ids", "None")
    assert plan["hosts"] == ["gpu-07", "gpu-09"]
    assert rank_rows(plan) == [(0, "gpu-07", 0, "cpu", None, 42), (1, "gpu-09", 0, "cpu", None, 43)]


def test_hosts_auto_inside_slurm_without_scontrol_is_one_line(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "scontrol is not on PATH" in refusal(capsys, log_root, "--hosts", "auto", "--gpu-ids", "None")


def test_the_copied_variables_match_what_remote_ranks_need() -> None:
    import fnmatch

    needed = ["LD_LIBRARY_PATH", "PATH", "PYTHONPATH", "CUDA_HOME", "NCCL_SOCKET_IFNAME", "NCCL_DEBUG",
              "GLOO_SOCKET_IFNAME", "WARP_CACHE_PATH", "MUJOCO_GL", "WANDB_MODE", "OMP_NUM_THREADS"]  # fmt: skip
    assert [name for name in needed if not any(fnmatch.fnmatch(name, p) for p in ENV_VARS_FOR_RANKS)] == []


def set_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int, local: int = 0, local_world: int = 1) -> None:
    for name, value in (("RANK", rank), ("WORLD_SIZE", world), ("LOCAL_RANK", local), ("LOCAL_WORLD_SIZE", local_world),
                        ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", 29500)):  # fmt: skip
        monkeypatch.setenv(name, str(value))


def test_rank_mode_plans_only_this_rank_on_the_cpu(capsys, log_root: Path, monkeypatch) -> None:
    set_rank(monkeypatch, rank=3, world=4, local=1, local_world=2)
    plan = plan_of(capsys, log_root, "--agent.seed", "100")
    assert plan["launcher"] == "environment" and plan["world_size"] == 4 and plan["backend"] == "gloo"
    assert [(r["rank"], r["local_rank"], r["device"], r["seed"]) for r in plan["ranks"]] == [(3, 1, "cpu", 103)]
    assert plan["torchrunx_log_dir"] is None


def test_rank_mode_uses_the_gpu_of_its_local_rank(capsys, log_root: Path, monkeypatch) -> None:
    set_rank(monkeypatch, rank=5, world=8, local=1, local_world=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    plan = plan_of(capsys, log_root)
    assert plan["backend"] == "nccl"
    assert [(r["device"], r["physical_gpu"], r["seed"]) for r in plan["ranks"]] == [("cuda:1", "1", 47)]
    cpu = plan_of(capsys, log_root, "--gpu-ids", "None")
    assert cpu["backend"] == "gloo" and cpu["ranks"][0]["device"] == "cpu"


@pytest.mark.parametrize(
    ("args", "visible", "message"),
    [
        (["--gpu-ids", "0", "1"], "0,1", "--gpu-ids 0 1 contradicts RANK=1 WORLD_SIZE=2 LOCAL_RANK=1"),
        (["--gpu-ids", "all"], "0,1", "--gpu-ids all contradicts"),
        (["--gpu-ids", "None", "--cpu-workers", "2"], None, "--cpu-workers 2 contradicts"),
        (["--hosts", "a", "b"], None, "--hosts a b contradicts"),
        ([], "0", "LOCAL_RANK=1 has no GPU: 1 visible"),
        (["--gpu-ids", "1"], None, "--gpu-ids 1 needs a GPU, but none is visible"),
    ],
)
def test_rank_mode_refuses_flags_that_contradict_the_environment(
    capsys, log_root: Path, monkeypatch, args: list[str], visible: str | None, message: str
) -> None:
    set_rank(monkeypatch, rank=1, world=2, local=1, local_world=2)
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert message in refusal(capsys, log_root, *args, "--dry-run")


@pytest.mark.parametrize(
    "slurm", [{}, {"SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "4"}], ids=["pod", "slurm-job"]
)
def test_rank_mode_refuses_rank_variables_that_no_per_process_launcher_set(
    capsys, log_root: Path, monkeypatch, slurm: dict[str, str]
) -> None:
    """A Kubernetes pod's RANK and WORLD_SIZE (no LOCAL_RANK), or a SLURM step whose task is not RANK."""
    set_rank(monkeypatch, rank=1, world=4)
    monkeypatch.delenv("LOCAL_RANK")
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    message = refusal(capsys, log_root, "--dry-run")
    assert "RANK=1 and WORLD_SIZE=4 are set, but no per-process launcher started train" in message
    assert "start train with torchrun" in message


def test_rank_mode_takes_a_task_of_a_slurm_step_as_one_rank(capsys, log_root: Path, monkeypatch) -> None:
    set_rank(monkeypatch, rank=3, world=4)
    for name in ("LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name)
    for name, value in zip(SLURM_STEP_VARIABLES, ("7", "3", "4", "1", "1", "2(x2)"), strict=True):
        monkeypatch.setenv(name, value)
    plan = plan_of(capsys, log_root)
    assert [(r["rank"], r["local_rank"], r["seed"]) for r in plan["ranks"]] == [(3, 1, 45)]


def test_rank_mode_needs_the_rendezvous_address(capsys, log_root: Path, monkeypatch) -> None:
    set_rank(monkeypatch, rank=0, world=2)
    monkeypatch.delenv("MASTER_ADDR")
    assert "MASTER_ADDR is not" in refusal(capsys, log_root, "--dry-run")


def test_train_and_launch_take_hosts_and_ssh_config(log_root: Path, tmp_path: Path, monkeypatch) -> None:
    import mjdist
    from mjdist.launch import launcher
    from mjdist.train.result import RankResult

    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  StrictHostKeyChecking no\n")
    plans = []

    def started(plan, rank_fn, *args, **kwargs):  # what the launcher was asked to start; nothing starts
        plans.append(plan)
        return [RankResult(rank.rank, "digest", str(rank.rank)) for rank in plan.ranks]

    monkeypatch.setattr(launcher, "run_ranks", started)
    result = mjdist.train("cartpole-balance", gpu_ids=None, hosts=["node-a", "node-b"], ssh_config=config,
                          host_check=False, log_root=log_root, agent={"max_iterations": 1})  # fmt: skip
    assert result.hosts == ("node-a", "node-b") and result.world_size == 2
    assert (plans[-1].launcher, plans[-1].ssh_config) == ("torchrunx", str(config.absolute()))
    assert [(rank.rank, rank.host) for rank in plans[-1].ranks] == [(0, "node-a"), (1, "node-b")]
    assert result.to_json()["hosts"] == ["node-a", "node-b"]

    with pytest.raises(mjdist.UsageError, match=r"^host node-a does not resolve \("):  # hosts are checked first
        mjdist.launch(len, "ab", gpu_ids=None, cpu_workers=2, hosts="node-a", ssh_config=config)
    assert len(mjdist.launch(len, "ab", gpu_ids=None, cpu_workers=2, hosts="node-a", ssh_config=config,
                             host_check=False)) == 2  # fmt: skip
    assert plans[-1].hosts == ("node-a",) and plans[-1].launcher == "torchrunx" and plans[-1].world_size == 2
    assert plans[-1].ssh_config == str(config.absolute()) and plans[-1].name == "len"
    mjdist.launch(len, "ab", gpu_ids=None)
    assert plans[-1].hosts == ("localhost",) and plans[-1].launcher == "in-process" and plans[-1].ssh_config is None
