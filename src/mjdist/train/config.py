"""The `train` command's configuration: a task's env and agent configs plus launch options."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from mjdist.domains import at_least, check_fields, path_component, seconds
from mjdist.envs.config import EnvConfig
from mjdist.rendering import check_video_flags
from mjdist.rl.config import AgentConfig

TIMEOUT_MIN_S = 10.0
"""The shortest --timeout: one stage of a healthy iteration (a collection, an update, a save) can take seconds on
a busy machine, and a shorter limit would end it as a hang."""
KERNEL_WAIT_MAX_S = 1e9
"""The longest --kernel-compile-wait-s (about 30 years): the rendezvous store takes its wait in milliseconds."""


@dataclass(frozen=True)
class TrainConfig:
    """Train a PPO policy on a MuJoCo-Warp task, on one GPU, several GPUs or CPU cores."""

    env: EnvConfig
    """Environment (task defaults; every field can be overridden)."""
    agent: AgentConfig
    """PPO agent (task defaults; every field can be overridden)."""
    log_root: Path = Path("logs/rsl_rl")
    """Runs are written to <log-root>/<experiment>/<YYYY-MM-DD_HH-MM-SS>[_<run-name>]/."""
    run_name: str = ""
    """Suffix of the run directory name."""
    gpu_ids: Annotated[
        tuple[str, ...], tyro.conf.arg(metavar="ID [ID ...]|all|None", help_behavior_hint="(default: GPU 0, else CPU)")
    ] = ()
    """GPUs as indices into CUDA_VISIBLE_DEVICES: '0 1' (one rank per GPU), 'all', or 'None' for the CPU."""
    cpu_workers: str | None = None
    """CPU worker processes (one rank each, gloo): a number or 'auto' (one per core). CPU mode only."""
    hosts: Annotated[
        tuple[str, ...], tyro.conf.arg(metavar="HOST [HOST ...]|auto", help_behavior_hint="(default: this host only)")
    ] = ()
    """Hosts to start ranks on over SSH, through torchrunx, each with the ranks --gpu-ids/--cpu-workers give one
    host; the first must be reachable from every host (not localhost). 'auto': the SLURM allocation."""
    ssh_config: Path | None = None
    """OpenSSH client config file used to reach --hosts (default: ~/.ssh/config)."""
    host_check: bool = True
    """Before launching on --hosts, check that every host resolves and accepts a non-interactive SSH login (through
    --ssh-config) that runs this Python, in this working directory, with mjdist importable; --no-host-check skips it."""
    torchrunx_log_dir: str | None = None
    """Per-rank log files of multi-rank runs; default <run dir>/torchrunx, '' disables them.
    The TORCHRUNX_LOG_DIR environment variable, if set, wins."""
    resume: Path | None = None
    """Continue training from a checkpoint (model_<it>.pt) or a run directory (its newest loadable checkpoint):
    networks, optimizer, normalizers, learning rate and the iteration count carry on, in a new run
    directory. --agent.max-iterations then counts ADDITIONAL iterations.
    'auto' (with --run-name NAME; requeue-safe): continue the newest run named NAME in its own directory if it
    has a checkpoint, else start it; --agent.max-iterations is then the run's total."""
    max_restarts: int = 0
    """Restart a failed run (a rank raised, was killed, lost its peer or hung) up to this many times, from the
    newest loadable checkpoint of the same run directory; counters carry on. Restarts go to <run dir>/restarts.jsonl."""
    timeout: float = 300.0
    """End the job when no rank has made progress for this many seconds (10 or more; 0 disables), naming the stuck
    rank(s). The clock starts once every rank has built its environment, so cold kernel compiles do not count."""
    oversubscribe: bool = False
    """Allow more --cpu-workers than this process may use cores (each worker then gets a fraction of one)."""
    kernel_compile_wait_s: float = 3600.0
    """Seconds the other ranks of a machine wait while its first rank compiles the environment's Warp kernels
    on a cold kernel cache (minutes on a GPU), before they stop with an error. The wait is on the rendezvous
    store, outside any collective, so torchrunx's 600 s worker timeout does not apply to it."""
    dry_run: bool = False
    """Print the launch plan, with the memory estimate of one rank, as one JSON object and exit, starting and
    writing nothing."""
    skip_memory_check: bool = False
    """Start even when the memory estimate of the ranks on this machine exceeds its free memory (or a GPU's)."""
    video: bool = False
    """Record clips of the current policy in one environment on rank 0 (headless: EGL on a GPU, OSMesa on the CPU)
    to <run dir>/videos/train/iter_<it>.mp4, and log them to TensorBoard and wandb."""
    video_interval: int = 50
    """With --video: record after iteration 0, every this many iterations, and after the last one."""
    video_length: int = 200
    """Frames per clip, one per control step."""
    video_width: int = 320
    """Clip width in pixels (even)."""
    video_height: int = 240
    """Clip height in pixels (even)."""


def check_run_options(cfg: TrainConfig) -> None:
    """Raise ValueError (one line, naming the flag) for run, restart, timeout, resume and video settings, and
    settings of the env and agent that depend on each other, that cannot work."""
    path_component("--run-name", cfg.run_name, reserved=len("YYYY-MM-DD_HH-MM-SS_"))
    at_least("--max-restarts", cfg.max_restarts, 0)
    if not (cfg.timeout == 0 or TIMEOUT_MIN_S <= cfg.timeout < math.inf):
        raise ValueError(
            f"--timeout must be 0 (off) or a number of seconds from {TIMEOUT_MIN_S:g} up, got {cfg.timeout}"
        )
    seconds("--kernel-compile-wait-s", cfg.kernel_compile_wait_s, KERNEL_WAIT_MAX_S)
    if cfg.resume == Path("auto") and not cfg.run_name:
        raise ValueError("--resume auto continues the run named by --run-name; give --run-name NAME")
    samples = cfg.env.num_envs * cfg.agent.num_steps_per_env
    if cfg.agent.algorithm.num_mini_batches > samples:
        raise ValueError(
            f"--agent.algorithm.num-mini-batches {cfg.agent.algorithm.num_mini_batches} is more than the {samples} "
            f"samples a rank collects per iteration (--env.num-envs x --agent.num-steps-per-env); use at most {samples}"
        )
    if cfg.video:
        check_video_flags(cfg.video_length, cfg.video_width, cfg.video_height)
        if cfg.video_interval < 1:
            raise ValueError(f"--video-interval must be at least 1 iteration, got {cfg.video_interval}")
    check_fields(cfg, "", skip=("env", "agent"))  # cfg.env.validate() and cfg.agent.validate() check those
