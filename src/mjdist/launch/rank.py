"""What every rank does: set itself up from the plan, build its simulation and runner, train."""

from __future__ import annotations

import hashlib
import logging
import os
import statistics
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.distributed as dist
import warp as wp

from mjdist.checkpoints import checkpoint_iteration
from mjdist.config import TrainConfig
from mjdist.envs.core import MjWarpEnv
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.launch.context import RankContext, RankResult
from mjdist.launch.kernel_cache import built_marker, mark_built
from mjdist.launch.plan import LaunchPlan
from mjdist.launch.rank_setup import pin_rank_to_device
from mjdist.rl.runner import DistributedRunner
from mjdist.runs import write_params
from mjdist.tasks import TaskSpec

EXPORTED_POLICY = "policy.pt"
"""TorchScript policy written to <run dir>/exported/ after training: actions from the concatenated actor
observations, normalization included; runs with plain torch (torch.jit.load), without mjdist."""

log = logging.getLogger(__name__)


def train_rank(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> RankResult:
    """Train on this rank's device; rank 0 writes the run directory."""
    ctx = RankContext.from_environment(plan)
    pin_rank_to_device(plan, ctx)
    wp.config.log_level = wp.LOG_WARNING
    if ctx.is_main and cfg.agent.logger == "wandb":
        os.environ.setdefault("WANDB_DIR", plan.run_dir)  # wandb's files live in the run, not in the cwd
    with wp.ScopedDevice(ctx.device):
        env = build_env(spec, cfg, ctx)
        runner = DistributedRunner(
            RslRlVecEnv(env),
            cfg.agent.to_rsl_rl(cfg.run_name),
            log_dir=plan.run_dir if ctx.is_main else None,
            device=ctx.device,
            task=plan.task,
        )
        if plan.resume_from is not None:
            resume(runner, Path(plan.resume_from), ctx.device)
        if ctx.is_main:
            write_params(plan.run_dir_path, {"env": cfg.env, "agent": cfg.agent, "launch": plan.to_json()})
        runner.learn(cfg.agent.max_iterations)
        if ctx.is_main:
            with warnings.catch_warnings():  # torch deprecates jit.script, which rsl_rl's exporter uses
                warnings.simplefilter("ignore", FutureWarning)
                runner.export_policy_to_jit(str(plan.run_dir_path / "exported"), EXPORTED_POLICY)
    return RankResult(
        rank=ctx.rank,
        parameter_digest=network_digest(runner.alg.actor, runner.alg.critic),
        observation_digest=_digest(dict(runner.env.get_observations().items())),
        iterations=tuple(runner.iteration_timings),
        mean_reward=_mean(runner.logger.rewbuffer),
        mean_episode_length=_mean(runner.logger.lenbuffer),
    )


def build_env(spec: TaskSpec, cfg: TrainConfig, ctx: RankContext) -> MjWarpEnv:
    """The rank's environment, its Warp kernels compiled once per machine however many ranks there are.

    If every rank finds this environment's marker in the kernel cache, all build at once and load the cached
    kernels. Otherwise local rank 0 builds first, compiling what is missing, and marks the cache; the other
    ranks wait at a barrier, then load those kernels instead of compiling them again.
    """
    env_class = spec.load_env_class()
    if ctx.world_size == 1:
        return env_class(cfg.env, device=ctx.device, seed=ctx.seed)
    marker = built_marker(spec.name, cfg.env, ctx.device)
    cached = torch.tensor([int(marker.exists())], device=ctx.device)
    dist.all_reduce(cached, op=dist.ReduceOp.MIN)
    if cached.item():
        return env_class(cfg.env, device=ctx.device, seed=ctx.seed)
    env = env_class(cfg.env, device=ctx.device, seed=ctx.seed) if ctx.local_rank == 0 else None
    if env is not None:
        mark_built(marker)
    dist.barrier(device_ids=[torch.cuda.current_device()] if ctx.device.startswith("cuda") else None)
    return env if env is not None else env_class(cfg.env, device=ctx.device, seed=ctx.seed)


def resume(runner: DistributedRunner, checkpoint: Path, device: str) -> None:
    """Load everything the checkpoint holds; the next iteration is numbered after the checkpoint's."""
    runner.load_checkpoint(checkpoint, device)
    runner.current_learning_iteration = checkpoint_iteration(checkpoint) + 1


def network_digest(actor: torch.nn.Module, critic: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer (normalizers included) of both networks; their state dicts use
    the same key names, so each is prefixed with its network."""
    tensors = {f"{name}.{key}": value for name, module in (("actor", actor), ("critic", critic))
               for key, value in module.state_dict().items()}  # fmt: skip
    return _digest(tensors)


def _mean(values: Iterable[float]) -> float | None:
    values = [float(value) for value in values]
    return statistics.fmean(values) if values else None


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for name in sorted(tensors):
        sha.update(name.encode())
        sha.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()
