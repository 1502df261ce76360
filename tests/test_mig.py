"""MIG instances: one per job works, wherever it stands in CUDA_VISIBLE_DEVICES while CUDA has not started (the rank
narrows the variable to it, as mjlab does); several in one job are refused with one line that says why."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from mjdist_tasks.cartpole import BALANCE

from mjdist.launch.devices import DeviceRequest, DeviceSelectionError, check_gpus_exist, resolve_devices
from mjdist.launch.machine import Machine
from mjdist.train.config import TrainConfig
from mjdist.train.plan import plan_training

MIG_A = "MIG-4f3c2b1a-0000-1111-2222-333344445555"
MIG_B = "MIG-9e8d7c6b-6666-7777-8888-999900001111"


def _resolve(gpu_ids: list[str] | None, visible: str, cuda_initialized: bool = False):
    machine = Machine(visible, 1, 2, cuda_initialized)  # CUDA enumerates one MIG instance
    return resolve_devices(DeviceRequest.from_flags(gpu_ids or (), None), machine)


@pytest.mark.parametrize("gpu_ids", [None, ["0"], ["all"]])
def test_one_mig_instance_trains(gpu_ids: list[str] | None) -> None:
    selection = _resolve(gpu_ids, MIG_A)
    assert (selection.kind, selection.physical_gpus, selection.world_size) == ("cuda", (MIG_A,), 1)
    check_gpus_exist(Machine(MIG_A, 1, 2))


def test_the_first_of_several_named_mig_instances_trains() -> None:
    selection = _resolve(None, f"{MIG_A},{MIG_B}")
    assert selection.physical_gpus == (MIG_A,) and selection.world_size == 1
    check_gpus_exist(Machine(f"{MIG_A},{MIG_B}", 1, 2))  # not "names 2 GPUs, but torch sees only 1"


@pytest.mark.parametrize(("gpu_ids", "flag"), [(["0", "1"], "--gpu-ids 0 1"), (["all"], "--gpu-ids all")])
def test_several_mig_instances_in_one_job_are_refused(gpu_ids: list[str], flag: str) -> None:
    with pytest.raises(DeviceSelectionError) as refused:
        _resolve(gpu_ids, f"{MIG_A},{MIG_B}")
    assert str(refused.value) == (
        f"{flag} selects 2 devices among MIG instances, but a CUDA process can use only one MIG instance, so one job "
        "cannot train on several; start one job per MIG instance (CUDA_VISIBLE_DEVICES=<one MIG UUID> --gpu-ids 0), "
        "or use whole GPUs"
    )


def test_a_later_mig_instance_trains_in_one_process_narrowed_to_it(tmp_path: Path) -> None:
    """mjlab's behaviour: CUDA_VISIBLE_DEVICES=MIG-a,MIG-b --gpu-ids 1 trains on MIG-b, as cuda:0 of a process whose
    CUDA_VISIBLE_DEVICES the rank narrows to MIG-b before CUDA starts."""
    cfg = TrainConfig(env=BALANCE.env, agent=BALANCE.agent, log_root=tmp_path)
    machine = Machine(f"{MIG_A},{MIG_B}", 1, 2)
    plan = plan_training(BALANCE, cfg, DeviceRequest((1,)), machine, os.environ, datetime.datetime.now())
    (rank,) = plan.launch.ranks
    assert (rank.device, rank.physical_gpu) == ("cuda:0", MIG_B)
    assert plan.launch.rank_visible_devices == MIG_B


def test_a_later_mig_instance_is_refused_once_cuda_started() -> None:
    with pytest.raises(DeviceSelectionError) as refused:
        _resolve(["1"], f"{MIG_A},{MIG_B}", cuda_initialized=True)
    assert str(refused.value) == (
        f"--gpu-ids 1 selects MIG instance {MIG_B}, but CUDA already started in this process and sees only the first "
        "MIG instance in CUDA_VISIBLE_DEVICES; select it before using CUDA, or put it first in CUDA_VISIBLE_DEVICES "
        "and use --gpu-ids 0"
    )


def test_rank_mode_on_mig_refuses_a_second_local_rank() -> None:
    """Under torchrun, LOCAL_RANK=1 would pick cuda:1, but a CUDA process sees one MIG instance only."""
    from mjdist.launch.identity import RankIdentity
    from mjdist.launch.plan import plan_scheduler_rank

    machine = Machine(f"{MIG_A},{MIG_B}", 1, 2)
    first = plan_scheduler_rank("cartpole-balance", DeviceRequest(), RankIdentity(0, 2, 0, 2), machine, 42)
    assert first.ranks[0].device == "cuda:0" and first.ranks[0].physical_gpu == MIG_A
    with pytest.raises(DeviceSelectionError) as refused:
        plan_scheduler_rank("cartpole-balance", DeviceRequest(), RankIdentity(1, 2, 1, 2), machine, 42)
    message = str(refused.value)
    assert message.startswith("LOCAL_RANK=1 on MIG instances: a CUDA process sees only the first MIG instance")
    assert "\n" not in message


@pytest.mark.parametrize("visible", ["GPU-aaaa,GPU-bbbb", f"{MIG_A}"])
def test_hosts_refuse_gpus_named_by_uuid(visible: str, tmp_path: Path) -> None:
    """UUIDs and MIG ids name GPUs of this host only: copied to other hosts they would name nothing (or others')."""
    cfg = TrainConfig(env=BALANCE.env, agent=BALANCE.agent, log_root=tmp_path, hosts=("node-a", "node-b"))
    with pytest.raises(DeviceSelectionError) as refused:
        plan_training(BALANCE, cfg, DeviceRequest((0,)), Machine(visible, 2, 2), os.environ, datetime.datetime.now())
    message = str(refused.value)
    assert message.startswith("--hosts with CUDA_VISIBLE_DEVICES naming UUIDs or MIG instances") and "\n" not in message
