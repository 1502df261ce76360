"""Tests for mjdist.launch.devices: device resolution from --gpu-ids, --cpu-workers and CUDA_VISIBLE_DEVICES."""

from collections.abc import Sequence

import pytest

from mjdist.launch.devices import (
    DeviceRequest,
    DeviceSelection,
    DeviceSelectionError,
    check_cpu_workers,
    check_gpus_exist,
    resolve_devices,
)
from mjdist.launch.machine import Machine, parse_visible_devices

UUID_A = "GPU-8f6c1a2e-4b7d-11ee-9c3a-0242ac120002"
UUID_B = "GPU-3f2a9b10-4b7d-11ee-9c3a-0242ac120003"
MIG_A = "MIG-GPU-8f6c1a2e-4b7d-11ee-9c3a-0242ac120002/1/2"
MIG_B = "MIG-7c1e5d4a-2b3f-5a6c-8d9e-0f1a2b3c4d5e"


def resolve(
    gpu_ids: Sequence[str] | None = None,
    cpu_workers: str | None = None,
    cuda_visible_devices: str | None = None,
    device_count: int = 0,
    cpu_count: int = 8,
) -> DeviceSelection:
    request = DeviceRequest.from_flags(gpu_ids or (), cpu_workers)
    return resolve_devices(request, Machine(cuda_visible_devices, device_count, cpu_count))


def resolve_error(**kwargs: object) -> str:
    with pytest.raises(DeviceSelectionError) as info:
        resolve(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


def cuda(indices: tuple[int, ...], physical: tuple[str, ...]) -> DeviceSelection:
    return DeviceSelection(kind="cuda", visible_indices=indices, physical_gpus=physical, world_size=len(indices))


def cpu(workers: int = 1) -> DeviceSelection:
    return DeviceSelection(kind="cpu", visible_indices=(), physical_gpus=(), world_size=workers)


# --- parse_visible_devices -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "device_count", "expected"),
    [
        (None, 0, []),
        (None, 1, ["0"]),
        (None, 4, ["0", "1", "2", "3"]),
        ("", 4, []),
        ("   ", 4, []),
        ("0", 0, ["0"]),
        ("2,3", 0, ["2", "3"]),
        ("2,3", 8, ["2", "3"]),
        (" 2, 3 ", 0, ["2", "3"]),
        ("1,3,6", 0, ["1", "3", "6"]),
        ("3,1", 0, ["3", "1"]),
        ("0,1,", 0, ["0", "1"]),
        ("0,,1", 0, ["0"]),
        (",0", 0, []),
        ("0, ,1", 0, ["0"]),
        ("0,-1,1", 0, ["0"]),
        ("-1", 4, []),
        ("-1,0", 4, []),
        ("1,-3", 4, ["1"]),
        (f"{UUID_A},{UUID_B}", 0, [UUID_A, UUID_B]),
        (f" {UUID_A} , 1 ", 0, [UUID_A, "1"]),
        (f"{MIG_A},{MIG_B}", 0, [MIG_A, MIG_B]),
        ("01", 0, ["01"]),
    ],
)
def test_parse_visible_devices(value: str | None, device_count: int, expected: list[str]) -> None:
    assert parse_visible_devices(value, device_count) == tuple(expected)


# --- successful resolution ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu_ids", "cuda_visible_devices", "device_count", "expected"),
    [
        # mjlab doc examples
        (["0"], None, 2, cuda((0,), ("0",))),
        (["0", "1"], None, 2, cuda((0, 1), ("0", "1"))),
        (["all"], None, 4, cuda((0, 1, 2, 3), ("0", "1", "2", "3"))),
        (["0", "1"], "2,3", 0, cuda((0, 1), ("2", "3"))),
        (["0", "1"], "2,3", 2, cuda((0, 1), ("2", "3"))),
        # user order kept
        (["1", "0"], None, 2, cuda((1, 0), ("1", "0"))),
        (["1", "0"], "2,3", 2, cuda((1, 0), ("3", "2"))),
        # non-contiguous visible list
        (["2", "0"], "1,3,6", 0, cuda((2, 0), ("6", "1"))),
        (["1"], "1,3,6", 0, cuda((1,), ("3",))),
        # spaces and empty segments in CUDA_VISIBLE_DEVICES
        (["0", "1"], " 2, 3 ", 0, cuda((0, 1), ("2", "3"))),
        (["all"], "0,,1", 0, cuda((0,), ("0",))),
        (["all"], "5,-1,6", 0, cuda((0,), ("5",))),
        # UUID and MIG entries kept as strings
        (["1", "0"], f"{UUID_A},{UUID_B}", 0, cuda((1, 0), (UUID_B, UUID_A))),
        (["all"], MIG_A, 0, cuda((0,), (MIG_A,))),  # several MIG instances in one job: see test_mig.py
        # 'all' is case-insensitive and keeps CUDA_VISIBLE_DEVICES order
        (["ALL"], "3,1", 0, cuda((0, 1), ("3", "1"))),
        (["All"], None, 1, cuda((0,), ("0",))),
        # leading zeros are plain decimal
        (["01"], None, 2, cuda((1,), ("1",))),
        # CUDA_VISIBLE_DEVICES narrower than the machine: it decides what is visible
        (["0"], "7", 8, cuda((0,), ("7",))),
    ],
)
def test_explicit_gpus(
    gpu_ids: list[str], cuda_visible_devices: str | None, device_count: int, expected: DeviceSelection
) -> None:
    selection = resolve(gpu_ids=gpu_ids, cuda_visible_devices=cuda_visible_devices, device_count=device_count)
    assert selection == expected
    assert selection.notice is None


