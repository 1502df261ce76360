"""Rank mode for real: two ``torchrun`` processes on this machine act as node 0 and node 1 (``--nnodes 2
--nproc-per-node 1``, c10d rendezvous on 127.0.0.1, or a static one where a test places rank 0), each starting
``train`` as one rank on the CPU over gloo. Where each node has its own ``--log-root``, they share no storage, as
OSMO or Kubernetes nodes without a shared volume."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import HELPERS, REPO, TRAIN, every_rank_agreed, read_strict_json, subprocess_env

pytestmark = pytest.mark.slow

TORCHRUN = Path(sys.executable).with_name("torchrun")
DEADLINE_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_nodes(
    target: list[str] | tuple[list[str], list[str]],
    log_dir: Path,
    node_ranks: tuple[int, int] | None = None,
    max_restarts: int = 0,
    name: str = "node",
    **env: str,
) -> list[subprocess.Popen]:
    """torchrun on node 0 and node 1 (a target for both, or one each), everything on loopback: a c10d rendezvous
    hosted by node 0, or with ``node_ranks`` a static one that gives node i the global rank ``node_ranks[i]``."""
    port = free_port()
    nodes = []
    for node in (0, 1):
        if node_ranks is None:
            rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "mjdist-test",
                          "--rdzv-conf", f"is_host={int(node == 0)}", "--local-addr", "127.0.0.1"]  # fmt: skip
        else:
            rendezvous = [
                "--node-rank",
                str(node_ranks[node]),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
            ]
        command = [str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--max-restarts", str(max_restarts),
                   *rendezvous, *(target if isinstance(target, list) else target[node])]  # fmt: skip
        nodes.append(subprocess.Popen(
            command, stdout=(log_dir / f"{name}{node}.out").open("w"), stderr=(log_dir / f"{name}{node}.err").open("w"),
            env=subprocess_env(CUDA_VISIBLE_DEVICES="", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", **env),
            cwd=REPO,  # the two "nodes" share this machine's cores: one torch thread each, as --cpu-workers gives
        ))  # fmt: skip
    return nodes


def finish(nodes: list[subprocess.Popen], log_dir: Path, name: str = "node") -> list[str]:
    """Both nodes' stderr, once both ended with exit code 0 (torchrun and its ranks are stopped if they hang)."""
    try:
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.terminate()  # torchrun stops its ranks
                node.wait(timeout=60)
    stderr = [(log_dir / f"{name}{node}.err").read_text() for node in (0, 1)]
    assert codes == [0, 0], "\n".join(stderr)
    return stderr


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


def own_disks(tmp_path: Path) -> tuple[Path, Path]:
    """Each node's --log-root: nothing is shared between them."""
    return tmp_path / "node0-disk", tmp_path / "node1-disk"


def checkpoint_names(run_dir: Path) -> list[str]:
    return sorted(path.name for path in run_dir.glob("model_*.pt"))


