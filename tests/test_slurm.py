"""mjdist inside a real SLURM: the fixture starts a single-node SLURM (munged, slurmctld, slurmd from Debian's
slurm-wlm and munge, all state in a temporary directory, ports above 16000). ``srun`` runs ``train --hosts auto``
in a job there (torchrunx finds the allocation's host through ``scontrol show hostnames``); ``sbatch --test-only``
checks both sbatch files of examples/slurm/ as they are written; and examples/slurm/srun-torchrun.sbatch runs on
the one node, is told its time limit is near, saves, requeues itself and continues the run (this SLURM lets a
requeued job start again after 10 s instead of 2 minutes).

So that ``--test-only`` can place the examples' two-node, 4-GPU, 16- and 32-CPU requests, the node is declared
with 64 CPUs and 4 GPUs (device files /dev/null and friends: the GPUs only have to be countable), and a second
node that never starts is declared in a partition of its own (``two-nodes``); jobs that run use the default
partition, which holds only the real node.
Without those programs, or without root, the tests skip (and fail under MJDIST_CI=1, set by .ci/run)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TRAIN, cannot_set_up, every_rank_agreed, subprocess_env

pytestmark = pytest.mark.slow

DAEMONS = ("munged", "slurmctld", "slurmd")
START_TIMEOUT_S = 60.0
DECLARED_CPUS = 64
"""CPUs the node is declared with (``SlurmdParameters=config_overrides`` lets slurmd run on fewer)."""
FAKE_GPUS = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")
"""Device files Slurm counts as the node's GPUs: jobs may ask for GPUs, nothing opens them."""
SBATCH_FILES = ("srun-torchrun.sbatch", "hosts-auto.sbatch")
CRED_EXPIRE_S = 10
"""Job credentials' lifetime, which is also how long a requeued job waits before it may start again (120 s by
default); the scheduler looks every second (sched_interval=1, 60 s by default)."""


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "a private SLURM needs root (slurmd)"
    missing = [name for name in (*DAEMONS, "sbatch", "sinfo", "scontrol") if shutil.which(name) is None]
    if missing:
        return f"no {', '.join(missing)} (Debian packages slurm-wlm and munge)"
    return None


def _write_config(work: Path, node: str) -> Path:
    settings = {
        "ClusterName": "mjdist-test", "SlurmctldHost": node, "SlurmUser": "root", "SlurmdUser": "root",
        "AuthType": "auth/munge", "AuthInfo": f"socket={work / 'munge.socket'},cred_expire={CRED_EXPIRE_S}",
        "StateSaveLocation": work / "state", "SlurmdSpoolDir": work / "spool",
        "SlurmctldPidFile": work / "slurmctld.pid", "SlurmdPidFile": work / "slurmd.pid",
        "SlurmctldLogFile": work / "slurmctld.log", "SlurmdLogFile": work / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none", "JobAcctGatherType": "jobacct_gather/none",
        "SchedulerType": "sched/builtin", "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
        "ReturnToService": 2, "MpiDefault": "none", "SlurmctldPort": 16817, "SlurmdPort": 16818,
        "GresTypes": "gpu", "SlurmdParameters": "config_overrides", "SlurmdTimeout": 0,
        "SchedulerParameters": "sched_interval=1",
    }  # fmt: skip
    lines = [f"{key}={value}" for key, value in settings.items()]
    gpus = f"CPUs={DECLARED_CPUS} Gres=gpu:{len(FAKE_GPUS)}"
    lines += [
        f"NodeName={node} {gpus} State=UNKNOWN",
        f"NodeName=never-started NodeAddr=127.0.0.254 {gpus} State=UNKNOWN",  # SlurmdTimeout=0: never marked down
        f"PartitionName=test Nodes={node} Default=YES State=UP",
        f"PartitionName=two-nodes Nodes={node},never-started State=UP",
    ]
    config = work / "slurm.conf"
    config.write_text("\n".join(lines) + "\n")
    (work / "gres.conf").write_text("".join(f"NodeName={node} Name=gpu File={device}\n" for device in FAKE_GPUS))
    return config


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    reason = _skip_reason()
    if reason:
        print(f"SKIP: {reason}")
        cannot_set_up(reason)
    work = tmp_path_factory.mktemp("slurm")
    for directory in ("state", "spool"):
        (work / directory).mkdir()
    key = work / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    env = {**os.environ, "SLURM_CONF": str(_write_config(work, socket.gethostname()))}
    munge = [f"--key-file={key}", f"--socket={work / 'munge.socket'}", f"--pid-file={work / 'munged.pid'}",
             f"--log-file={work / 'munged.log'}", f"--seed-file={work / 'munge.seed'}", "--force"]  # fmt: skip
    try:
        subprocess.run(["munged", *munge], check=True, env=env, capture_output=True)
        subprocess.run(["slurmctld", "-c"], check=True, env=env, capture_output=True)
        subprocess.run(["slurmd"], check=True, env=env, capture_output=True)
        _wait_until_idle(env, work)
        yield env
    finally:
        _end_every_job(env)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            path = work / pid_file
            if path.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(path.read_text().split()[0]), signal.SIGTERM)