@pytest.mark.parametrize("word", ["None", "none", "NONE", "cpu", "CPU"])
@pytest.mark.parametrize(("cuda_visible_devices", "device_count"), [(None, 0), (None, 4), ("", 4), ("2,3", 4)])
def test_gpu_ids_none_means_cpu(word: str, cuda_visible_devices: str | None, device_count: int) -> None:
    selection = resolve(gpu_ids=[word], cuda_visible_devices=cuda_visible_devices, device_count=device_count)
    assert selection == cpu(1)
    assert selection.notice is None


@pytest.mark.parametrize(
    ("cpu_workers", "cpu_count", "world_size"),
    [
        ("1", 8, 1),
        ("2", 8, 2),
        ("4", 8, 4),
        ("16", 8, 16),
        ("04", 8, 4),
        ("auto", 8, 8),
        ("AUTO", 3, 3),
        ("auto", 1, 1),
    ],
)
@pytest.mark.parametrize("gpu_ids", [["None"], None])
def test_cpu_workers(gpu_ids: list[str] | None, cpu_workers: str, cpu_count: int, world_size: int) -> None:
    # With GPUs visible: --cpu-workers alone still means CPU, never GPU 0.
    selection = resolve(
        gpu_ids=gpu_ids,
        cpu_workers=cpu_workers,
        cuda_visible_devices=None,
        device_count=2,
        cpu_count=cpu_count,
    )
    assert selection == cpu(world_size)
    assert selection.notice is None


def test_cpu_workers_auto_with_unknown_cpu_count_gives_one_worker() -> None:
    assert resolve(gpu_ids=["None"], cpu_workers="auto", cpu_count=0) == cpu(1)


# --- no --gpu-ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda_visible_devices", "device_count", "physical"),
    [(None, 1, "0"), (None, 4, "0"), ("2,3", 4, "2"), ("2,3", 0, "2"), (f"{UUID_B},{UUID_A}", 2, UUID_B)],
)
def test_default_is_first_visible_gpu(cuda_visible_devices: str | None, device_count: int, physical: str) -> None:
    selection = resolve(cuda_visible_devices=cuda_visible_devices, device_count=device_count)
    assert selection == cuda((0,), (physical,))
    assert selection.notice is None


@pytest.mark.parametrize("device_count", [0, 4])
def test_default_with_empty_cuda_visible_devices_is_cpu_without_notice(device_count: int) -> None:
    selection = resolve(cuda_visible_devices="", device_count=device_count)
    assert selection == cpu(1)
    assert selection.notice is None


@pytest.mark.parametrize(
    ("cuda_visible_devices", "facts"),
    [
        (None, ["CUDA_VISIBLE_DEVICES is unset", "torch sees 0 CUDA devices"]),
        ("-1", ["CUDA_VISIBLE_DEVICES='-1'"]),
        (",0", ["CUDA_VISIBLE_DEVICES=',0'"]),
    ],
)
def test_default_without_gpu_is_cpu_with_notice(cuda_visible_devices: str | None, facts: list[str]) -> None:
    selection = resolve(cuda_visible_devices=cuda_visible_devices, device_count=0)
    assert (selection.kind, selection.visible_indices, selection.physical_gpus, selection.world_size) == (
        "cpu", (), (), 1
    )  # fmt: skip
    assert selection.notice is not None
    assert "\n" not in selection.notice
    assert selection.notice.startswith("No GPU visible (")
    assert "training on the CPU" in selection.notice
    assert "--cpu-workers N" in selection.notice
    for fact in facts:
        assert fact in selection.notice


def test_notice_only_when_no_flag_given() -> None:
    assert resolve(gpu_ids=["None"], device_count=0).notice is None
    assert resolve(cpu_workers="2", device_count=0).notice is None


