# ruff: noqa: E501 - a table of commands and their one-line errors reads best one row per line
"""The bad-input table of docs/bad-input.md: every row exits 2 with its one-line error and writes nothing.

Each case runs the real entry point in this process (no training starts: every check comes first). The docs
list exactly these cases, so the table cannot drift from what the commands say.
"""

from __future__ import annotations

import os
import re
import shlex
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
    ("train cartpole-balance --env.action-clip nan", "--env.action-clip must be a positive finite number (at most 3.4e+38), got nan"),
    ("train cartpole-balance --env.action-scale inf", "--env.action-scale must be a positive finite number (at most 3.4e+38), got inf"),
    ("train cartpole-balance --env.max-abs-qvel 0", "--env.max-abs-qvel must be a positive finite number (at most 3.4e+38), got 0.0"),
    ("train cartpole-balance --agent.max-iterations -1", "--agent.max-iterations must be 0 or more, got -1"),
    ("train cartpole-balance --agent.num-steps-per-env 0", "--agent.num-steps-per-env must be at least 1, got 0"),
    ("train cartpole-balance --agent.save-interval 0", "--agent.save-interval must be at least 1, got 0"),
    ("train cartpole-balance --agent.algorithm.learning-rate 0",
     "--agent.algorithm.learning-rate must be a positive finite number (at most 3.4e+38), got 0.0"),
    ("train cartpole-balance --agent.algorithm.learning-rate nan",
     "--agent.algorithm.learning-rate must be a positive finite number (at most 3.4e+38), got nan"),
    ("train cartpole-balance --agent.algorithm.learning-rate -0.001",
     "--agent.algorithm.learning-rate must be a positive finite number (at most 3.4e+38), got -0.001"),
    ("train cartpole-balance --agent.algorithm.gamma 1.5", "--agent.algorithm.gamma must be between 0 and 1, got 1.5"),
    ("train cartpole-balance --agent.init-noise-std inf",
     "--agent.init-noise-std must be between 0.0001 and 10000, got inf"),
    ("train cartpole-balance --agent.algorithm.num-mini-batches 0", "--agent.algorithm.num-mini-batches must be at least 1, got 0"),
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
    ("train cartpole-balance --timeout -5", "--timeout must be 0 (off) or a number of seconds from 10 up, got -5.0"),
    ("train cartpole-balance --timeout nan", "--timeout must be 0 (off) or a number of seconds from 10 up, got nan"),
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
    ("train cartpole-balance --log-root {tmp}/{too_long}",
     "cannot write runs under {tmp}/{too_long}/cartpole_balance/{run}: File name too long"),
    ("train cartpole-balance --run-name a/b", "--run-name must be a single directory name (no '/', not '.' or '..'), got 'a/b'"),
    ("train cartpole-balance --run-name ..", "--run-name must be a single directory name (no '/', not '.' or '..'), got '..'"),
    ("train cartpole-balance --run-name {long_name}", "--run-name must be at most 235 bytes long, got 236"),
    ("train cartpole-balance --agent.experiment-name ../elsewhere",
     "--agent.experiment-name must be a single directory name (no '/', not '.' or '..'), got '../elsewhere'"),
    ("train cartpole-balance --agent.experiment-name ''",
     "--agent.experiment-name must not be empty: it names the directory runs go to"),
    ("train cartpole-balance --env.num-envs 8 --agent.algorithm.num-mini-batches 4096",
     "--agent.algorithm.num-mini-batches 4096 is more than the 256 samples a rank collects per iteration "
     "(--env.num-envs x --agent.num-steps-per-env); use at most 256"),
    ("train cartpole-balance --agent.algorithm.num-learning-epochs 0",
     "--agent.algorithm.num-learning-epochs must be at least 1, got 0"),
    ("train cartpole-balance --agent.actor.hidden-dims",
     "--agent.actor.hidden-dims needs at least one layer size, e.g. --agent.actor.hidden-dims 64 64"),
    ("train cartpole-balance --agent.critic.hidden-dims 64 0", "--agent.critic.hidden-dims must be at least 1, got 0"),
    ("train cartpole-balance --agent.actor.activation relu6",
     "--agent.actor.activation must be one of elu, selu, relu, crelu, lrelu, tanh, sigmoid, softplus, gelu, swish, mish, identity, got 'relu6'"),
    ("train cartpole-balance --agent.algorithm.value-loss-coef -1",
     "--agent.algorithm.value-loss-coef must be a finite number (at most 3.4e+38 in size), 0 or more, got -1.0"),
    ("train cartpole-balance --agent.algorithm.entropy-coef inf", "--agent.algorithm.entropy-coef must be a finite number (at most 3.4e+38 in size), got inf"),
    ("train cartpole-balance --agent.seed -1", "--agent.seed must be between 0 and 4294967295, got -1"),
    ("train cartpole-balance --gpu-ids None --cpu-workers 2 --oversubscribe --agent.seed 4294967295",
     "--agent.seed must be at most 4294967294 with 2 ranks (rank r is seeded with seed + r, at most 4294967295), got 4294967295"),
    ("train cartpole-balance --agent.logger wandb --agent.wandb-project team/project",
     "--agent.wandb-project must be a wandb project name (1 to 128 characters, none of / \\ # ? % :), got 'team/project'"),
    ("train cartpole-balance --agent.save-interval 9223372036854775808",
     "--agent.save-interval must fit in 64 bits (at most 9223372036854775807), got 9223372036854775808"),
    ("train cartpole-balance --env.rewards.alive nan", "--env.rewards.alive must be a number, got nan"),
    ("train cartpole-balance --env.cart-limit 0", "--env.cart-limit must be above 0 (inf: no bound), got 0.0"),
    ("train velocity-flat-quadruped --env.commands.lin-vel-x 1 -1",
     "--env.commands.lin-vel-x must be a finite range LOW HIGH with LOW <= HIGH, got 1.0 -1.0"),
    ("train cartpole-balance --env.nconmax 0",
     "--env.nconmax must be at least 1 (or left out for MuJoCo-Warp's default), got 0"),
    ("train cartpole-balance --kernel-compile-wait-s -1",
     "--kernel-compile-wait-s must be a number of seconds above 0 and at most 1e+09, got -1.0"),
    ("train cartpole-balance --kernel-compile-wait-s inf",
     "--kernel-compile-wait-s must be a number of seconds above 0 and at most 1e+09, got inf"),
    ("train cartpole-balance --env.num-envs 100000000",
     "--env.num-envs 100000000 x --agent.num-steps-per-env 32 needs about {GB} per rank, but this machine has {GB} "
     "free; use --env.num-envs {N} or fewer, or add --skip-memory-check to start anyway"),
    ("train cartpole-balance --agent.num-steps-per-env 10000000000",
     "--env.num-envs 512 x --agent.num-steps-per-env 10000000000 needs about {GB} per rank, but this machine has {GB} "
     "free; not even --env.num-envs 1 fits: lower --agent.num-steps-per-env or the hidden layer sizes, or add "
     "--skip-memory-check to start anyway"),
    ("RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=localhost MASTER_PORT=http train cartpole-balance",
     "MASTER_PORT='http' is not a TCP port (1 to 65535); set by your launcher"),
    ("MUJOCO_GL=vulkan train cartpole-balance --video",
     "MUJOCO_GL='vulkan' is not a backend MuJoCo renders with; set it to egl, osmesa, glfw, glx, or unset it to let mjdist choose"),
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
    ("play cartpole-balance --agent zero --seed -1", "--seed must be between 0 and 4294967295, got -1"),
    ("play cartpole-balance --agent zero --checkpoint {tmp}/model_7.pt",
     "--agent zero plays without a checkpoint; drop --checkpoint and --run"),
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
    ("bench --num-envs", "--num-envs needs at least one value"),
    ("bench --launch.caches", "--launch.caches needs cold, warm or both"),
    ("bench --launch.warm-cache {tmp}/missing", "--launch.warm-cache {tmp}/missing is not a directory"),
    ("bench --results {tmp}", "--results {tmp} is a directory; name a file"),
    ("bench --results {tmp}/{too_long}", "--results {tmp}/{too_long}: its file name is longer than 255 bytes"),
]  # fmt: skip
ENTRY_POINTS: dict[str, Callable[[list[str]], int]] = {"train": train.main, "play": play.main, "bench": bench.main}
WILDCARDS = {"run": r"[^/ ]+", "GB": r"[0-9.]+ GB", "N": r"[0-9]+"}
"""Placeholders of the expected errors that stand for what differs by run or machine: a run directory's name,
a size in gigabytes, a number of environments."""
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
            "holder": f"pid {holder.pid} on {socket.gethostname()}", "long_name": "x" * 236, "too_long": "x" * 256,
            **{key: f"{{{key}}}" for key in WILDCARDS},
        }  # fmt: skip
    finally:
        holder.kill()
        holder.wait()