def _end_every_job(env: dict[str, str]) -> None:
    """Cancel what is left and wait until SLURM has ended every job's processes: slurmstepd outlives daemons
    stopped under it, with the job's processes."""
    subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
    end = time.time() + START_TIMEOUT_S
    while time.time() < end:
        queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True)
        if queue.returncode != 0 or not queue.stdout.strip():
            return
        time.sleep(0.5)


def _wait_until_idle(env: dict[str, str], work: Path) -> None:
    end = time.time() + START_TIMEOUT_S
    while time.time() < end:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.split()
        if states and set(states) == {"idle"}:
            return
        time.sleep(0.5)
    logs = " | ".join(
        (work / name).read_text()[-500:] for name in ("slurmctld.log", "slurmd.log") if (work / name).exists()
    )
    cannot_set_up(f"single-node SLURM did not come up within {START_TIMEOUT_S:.0f} s: {logs}")


def test_hosts_auto_trains_on_the_slurm_allocation(slurm: dict[str, str], log_root: Path) -> None:
    started = time.time()
    job = subprocess.run(
        ["srun", "--nodes", "1", "--ntasks", "1", f"--chdir={REPO}", str(TRAIN), "cartpole-balance", "--hosts", "auto",
         "--gpu-ids", "None", "--cpu-workers", "2", "--env.num-envs", "64", "--agent.max-iterations", "2",
         "--agent.num-steps-per-env", "8", "--log-root", str(log_root)],
        env={**subprocess_env(CUDA_VISIBLE_DEVICES=""), "SLURM_CONF": slurm["SLURM_CONF"]},
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    print(f"SLURM job: {time.time() - started:.1f} s")
    assert job.returncode == 0, job.stderr
    assert "All 2 ranks ended with identical parameters" in job.stderr
    (run_dir,) = (log_root / "cartpole_balance").iterdir()
    launch = yaml.safe_load((run_dir / "params" / "launch.yaml").read_text())
    host = socket.gethostname()
    assert every_rank_agreed(run_dir, 2)["hosts"] == [host]
    assert launch["hosts"] == [host]  # from scontrol show hostnames, not "localhost"
    assert [(rank["host"], rank["rank"]) for rank in launch["ranks"]] == [(host, 0), (host, 1)]


def _slurm_env(slurm: dict[str, str], **extra: str) -> dict[str, str]:
    return {**subprocess_env(**extra), "SLURM_CONF": slurm["SLURM_CONF"]}


@pytest.mark.parametrize("name", SBATCH_FILES)
def test_sbatch_accepts_the_example_as_written(slurm: dict[str, str], name: str) -> None:
    """Every #SBATCH directive is one this SLURM knows, and together they ask for what the file says: its nodes,
    with its CPUs per task on each (every CPU of the node where it asks for whole nodes)."""
    path = REPO / "examples" / "slurm" / name
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", path.read_text(), re.MULTILINE))
    job = subprocess.run(
        ["sbatch", "--test-only", "--partition=two-nodes", str(path)],
        env=_slurm_env(slurm), cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    placed = re.search(r"using (\d+) processors on nodes (\S+) in partition two-nodes", job.stderr)
    assert placed, job.stderr
    nodes = int(directives["nodes"])
    cpus_per_node = DECLARED_CPUS if "exclusive" in directives else int(directives["cpus-per-task"])
    assert int(placed.group(1)) == nodes * cpus_per_node
    assert len(placed.group(2).split(",")) == nodes


def _wait_for(path: Path, pattern: str, after: int = 0, timeout: float = 240) -> re.Match[str]:
    """The first match of ``pattern`` past offset ``after`` in ``path`` (a job's output, still being written)."""
    end = time.time() + timeout
    while time.time() < end:
        found = re.compile(pattern).search(path.read_text() if path.exists() else "", after)
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in the job's output within {timeout:.0f} s:\n{path.read_text()[-3000:]}")


def _job_field(slurm: dict[str, str], job: str, field: str) -> str:
    shown = subprocess.run(["scontrol", "show", "job", job], env=_slurm_env(slurm), capture_output=True, text=True)
    found = re.search(rf"\b{field}=(\S+)", shown.stdout)
    assert found, shown.stdout + shown.stderr
    return found.group(1)


def test_the_srun_torchrun_example_saves_requeues_and_continues_its_run(
    slurm: dict[str, str], log_root: Path, tmp_path: Path
) -> None:
    """examples/slurm/srun-torchrun.sbatch as it is, on one node with one CPU rank (--gpus-per-node=0 and
    NPROC_PER_NODE=1 on the command line override its GPU request): told that its time limit is near (the USR1
    that its --signal=B:USR1@180 asks for), the rank saves its last completed iteration, the job requeues itself,
    and the requeued job starts again by itself and continues the same run directory from that checkpoint."""
    output = tmp_path / "job.out"
    with socket.socket() as probe:
        probe.bind(("", 0))
        port = probe.getsockname()[1]
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0", f"--cpus-per-task={min(os.cpu_count() or 1, 2)}",
         f"--output={output}", str(REPO / "examples" / "slurm" / "srun-torchrun.sbatch"),
         "cartpole-balance", "--env.num-envs", "64", "--agent.num-steps-per-env", "8",
         "--agent.max-iterations", "1000", "--agent.save-interval", "1000", "--log-root", str(log_root)],
        env=_slurm_env(slurm, CUDA_VISIBLE_DEVICES="", NPROC_PER_NODE="1", RDZV_PORT=str(port)),
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        started = _wait_for(output, r"run directory: (\S+)")
        _wait_for(output, r"iter\s+1/1000")  # training, so its stop handler is in place
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=_slurm_env(slurm), check=True)
        saved = _wait_for(output, r"Interrupted: saved (\S+)/model_(\d+)\.pt")
        assert saved.group(1) == started.group(1)
        stopped_at = int(saved.group(2))
        assert "time limit near; stopping train" in output.read_text()
        end = time.time() + 60
        while _job_field(slurm, job, "Restarts") != "1" and time.time() < end:
            time.sleep(0.5)
        assert _job_field(slurm, job, "Restarts") == "1"
        restarted = _wait_for(output, r"run directory: (\S+)", after=saved.end())
        assert restarted.group(1) == started.group(1)
        continued = _wait_for(output, r"iter\s+(\d+)/1000", after=restarted.end())
        assert int(continued.group(1)) > stopped_at, "the requeued job started the run again from its beginning"
    finally:
        subprocess.run(["scancel", "--full", "--signal=KILL", job], env=_slurm_env(slurm))  # no save to wait for