# --- backend --------------------------------------------------------------------------------------------


def test_selection_is_frozen() -> None:
    selection = cpu(1)
    with pytest.raises(AttributeError):
        selection.world_size = 2  # type: ignore[misc]


# --- errors ------------------------------------------------------------------------------------------------


def test_no_gpu_ids_is_the_default_choice() -> None:
    assert resolve(gpu_ids=[], device_count=2) == cuda((0,), ("0",))


@pytest.mark.parametrize(
    ("gpu_ids", "cpu_workers", "expected"),
    [
        ((), None, DeviceRequest()),
        (None, None, DeviceRequest("cpu")),
        (None, 4, DeviceRequest("cpu", 4)),
        (None, "auto", DeviceRequest("cpu", "auto")),
        ("all", None, DeviceRequest("all")),
        (1, None, DeviceRequest((1,))),
        ([0, 1], None, DeviceRequest((0, 1))),
        (["0", 2], None, DeviceRequest((0, 2))),
    ],
)
def test_python_values_make_the_same_request_as_the_flags(
    gpu_ids: object, cpu_workers: object, expected: DeviceRequest
) -> None:
    assert DeviceRequest.from_values(gpu_ids, cpu_workers) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("gpu_ids", "message"), [(-1, "GPU id -1 is negative"), (True, "True"), (1.5, "1.5")])
def test_bad_python_gpu_ids(gpu_ids: object, message: str) -> None:
    with pytest.raises(DeviceSelectionError, match=message):
        DeviceRequest.from_values(gpu_ids, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["-1", "-3"])
def test_negative_gpu_id(token: str) -> None:
    message = resolve_error(gpu_ids=["0", token], device_count=4)
    assert message == f"GPU id {token} is negative; GPU ids are indices 0..N-1 into the visible GPUs"


@pytest.mark.parametrize("token", ["abc", "1.5", "cuda:0", "+1", " 1", "1 ", "", "0x1", "1e2", "٣", "a\nb"])
def test_junk_gpu_id(token: str) -> None:
    message = resolve_error(gpu_ids=["0", token], device_count=4)
    assert message == f"{token!r} is not a GPU id; use integers like --gpu-ids 0 1, or 'all', or 'None' for CPU"


@pytest.mark.parametrize(("gpu_ids", "gpu_id"), [(["1", "1"], 1), (["0", "1", "0"], 0), (["1", "01"], 1)])
def test_duplicate_gpu_id(gpu_ids: list[str], gpu_id: int) -> None:
    message = resolve_error(gpu_ids=gpu_ids, device_count=4)
    assert message.startswith(f"GPU id {gpu_id} is given twice")


@pytest.mark.parametrize(
    ("gpu_ids", "cuda_visible_devices", "device_count", "expected"),
    [
        (
            ["2"],
            "2,3",
            0,
            "GPU id 2 is out of range: 2 GPUs are visible (CUDA_VISIBLE_DEVICES='2,3'), valid ids are 0..1",
        ),
        (
            ["0", "1", "2"],
            None,
            2,
            (
                "GPU id 2 is out of range: 2 GPUs are visible "
                "(CUDA_VISIBLE_DEVICES is unset; torch sees 2 CUDA devices), valid ids are 0..1"
            ),
        ),
        (
            ["1"],
            None,
            1,
            (
                "GPU id 1 is out of range: 1 GPU is visible "
                "(CUDA_VISIBLE_DEVICES is unset; torch sees 1 CUDA device), the only valid id is 0"
            ),
        ),
        (
            ["0", "1"],
            "0,,1",
            4,
            "GPU id 1 is out of range: 1 GPU is visible (CUDA_VISIBLE_DEVICES='0,,1'), the only valid id is 0",
        ),
        (
            ["5", "9"],
            "1,3,6",
            8,
            "GPU id 5 is out of range: 3 GPUs are visible (CUDA_VISIBLE_DEVICES='1,3,6'), valid ids are 0..2",
        ),
    ],
)
def test_gpu_id_out_of_range(
    gpu_ids: list[str], cuda_visible_devices: str | None, device_count: int, expected: str
) -> None:
    message = resolve_error(gpu_ids=gpu_ids, cuda_visible_devices=cuda_visible_devices, device_count=device_count)
    assert message == expected


