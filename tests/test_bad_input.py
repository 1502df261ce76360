# ruff: noqa: E501 - a table of commands and their one-line errors reads best one row per line
"""The bad-input table of docs/bad-input.md: every row exits 2 with its one-line error and writes nothing.

Each case runs the real entry point in this process (no training starts: every check comes first). The docs
list exactly these cases, so the table cannot drift from what the commands say.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from conftest import held_run

from mjdist import rendering
from mjdist.cli import bench, play, train

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
TASK = "cartpole-balance"
CORES = len(os.sched_getaffinity(0))

CASES: list[tuple[str, str, str]] = [
    # (command line as documented, with {placeholders}; the expected one-line error, which may hold them too)
    ("train cartpole-balanse", "unknown task 'cartpole-balanse'; known tasks: cartpole-balance, cartpole-swingup"),
    ("train cartpole-balance --env.num-envs 0", "--env.num-envs must be at least 1, got 0"),
    ("train cartpole-balance --env.num-envs -4", "--env.num-envs must be at least 1, got -4"),
    ("train cartpole-balance --env.episode-length 0", "--env.episode-length must be at least 1, got 0"),
    ("train cartpole-balance --env.decimation 0", "--env.decimation must be at least 1, got 0"),
    ("train cartpole-balance --env.action-clip nan", "--env.action-clip must be a positive finite number, got nan"),
    ("train cartpole-balance --env.action-scale inf", "--env.action-scale must be a positive finite number, got inf"),
    ("train cartpole-balance --env.max-abs-qvel 0", "--env.max-abs-qvel must be a positive finite number, got 0.0"),
    ("train cartpole-balance --agent.max-iterations -1", "--agent.max-iterations must be 0 or more, got -1"),
    ("train cartpole-balance --agent.num-steps-per-env 0", "--agent.num-steps-per-env must be at least 1, got 0"),
    ("train cartpole-balance --agent.save-interval 0", "--agent.save-interval must be at least 1, got 0"),
    ("train cartpole-balance --agent.algorithm.learning-rate 0",
     "--agent.algorithm.learning-rate must be a positive finite number, got 0.0"),
    ("train cartpole-balance --agent.algorithm.learning-rate nan",
     "--agent.algorithm.learning-rate must be a positive finite number, got nan"),
    ("train cartpole-balance --agent.algorithm.learning-rate -0.001",
     "--agent.algorithm.learning-rate must be a positive finite number, got -0.001"),
    ("train cartpole-balance --agent.algorithm.gamma 1.5", "--agent.algorithm.gamma must be between 0 and 1, got 1.5"),
    ("train cartpole-balance --agent.init-noise-std inf",
     "--agent.init-noise-std must be a positive finite number, got inf"),
    ("train cartpole-balance --agent.algorithm.num-mini-batches 0",
     "--agent.algorithm.num-mini-batches and num-learning-epochs must be at least 1"),
    ("train cartpole-balance --gpu-ids None --cpu-workers 0", "--cpu-workers must be at least 1, got 0"),
    ("train cartpole-balance --gpu-ids None --cpu-workers 999",
     f"--cpu-workers 999 is more than the {CORES} core(s) this process may use; use --cpu-workers auto, "
     "or add --oversubscribe to start them anyway"),
    ("train cartpole-balance --cpu-workers many", "--cpu-workers takes a positive integer or 'auto', got 'many'"),
    ("train cartpole-balance --gpu-ids -1", "GPU id -1 is negative; GPU ids are indices 0..N-1 into the visible GPUs"),
    ("train cartpole-balance --gpu-ids 0 0", "GPU id 0 is given twice in --gpu-ids; list each GPU once"),
    ("train cartpole-balance --gpu-ids 0 --cpu-workers 2",
     "--cpu-workers only applies to CPU training; it cannot be combined with --gpu-ids 0"),
    ("train cartpole-balance --gpu-ids all None", "--gpu-ids all cannot be combined with other values"),
    ("train cartpole-balance --max-restarts -1", "--max-restarts must be 0 or more, got -1"),
    ("train cartpole-balance --timeout -5", "--timeout must be a number of seconds, 0 or more (0 disables it), got -5.0"),
    ("train cartpole-balance --timeout nan", "--timeout must be a number of seconds, 0 or more (0 disables it), got nan"),
    ("train cartpole-balance --resume auto", "--resume auto continues the run named by --run-name; give --run-name NAME"),
    ("train cartpole-balance --resume {tmp}/missing.pt", "checkpoint {tmp}/missing.pt does not exist"),
    ("train cartpole-balance --resume {tmp}/notes.txt",
     "{tmp}/notes.txt is not a checkpoint (expected a file named model_<iteration>.pt)"),
    ("train cartpole-balance --resume {truncated}", "cannot read checkpoint {truncated}: "),
    ("train cartpole-balance --resume {text}", "cannot read checkpoint {text}: "),
    ("train cartpole-balance --resume {foreign}",
     "checkpoint {foreign} was trained on task 'cartpole-swingup', not 'cartpole-balance'"),
    ("train cartpole-balance --resume {not_rsl_rl}", "{not_rsl_rl} is not an rsl_rl checkpoint (it holds a int)"),
    ("train cartpole-balance --resume {partial}",
     "{partial} is not an rsl_rl checkpoint (missing critic_state_dict, iter, optimizer_state_dict)"),
    ("train cartpole-balance --resume {empty_run}", "run directory {empty_run} has no model_<iteration>.pt checkpoints"),
    ("train cartpole-balance --resume {broken_run}",
     "no checkpoint in {broken_run} can be used (skipped model_9.pt, model_3.pt)"),
    ("train cartpole-balance --gpu-ids None --hosts localhost node2",
     "--hosts localhost node2: localhost is this machine's loopback name, which other hosts cannot reach; name this "
     "host by an address or hostname every host can reach (it should come first)"),
    ("train cartpole-balance --gpu-ids None --hosts node1 node1", "host node1 is given twice in --hosts; list each host once"),
    ("train cartpole-balance --gpu-ids None --hosts auto node1",
     "--hosts auto cannot be combined with host names; give --hosts auto on its own"),
    ("train cartpole-balance --gpu-ids None --hosts node1 --ssh-config {tmp}/no-ssh-config",
     "--ssh-config {tmp}/no-ssh-config: no such file; give an OpenSSH client config file"),
    ("train cartpole-balance --log-root {file}/runs",
     "cannot write runs under {file}/runs/cartpole_balance/{run}: {file} is a file, not a directory"),
    ("train cartpole-balance --gpu-ids None --hosts nosuchhost.invalid",
     "host nosuchhost.invalid does not resolve (Name or service not known); give --hosts names or addresses this "
     "machine can look up"),
    ("train cartpole-balance --gpu-ids None --cpu-workers 2 --oversubscribe --torchrunx-log-dir {file}/logs",
     "cannot write the per-rank log files to {file}/logs: {file} is a file, not a directory; give "
     "--torchrunx-log-dir a directory, or '' for no log files"),
    ("TORCHRUNX_LOG_DIR={file} train cartpole-balance --gpu-ids None --cpu-workers 2 --oversubscribe",
     "cannot write the per-rank log files to {file}: {file} is a file, not a directory; set TORCHRUNX_LOG_DIR to a "
     "directory, or to '' for no log files"),
    ("train cartpole-balance --gpu-ids None --log-root {busy_root} --run-name busy --resume auto",
     "run directory {busy_run} is in use by another job ({holder}); wait for that job to end or stop it, or give "
     "another --run-name"),
    ("play cartpole-balanse", "unknown task 'cartpole-balanse'; known tasks: cartpole-balance, cartpole-swingup"),
    ("play cartpole-balance --checkpoint {tmp}/model_7.pt", "checkpoint {tmp}/model_7.pt does not exist"),
    ("play cartpole-balance --checkpoint {truncated}", "cannot read checkpoint {truncated}: "),
    ("play cartpole-balance --checkpoint {foreign}",
     "checkpoint {foreign} was trained on task 'cartpole-swingup', not 'cartpole-balance'"),
    ("play cartpole-balance --run {broken_run}",
     "no checkpoint in {broken_run} can be used (skipped model_9.pt, model_3.pt)"),
    ("play cartpole-balance --log-root {tmp}/nothing", "no run with checkpoints under {tmp}/nothing/cartpole_balance"),
    ("play cartpole-balance --num-envs 0", "--num-envs must be at least 1, got 0"),
    ("play cartpole-balance --num-steps -3", "--num-steps must be at least 1, got -3"),
    ("play cartpole-balance --agent zero --video --video-width 15",
     "--video-width must be an even number of pixels, at least 16, got 15"),
    ("play cartpole-balance --agent zero --video --log-root {file}",
     "cannot write runs under {file}/cartpole_balance/videos/play: {file} is a file, not a directory"),
    ("play cartpole-balance --agent zero --video --num-steps 1",
     "--video renders with OSMesa on the CPU, and libOSMesa is not installed; install it (apt-get install libosmesa6) "
     "or drop --video"),
    ("bench fizz", "unknown benchmark 'fizz'; choose from physics, env, train, scaling, launch, sync"),
    ("bench --task cartpole-balanse", "unknown task 'cartpole-balanse'; known tasks: cartpole-balance, cartpole-swingup"),
    ("bench --duration nan", "--duration must be a positive number of seconds, got nan"),
    ("bench --ranks 0", "--ranks must be at least 1, got 0"),
]  # fmt: skip
ENTRY_POINTS: dict[str, Callable[[list[str]], int]] = {"train": train.main, "play": play.main, "bench": bench.main}
WITHOUT_GL = {"play cartpole-balance --agent zero --video --num-steps 1"}
"""Cases run as on a machine without libOSMesa (CI installs it, so the test hides it)."""


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Files the cases point at: broken, foreign and partial checkpoints, run directories, a plain file; and a run
    that another process holds."""
    tmp = tmp_path_factory.mktemp("bad-input")
    busy_run = tmp / "busy-runs" / "cartpole_balance" / "2026-01-01_00-00-00_busy"
    holder = held_run(busy_run)
    complete = {"actor_state_dict": {}, "critic_state_dict": {}, "optimizer_state_dict": {}, "iter": 3}
    foreign = tmp / "foreign" / "model_3.pt"
    foreign.parent.mkdir()
    torch.save({**complete, "infos": {"task": "cartpole-swingup"}}, foreign)
    truncated = tmp / "truncated" / "model_5.pt"
    truncated.parent.mkdir()
    truncated.write_bytes(foreign.read_bytes()[:100])
    text = tmp / "text" / "model_6.pt"
    text.parent.mkdir()
    text.write_text("not a checkpoint\n")
    not_rsl_rl = tmp / "model_8.pt"
    torch.save(5, not_rsl_rl)
    partial = tmp / "partial" / "model_2.pt"
    partial.parent.mkdir()
    torch.save({"actor_state_dict": {}}, partial)
    (tmp / "notes.txt").write_text("notes\n")
    (tmp / "empty-run").mkdir()
    broken_run = tmp / "broken-run"
    broken_run.mkdir()
    (broken_run / "model_3.pt").write_bytes(truncated.read_bytes())
    (broken_run / "model_9.pt").write_text("cut off\n")
    (tmp / "a-file").write_text("a file, not a directory\n")
    try:
        yield {
            "tmp": str(tmp), "foreign": str(foreign), "truncated": str(truncated), "text": str(text),
            "not_rsl_rl": str(not_rsl_rl), "partial": str(partial), "empty_run": str(tmp / "empty-run"),
            "broken_run": str(broken_run), "file": str(tmp / "a-file"), "run": "{run}",
            "busy_root": str(tmp / "busy-runs"), "busy_run": str(busy_run),
            "holder": f"pid {holder.pid} on {socket.gethostname()}",
        }  # fmt: skip
    finally:
        holder.kill()
        holder.wait()


