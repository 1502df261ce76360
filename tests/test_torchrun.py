"""Rank mode for real: two ``torchrun`` processes on this machine act as node 0 and node 1 (``--nnodes 2
--nproc-per-node 1``, c10d rendezvous on 127.0.0.1), each starting ``train`` as one rank on the CPU over gloo."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import HELPERS, REPO, TRAIN, every_rank_agreed, subprocess_env

pytestmark = pytest.mark.slow

TORCHRUN = Path(sys.executable).with_name("torchrun")
DEADLINE_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_nodes(target: list[str], log_dir: Path, **env: str) -> list[subprocess.Popen]:
    """torchrun on node 0 (hosting the rendezvous store) and node 1, everything on loopback."""
    port = free_port()
    nodes = []
    for node in (0, 1):
        command = [
            str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--max-restarts", "0",
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "mjdist-test",
            "--rdzv-conf", f"is_host={int(node == 0)}", "--local-addr", "127.0.0.1", *target,
        ]  # fmt: skip
        nodes.append(subprocess.Popen(
            command, stdout=(log_dir / f"node{node}.out").open("w"), stderr=(log_dir / f"node{node}.err").open("w"),
            env=subprocess_env(CUDA_VISIBLE_DEVICES="", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", **env),
            cwd=REPO,  # the two "nodes" share this machine's cores: one torch thread each, as --cpu-workers gives
        ))  # fmt: skip
    return nodes


def test_two_torchrun_nodes_train_one_run_with_identical_parameters(log_root: Path, tmp_path: Path) -> None:
    train = [str(TRAIN), "cartpole-balance", "--env.num-envs", "64", "--agent.max-iterations", "3",
             "--agent.num-steps-per-env", "8", "--log-root", str(log_root), "--run-name", "torchrun"]  # fmt: skip
    nodes = start_nodes(train, tmp_path)
    codes = [node.wait(timeout=300) for node in nodes]
    stderr = [(tmp_path / f"node{node}.err").read_text() for node in (0, 1)]
    assert codes == [0, 0], "\n".join(stderr)
    assert "All 2 ranks ended with identical parameters" in stderr[0]
    assert "env-steps/s (2 ranks x 64 envs = 128)" in stderr[0]
    assert "iter" not in stderr[1], "only rank 0 reports progress"
    (run_dir,) = (log_root / "cartpole_balance").iterdir()  # rank 0's name, taken by both ranks
    assert every_rank_agreed(run_dir, 2)["hosts"] == [socket.gethostname()]
    assert sorted(path.name for path in run_dir.glob("model_*.pt")) == ["model_0.pt", "model_2.pt"]
    launch = yaml.safe_load((run_dir / "params" / "launch.yaml").read_text())
    assert launch["launcher"] == "environment" and launch["backend"] == "gloo"
    assert [(rank["rank"], rank["seed"]) for rank in launch["ranks"]] == [(0, 42), (1, 43)]


def test_a_failing_rank_ends_both_nodes_with_its_traceback(log_root: Path, tmp_path: Path) -> None:
    stamp = tmp_path / "fault-time"
    nodes = start_nodes([str(HELPERS / "launch_task.py"), str(log_root), "1", "200"], tmp_path,
                        MJDIST_TEST_FAULT="raise:1:40", MJDIST_TEST_FAULT_STAMP=str(stamp))  # fmt: skip
    end = time.time() + 240
    while not stamp.exists() and time.time() < end and all(node.poll() is None for node in nodes):
        time.sleep(0.1)
    assert stamp.exists(), (tmp_path / "node1.err").read_text()
    codes = [node.wait(timeout=120) for node in nodes]
    ended = time.time()
    stderr = [(tmp_path / f"node{node}.err").read_text() for node in (0, 1)]
    assert codes[0] != 0 and codes[1] != 0, "\n".join(stderr)
    assert ended - float(stamp.read_text()) < DEADLINE_S
    assert "faulty_task.InjectedFault: injected fault at step 40" in stderr[1]  # the traceback, on node 1
    assert "Traceback (most recent call last)" in stderr[1]
    assert "rank 0 stopped: another rank went away" in stderr[0]
    results = [json.loads(line) for line in (tmp_path / "node0.out").read_text().splitlines() if line.strip()]
    assert results == []