def _split(command: str) -> tuple[str, ...]:
    """``NAME=value ... prog arg ...`` as the variables, the program and its arguments (shell quoting)."""
    words = shlex.split(command)
    start = next(i for i, word in enumerate(words) if "=" not in word)
    return (*words[:start], words[start], words[start + 1 :])


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
    *variables, prog, args = _split(command.format(**places))
    for variable in variables:
        monkeypatch.setenv(*variable.split("=", 1))
    if prog in {"train", "play"} and "--log-root" not in args:
        args += ["--log-root", str(tmp_path / "runs")]
    if prog == "bench" and "--results" not in args:
        args += ["--results", str(tmp_path / "results.jsonl")]
    before = tree(Path(places["tmp"]))
    assert ENTRY_POINTS[prog](args) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    pattern = re.escape(f"{prog}: error: {message.format(**places)}")
    for key, wildcard in WILDCARDS.items():
        pattern = pattern.replace(re.escape(f"{{{key}}}"), wildcard)
    assert re.match(pattern, line), line
    assert list(tmp_path.iterdir()) == []
    assert tree(Path(places["tmp"])) == before


def test_the_docs_table_lists_every_case() -> None:
    """Each row of the table names its case's command and its whole error message, placeholders and the text
    after them included."""
    docs = DOCS.read_text()
    rows = [line for line in docs.splitlines() if line.startswith("| `") and not line.startswith("| `mjdist.")]
    cells = [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    documented = [(command, error.replace("\\|", "|")) for command, _, error in cells]
    assert documented == [(f"`{command}`", f"`{message}`") for command, message in CASES]