def tree(path: Path) -> list[tuple[str, float]]:
    return sorted((str(p), p.stat().st_mtime) for p in path.rglob("*"))


@pytest.mark.parametrize(("command", "message"), CASES, ids=[command for command, _ in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    command: str,
    message: str,
    places: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # default log roots and bench results land here if anything is written
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the same on machines with GPUs
    if command in WITHOUT_GL:
        monkeypatch.delenv("MUJOCO_GL", raising=False)
        monkeypatch.setattr(rendering, "find_library", lambda name: None)
    words = command.format(**places).split()
    while "=" in words[0]:  # VARIABLE=value before the command
        monkeypatch.setenv(*words.pop(0).split("=", 1))
    prog, *args = words
    if prog in {"train", "play"} and "--log-root" not in args:
        args += ["--log-root", str(tmp_path / "runs")]
    if prog == "bench":
        args += ["--results", str(tmp_path / "results.jsonl")]
    before = tree(Path(places["tmp"]))
    assert ENTRY_POINTS[prog](args) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    pattern = re.escape(f"{prog}: error: {message.format(**places)}").replace(re.escape("{run}"), r"[^/ ]+")
    assert re.match(pattern, line), line
    assert list(tmp_path.iterdir()) == []
    assert tree(Path(places["tmp"])) == before


def test_the_docs_table_lists_every_case() -> None:
    """Each row of the table names its case's command and its whole error message, placeholders and the text
    after them included."""
    docs = DOCS.read_text()
    rows = [line for line in docs.splitlines() if line.startswith("| `")]
    cells = [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    documented = [(command, error.replace("\\|", "|")) for command, _, error in cells]
    assert documented == [(f"`{command}`", f"`{message}`") for command, message in CASES]