@pytest.mark.parametrize(
    ("gpu_ids", "cuda_visible_devices", "device_count", "expected"),
    [
        (
            ["0"],
            "",
            4,
            "--gpu-ids 0 needs a GPU, but none is visible (CUDA_VISIBLE_DEVICES=''); use --gpu-ids None for the CPU",
        ),
        (
            ["0", "1"],
            None,
            0,
            (
                "--gpu-ids 0 1 needs a GPU, but none is visible "
                "(CUDA_VISIBLE_DEVICES is unset; torch sees 0 CUDA devices); use --gpu-ids None for the CPU"
            ),
        ),
        (
            ["all"],
            "",
            4,
            "--gpu-ids all needs a GPU, but none is visible (CUDA_VISIBLE_DEVICES=''); use --gpu-ids None for the CPU",
        ),
        (
            ["ALL"],
            None,
            0,
            (
                "--gpu-ids all needs a GPU, but none is visible "
                "(CUDA_VISIBLE_DEVICES is unset; torch sees 0 CUDA devices); use --gpu-ids None for the CPU"
            ),
        ),
        (
            ["0"],
            "-1",
            4,
            "--gpu-ids 0 needs a GPU, but none is visible (CUDA_VISIBLE_DEVICES='-1'); use --gpu-ids None for the CPU",
        ),
    ],
)
def test_gpus_requested_but_none_visible(
    gpu_ids: list[str], cuda_visible_devices: str | None, device_count: int, expected: str
) -> None:
    message = resolve_error(gpu_ids=gpu_ids, cuda_visible_devices=cuda_visible_devices, device_count=device_count)
    assert message == expected


@pytest.mark.parametrize(
    ("gpu_ids", "word"),
    [
        (["all", "0"], "all"),
        (["0", "ALL"], "ALL"),
        (["all", "all"], "all"),
        (["None", "0"], "None"),
        (["1", "cpu"], "cpu"),
        (["all", "None"], "all"),
    ],
)
def test_keyword_mixed_with_other_values(gpu_ids: list[str], word: str) -> None:
    message = resolve_error(gpu_ids=gpu_ids, device_count=4)
    assert message == f"--gpu-ids {word} cannot be combined with other values; give --gpu-ids {word} on its own"


@pytest.mark.parametrize(("value", "shown"), [("0", "0"), ("-2", "-2"), ("00", "0")])
def test_cpu_workers_below_one(value: str, shown: str) -> None:
    message = resolve_error(gpu_ids=["None"], cpu_workers=value)
    assert message == f"--cpu-workers must be at least 1, got {shown}"


@pytest.mark.parametrize("value", ["x", "", "2.5", "+2", " 2", "many", "a\nb"])
def test_cpu_workers_junk(value: str) -> None:
    message = resolve_error(cpu_workers=value)
    assert message == f"--cpu-workers takes a positive integer or 'auto', got {value!r}"


@pytest.mark.parametrize(
    ("gpu_ids", "cpu_workers", "expected"),
    [
        (
            ["0", "1"],
            "4",
            (
                "--cpu-workers only applies to CPU training; it cannot be combined with --gpu-ids 0 1. "
                "Use --gpu-ids None --cpu-workers 4"
            ),
        ),
        (
            ["all"],
            "auto",
            (
                "--cpu-workers only applies to CPU training; it cannot be combined with --gpu-ids all. "
                "Use --gpu-ids None --cpu-workers auto"
            ),
        ),
    ],
)
def test_cpu_workers_with_gpu_ids(gpu_ids: list[str], cpu_workers: str, expected: str) -> None:
    message = resolve_error(gpu_ids=gpu_ids, cpu_workers=cpu_workers, device_count=2)
    assert message == expected


def test_errors_are_value_errors() -> None:
    assert issubclass(DeviceSelectionError, ValueError)


def test_gpus_named_by_cuda_visible_devices_must_exist_before_training() -> None:
    check_gpus_exist(Machine("0,1", 2, 8))
    check_gpus_exist(Machine(None, 0, 8))
    with pytest.raises(
        DeviceSelectionError, match=r"CUDA_VISIBLE_DEVICES='2,3' names 2 GPU\(s\), but torch sees only 0"
    ):
        check_gpus_exist(Machine("2,3", 0, 8))


# --- more CPU workers than cores -------------------------------------------------------------------------


def test_more_cpu_workers_than_usable_cores_are_refused_unless_oversubscribed() -> None:
    machine = Machine(None, 0, 2)
    with pytest.raises(DeviceSelectionError) as raised:
        check_cpu_workers(cpu(3), machine, oversubscribe=False)
    assert str(raised.value) == (
        "--cpu-workers 3 is more than the 2 core(s) this process may use; use --cpu-workers auto, or add "
        "--oversubscribe to start them anyway"
    )
    check_cpu_workers(cpu(3), machine, oversubscribe=True)
    check_cpu_workers(cpu(2), machine, oversubscribe=False)
    gpus = resolve(gpu_ids=["0", "1", "2"], device_count=3)  # one rank per GPU: cores do not limit them
    check_cpu_workers(gpus, machine, oversubscribe=False)
