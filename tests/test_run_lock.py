"""One job per run directory: a second job on a run that another job holds is refused in one line naming the holder,
writes nothing, and the lock dies with its holder (no stale lock after a crash)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, TRAIN, held_run, run_train, subprocess_env

from mjdist.atomic_files import replace_atomically
from mjdist.errors import UsageError
from mjdist.run_lock import LOCK_FILE, RunInUseError, hold_run_dir


def test_a_held_run_is_refused_naming_its_holder_and_freed_when_the_holder_dies(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "exp" / "run"
    process = held_run(run_dir)
    try:
        written = (run_dir / LOCK_FILE).read_text()
        assert written == f"{socket.gethostname()} {process.pid}\n"
        expected = rf"^run directory {run_dir} is in use by another job \(pid {process.pid} on {socket.gethostname()}\)"
        with pytest.raises(RunInUseError, match=expected), hold_run_dir(run_dir):
            pytest.fail("held twice")
        assert sorted(path.name for path in run_dir.iterdir()) == [LOCK_FILE]
        assert (run_dir / LOCK_FILE).read_text() == written
    finally:
        process.send_signal(signal.SIGKILL)  # a crash: nothing removes the lock file
        process.wait()
    with hold_run_dir(run_dir):  # the kernel dropped the dead holder's lock
        assert (run_dir / LOCK_FILE).read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    assert list(run_dir.iterdir()) == []


def test_one_process_cannot_hold_a_run_twice_and_late_bad_input_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "exp" / "run"
    with hold_run_dir(run_dir), pytest.raises(RunInUseError, match=r"this process\)"), hold_run_dir(run_dir):
        pytest.fail("held twice")
    assert list(run_dir.iterdir()) == []  # the run stays, without its lock file
    refused = tmp_path / "runs" / "exp" / "refused-run"
    with pytest.raises(UsageError, match="found late"), hold_run_dir(refused):
        raise UsageError("found late")
    assert sorted(path.name for path in run_dir.parent.iterdir()) == ["run"]  # what that hold made is gone


def test_two_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    names: list[str] = []
    for _ in range(2):
        replace_atomically(tmp_path / "summary.json", lambda temp: names.append(temp.name) or temp.touch())
    assert len(set(names)) == 2 and all(f".summary.json.{os.getpid()}-" in name for name in names)


@pytest.mark.slow
def test_two_concurrent_requeued_jobs_on_one_run_leave_one_writer(tmp_path: Path) -> None:
    """The requeue of a job that is still alive (the same --run-name shared --resume auto command, started while the
    first one trains) is refused; the first goes on alone, and its crash leaves the run free."""
    log_root = tmp_path / "runs"
    command = ["cartpole-balance", "--gpu-ids", "None", "--log-root", str(log_root), "--run-name", "shared",
               "--resume", "auto", "--env.num-envs", "16", "--agent.num-steps-per-env", "8",
               "--agent.save-interval", "1"]  # fmt: skip
    stderr_path = tmp_path / "first.err"
    first = subprocess.Popen([str(TRAIN), *command, "--agent.max-iterations", "500"], stdout=subprocess.DEVNULL,
                             stderr=stderr_path.open("w"), env=subprocess_env(), cwd=REPO)  # fmt: skip
    try:
        deadline = time.time() + 180
        while not list(log_root.glob("cartpole_balance/*/model_0.pt")) and time.time() < deadline:
            assert first.poll() is None, stderr_path.read_text()
            time.sleep(0.2)
        (run_dir,) = (log_root / "cartpole_balance").iterdir()
        second = run_train(*command, "--agent.max-iterations", "500")
        assert second.returncode == 2, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        line = second.stderr.strip()
        assert line == (
            f"train: error: run directory {run_dir} is in use by another job (pid {first.pid} on "
            f"{socket.gethostname()}); wait for that job to end or stop it, or give another --run-name"
        )
        assert first.poll() is None, "the first job goes on"
        assert [path.name for path in (log_root / "cartpole_balance").iterdir()] == [run_dir.name]
        assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
        assert (run_dir / LOCK_FILE).read_text() == f"{socket.gethostname()} {first.pid}\n"
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the lock must not outlive it
        first.wait()
    with hold_run_dir(run_dir):  # the crashed job left no stale lock: a requeue now continues the run
        pass
