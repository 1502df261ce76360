"""``train --dry-run``: the launch plan as one JSON object, for CPU, CPU workers and (named) GPUs; nothing created."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest
from mjdist_tasks.cartpole import BALANCE

from mjdist.cli.train import main
from mjdist.launch.devices import DeviceRequest
from mjdist.launch.machine import Machine
from mjdist.train.config import TrainConfig
from mjdist.train.plan import plan_training


def dry_run(capsys: pytest.CaptureFixture[str], log_root: Path, *args: str) -> tuple[dict, str]:
    assert main(["cartpole-balance", "--log-root", str(log_root), "--dry-run", *args]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, "the plan is exactly one line of JSON on stdout"
    assert not log_root.exists(), "a dry run creates nothing"
    return json.loads(lines[0]), captured.err


@pytest.fixture(autouse=True)
def no_gpus_and_no_overrides(monkeypatch: pytest.MonkeyPatch, no_gpus: None) -> None:
    for variable in ("CUDA_VISIBLE_DEVICES", "TORCHRUNX_LOG_DIR", "OMP_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)


def test_default_on_a_machine_without_gpus_is_one_cpu_process(capsys, log_root: Path) -> None:
    plan, _ = dry_run(capsys, log_root)
    assert plan["world_size"] == 1 and plan["backend"] is None and plan["torchrunx_log_dir"] is None
    assert plan["ranks"] == [
        {"rank": 0, "host": "localhost", "local_rank": 0, "device": "cpu", "physical_gpu": None, "seed": 42}
    ]
    assert plan["run_dir"].startswith(str((log_root / "cartpole_balance").absolute()))
    assert plan["torch_threads"] is None


def test_cpu_workers_use_gloo_one_thread_each_and_distinct_seeds(capsys, log_root: Path) -> None:
    plan, _ = dry_run(capsys, log_root, "--gpu-ids", "None", "--cpu-workers", "3", "--agent.seed", "10")
    assert plan["world_size"] == 3 and plan["backend"] == "gloo" and plan["torch_threads"] == 1
    assert [(r["rank"], r["device"], r["physical_gpu"], r["seed"]) for r in plan["ranks"]] == [
        (0, "cpu", None, 10), (1, "cpu", None, 11), (2, "cpu", None, 12),
    ]  # fmt: skip
    assert plan["torchrunx_log_dir"] == str(Path(plan["run_dir"]) / "torchrunx")


def test_omp_num_threads_set_by_the_user_is_respected(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    plan, _ = dry_run(capsys, log_root, "--gpu-ids", "None", "--cpu-workers", "2")
    assert plan["torch_threads"] is None


def test_gpu_ids_index_into_cuda_visible_devices(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    plan, _ = dry_run(capsys, log_root, "--gpu-ids", "0", "1")
    assert plan["world_size"] == 2 and plan["backend"] == "nccl"
    assert [(r["rank"], r["local_rank"], r["device"], r["physical_gpu"], r["seed"]) for r in plan["ranks"]] == [
        (0, 0, "cuda:0", "2", 42), (1, 1, "cuda:1", "3", 43),
    ]  # fmt: skip


def test_gpu_order_and_uuids_are_kept(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa, GPU-bbbb,GPU-cccc")
    plan, _ = dry_run(capsys, log_root, "--gpu-ids", "2", "0")
    assert [r["physical_gpu"] for r in plan["ranks"]] == ["GPU-cccc", "GPU-aaaa"]
    assert [r["device"] for r in plan["ranks"]] == ["cuda:0", "cuda:1"]


def test_all_uses_every_visible_gpu(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    plan, _ = dry_run(capsys, log_root, "--gpu-ids", "all")
    assert [r["physical_gpu"] for r in plan["ranks"]] == ["4", "5", "6"]


def test_single_gpu_runs_in_process_on_its_visible_index(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    plan, _ = dry_run(capsys, log_root, "--gpu-ids", "1")
    assert plan["world_size"] == 1 and plan["backend"] is None and plan["torchrunx_log_dir"] is None
    assert plan["ranks"] == [
        {"rank": 0, "host": "localhost", "local_rank": 0, "device": "cuda:1", "physical_gpu": "7", "seed": 42}
    ]


def test_empty_cuda_visible_devices_means_cpu(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    plan, _ = dry_run(capsys, log_root)
    assert plan["ranks"][0]["device"] == "cpu"


@pytest.mark.parametrize(
    ("environment", "flag", "expected"),
    [
        (None, [], "<run>/torchrunx"),
        (None, ["--torchrunx-log-dir", "/tmp/trx-flag"], "/tmp/trx-flag"),
        ("/tmp/trx-env", ["--torchrunx-log-dir", "/tmp/trx-flag"], "/tmp/trx-env"),
        ("", ["--torchrunx-log-dir", "/tmp/trx-flag"], None),
        (None, ["--torchrunx-log-dir", ""], None),
    ],
)
def test_torchrunx_log_dir_precedence(capsys, log_root: Path, monkeypatch, environment, flag, expected) -> None:
    if environment is not None:
        monkeypatch.setenv("TORCHRUNX_LOG_DIR", environment)
    plan, _ = dry_run(capsys, log_root, "--gpu-ids", "None", "--cpu-workers", "2", *flag)
    if expected == "<run>/torchrunx":
        expected = str(Path(plan["run_dir"]) / "torchrunx")
    assert plan["torchrunx_log_dir"] == expected


def test_out_of_range_gpu_is_one_line_with_the_facts(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert main(["cartpole-balance", "--log-root", str(log_root), "--gpu-ids", "2", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.count("\n") == 0
    assert "2 GPUs are visible" in err and "CUDA_VISIBLE_DEVICES='2,3'" in err


def test_gpu_ids_without_a_gpu_is_an_error(capsys, log_root: Path) -> None:
    assert main(["cartpole-balance", "--log-root", str(log_root), "--gpu-ids", "all"]) == 2
    assert "none is visible" in capsys.readouterr().err
    assert not log_root.exists()


def test_cpu_workers_with_gpu_ids_is_an_error(capsys, log_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert main(["cartpole-balance", "--log-root", str(log_root), "--gpu-ids", "0", "--cpu-workers", "2"]) == 2
    assert "--cpu-workers only applies to CPU training" in capsys.readouterr().err


def test_multi_gpu_ranks_see_the_selected_gpus_in_rank_order(log_root: Path) -> None:
    cfg = TrainConfig(env=BALANCE.env, agent=BALANCE.agent, log_root=log_root)
    now = datetime.datetime.now()
    plan = plan_training(BALANCE, cfg, DeviceRequest((3, 1)), Machine("4,5,6,7", 4, 2), os.environ, now)
    assert plan.launch.rank_visible_devices == "7,5"  # rank 0 -> cuda:0 = GPU 7, rank 1 -> cuda:1 = GPU 5
    single = plan_training(BALANCE, cfg, DeviceRequest((1,)), Machine("4,5", 2, 2), os.environ, now)
    assert single.launch.rank_visible_devices is None  # one process keeps the launcher's CUDA_VISIBLE_DEVICES
    assert single.launch.ranks[0].device == "cuda:1"
