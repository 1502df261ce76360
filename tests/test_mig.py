"""MIG instances: one per job works; several in one job are refused with one line that says why."""

from __future__ import annotations

import pytest

from mjdist.launch.devices import DeviceSelectionError, check_gpus_exist, resolve_devices

MIG_A = "MIG-4f3c2b1a-0000-1111-2222-333344445555"
MIG_B = "MIG-9e8d7c6b-6666-7777-8888-999900001111"


def _resolve(gpu_ids: list[str] | None, visible: str):
    return resolve_devices(gpu_ids, None, visible, device_count=1, cpu_count=2)  # CUDA enumerates one MIG instance


@pytest.mark.parametrize("gpu_ids", [None, ["0"], ["all"]])
def test_one_mig_instance_trains(gpu_ids: list[str] | None) -> None:
    selection = _resolve(gpu_ids, MIG_A)
    assert (selection.kind, selection.physical_gpus, selection.world_size) == ("cuda", (MIG_A,), 1)
    check_gpus_exist(MIG_A, 1)


def test_the_first_of_several_named_mig_instances_trains() -> None:
    selection = _resolve(None, f"{MIG_A},{MIG_B}")
    assert selection.physical_gpus == (MIG_A,) and selection.world_size == 1
    check_gpus_exist(f"{MIG_A},{MIG_B}", 1)  # not "names 2 GPUs, but torch sees only 1"


@pytest.mark.parametrize(
    ("gpu_ids", "message"),
    [
        (["0", "1"], "--gpu-ids 0 1 selects 2 devices among MIG instances, but a CUDA process can use only one MIG"),
        (["all"], "--gpu-ids all selects 2 devices among MIG instances, but a CUDA process can use only one MIG"),
        (["1"], f"--gpu-ids 1 selects {MIG_B}, but CUDA makes only the first MIG instance in CUDA_VISIBLE_DEVICES"),
    ],
)
def test_several_mig_instances_in_one_job_are_refused(gpu_ids: list[str], message: str) -> None:
    with pytest.raises(DeviceSelectionError) as refused:
        _resolve(gpu_ids, f"{MIG_A},{MIG_B}")
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
