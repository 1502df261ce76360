"""The `train` command's configuration: a task's env and agent configs plus launch options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from mjdist.envs.config import EnvConfig
from mjdist.rl.config import AgentConfig


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
    torchrunx_log_dir: str | None = None
    """Per-rank log files of multi-rank runs; default <run dir>/torchrunx, '' disables them.
    The TORCHRUNX_LOG_DIR environment variable, if set, wins."""
    resume: Path | None = None
    """Continue training from a checkpoint (model_<it>.pt) or a run directory (its latest checkpoint):
    networks, optimizer, normalizers, learning rate and the iteration count carry on, in a new run
    directory. --agent.max-iterations then counts ADDITIONAL iterations."""
    dry_run: bool = False
    """Print the launch plan as one JSON object and exit, starting and writing nothing."""