def test_a_requeue_continues_from_the_newest_checkpoint_whichever_node_rank_0_lands_on(tmp_path: Path) -> None:
    disks = own_disks(tmp_path)

    def train(disk: Path, iterations: int) -> list[str]:
        return [str(TRAIN), "cartpole-balance", "--env.num-envs", "16", "--agent.num-steps-per-env", "8",
                "--agent.max-iterations", str(iterations), "--log-root", str(disk), "--run-name", "requeued",
                "--resume", "auto", "--timeout", "60"]  # fmt: skip

    stderr = finish(start_nodes((train(disks[0], 3), train(disks[1], 3)), tmp_path, (1, 0), name="first"), tmp_path,
                    "first")  # fmt: skip
    assert "All 2 ranks ended with identical parameters" in stderr[1]
    assert "env-steps/s (2 ranks x 16 envs = 32)" in stderr[1]
    assert "iter" not in stderr[0], "only rank 0 reports progress"
    (first,) = (disks[1] / "cartpole_balance").iterdir()  # rank 0 ran on node 1: only its disk has the run
    assert not disks[0].exists() and checkpoint_names(first) == ["model_0.pt", "model_2.pt"]
    assert every_rank_agreed(first, 2)["hosts"] == [socket.gethostname()]
    launch = yaml.safe_load((first / "params" / "launch.yaml").read_text())
    assert launch["launcher"] == "environment" and launch["backend"] == "gloo"
    assert [(rank["rank"], rank["seed"]) for rank in launch["ranks"]] == [(0, 42), (1, 43)]

    stderr = finish(start_nodes((train(disks[0], 5), train(disks[1], 5)), tmp_path, (0, 1)), tmp_path)
    (second,) = (disks[0] / "cartpole_balance").iterdir()  # rank 0 now runs on node 0, which had nothing
    holder = f"rank 1 on {socket.gethostname()}, iteration 2"
    assert f"Every rank continues from {first / 'model_2.pt'} ({holder})" in stderr[0]
    assert "iter 4/5" in stderr[0] and "iter 1/5" not in stderr[0]
    summary = every_rank_agreed(second, 2)
    assert summary["continued_from"] == f"{socket.gethostname()}:{first}"
    assert (summary["iterations"], [Path(path).name for path in summary["checkpoints"]]) == (2, ["model_4.pt"])
    launch = yaml.safe_load((second / "params" / "launch.yaml").read_text())
    assert (launch["resume_rank"], launch["resume_iteration"], launch["end_iteration"]) == (1, 2, 5)
    assert checkpoint_names(first) == ["model_0.pt", "model_2.pt"]  # node 1's disk: left as it was


def test_torchrun_restarts_a_job_whose_rank_was_killed_from_the_newest_checkpoint(tmp_path: Path) -> None:
    """torchrun's agents share one store across restarts by default, and a restarted rank may then read its peer's
    address from the attempt before and wait for it forever in the process group's set-up (seen here once in two
    runs; pytorch/pytorch#135712): TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 gives every attempt a new store."""
    disks, once = own_disks(tmp_path), tmp_path / "killed"
    target = [[str(HELPERS / "launch_task.py"), str(disk), "1", "6", "--num-envs", "16", "--num-steps-per-env", "8",
               "--save-interval", "2", "--run-name", "restarted", "--resume", "auto", "--timeout", "60"]
              for disk in disks]  # fmt: skip
    nodes = start_nodes((target[0], target[1]), tmp_path, max_restarts=1,  # rank 1 dies in iteration 5 (index 4)
                        MJDIST_TEST_FAULT="kill:1:36", MJDIST_TEST_FAULT_ONCE=str(once),
                        TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")  # fmt: skip
    stderr = finish(nodes, tmp_path)
    assert once.exists(), "\n".join(stderr)
    summaries = [read_strict_json(path) for disk in disks for path in disk.glob("*/*/summary.json")]
    (final,) = [summary for summary in summaries if summary["status"] == "finished"]
    every_rank_agreed(Path(final["run_dir"]), 2)
    assert final["iterations"] == 3, "continued after model_2.pt: iterations 3, 4 and 5"
    assert [Path(path).name for path in final["checkpoints"]][-1] == "model_5.pt"


def test_the_hang_watchdog_ends_a_torchrun_job_whose_rank_stopped(tmp_path: Path) -> None:
    """Rank 1 stops in its first iteration, before rank 0's first save (whose ONNX export takes seconds)."""
    target = [str(HELPERS / "launch_task.py"), str(tmp_path / "logs"), "1", "20", "--num-envs", "16",
              "--num-steps-per-env", "8", "--timeout", "10"]  # fmt: skip
    nodes = start_nodes(target, tmp_path, MJDIST_TEST_FAULT="sleep:1:4")
    codes = [node.wait(timeout=120) for node in nodes]
    stderr = [(tmp_path / f"node{node}.err").read_text() for node in (0, 1)]
    assert codes[0] != 0 and codes[1] != 0, "\n".join(stderr)
    cause = "rank 1 made no progress for 10 s (--timeout); last progress of rank 1: started training"
    assert f"rank 1 failed: {cause}" in stderr[1]
