"""What every training rank does, once the launcher set it up on its device: build its simulation and runner,
continue from the plan's checkpoint, train, and report (rank 0 also writes the run)."""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import socket
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.distributed as dist
from rsl_rl.env import VecEnv

from mjdist.launch.context import RankContext
from mjdist.launch.heartbeat import beat
from mjdist.launch.worker import first_line
from mjdist.rl.exports import export_final_policy
from mjdist.rl.runner import DistributedRunner
from mjdist.runs import write_params
from mjdist.tasks import TaskSpec
from mjdist.train.config import TrainConfig
from mjdist.train.kernel_cache import built_marker, mark_built
from mjdist.train.plan import TrainPlan
from mjdist.train.restarts import next_iteration
from mjdist.train.result import RankResult
from mjdist.train.resume_point import checkpoint_state
from mjdist.train.summary import write_progress

log = logging.getLogger(__name__)


def train_rank(ctx: RankContext, plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec) -> RankResult:
    """Train on this rank's device (the launcher's :func:`~mjdist.launch.bootstrap.enter_device` set it up); rank 0
    writes the run directory."""
    if ctx.is_main and cfg.agent.logger == "wandb":
        os.environ.setdefault("WANDB_DIR", plan.run_dir)  # wandb's files live in the run, not in the cwd
    runner = spec.load_runner_class()(
        build_env(spec, cfg, ctx),
        cfg.agent.to_rsl_rl(cfg.run_name),
        log_dir=plan.run_dir if ctx.is_main else None,
        device=ctx.device,
        task=plan.task,
        local_rank=ctx.local_rank,
        on_stage=lambda stage: beat(ctx.rank, stage),
    )
    if plan.resume_from is not None:  # read by one rank, sent to the others (see resume_point)
        runner.load_state(checkpoint_state(plan, ctx), Path(plan.resume_from))
        runner.current_learning_iteration += 1  # the next iteration is numbered after the checkpoint's
    iterations = iterations_to_run(plan, cfg)
    if ctx.is_main:
        write_params(plan.run_dir_path, {"env": cfg.env, "agent": cfg.agent, "launch": plan.to_json()})
        started = time.monotonic()
        runner.iteration_hooks.append(lambda _: write_progress(plan, runner.metrics(), time.monotonic() - started))
        if cfg.video:
            last_iteration = runner.current_learning_iteration + iterations - 1
            runner.iteration_hooks.append(training_clips(runner, spec, cfg, ctx.seed, last_iteration))
    runner.learn(iterations)
    if ctx.is_main:
        final_checkpoint = plan.run_dir_path / f"model_{runner.current_learning_iteration}.pt"
        export_final_policy(runner.alg.get_policy(), plan.run_dir_path, final_checkpoint)
    return RankResult(
        rank=ctx.rank,
        parameter_digest=network_digest(runner.alg.actor, runner.alg.critic),
        observation_digest=_digest(dict(runner.env.get_observations().items())),
        iterations=tuple(runner.iteration_timings),
        mean_reward=_mean(runner.logger.rewbuffer),
        mean_episode_length=_mean(runner.logger.lenbuffer),
    )


def training_clips(
    runner: DistributedRunner, spec: TaskSpec, cfg: TrainConfig, seed: int, last_iteration: int
) -> Callable[[int], None]:
    """Rank 0's ``--video`` recorder, as an iteration hook (imports the renderer only when asked to); the clip
    schedule ends at ``last_iteration``, the last this rank will train."""
    from mjdist.play.video import VideoSpec
    from mjdist.train.clips import ClipSchedule, TrainingClips

    frames = VideoSpec(Path(), cfg.video_length, cfg.video_width, cfg.video_height, spec.video_camera)
    return TrainingClips(runner, spec, ClipSchedule(cfg.video_interval, last_iteration), frames, seed)


def build_env(spec: TaskSpec, cfg: TrainConfig, ctx: RankContext) -> VecEnv:
    """The rank's environment, its Warp kernels compiled once per machine however many ranks there are.

    If every rank finds this environment's marker in the kernel cache, all build at once and load the cached
    kernels. Otherwise local rank 0 of each machine builds first, compiling what is missing, marks the cache
    and says so in the rendezvous store; the machine's other ranks wait for that word (up to
    ``--kernel-compile-wait-s``, outside any collective and its timeout), then load those kernels.
    """

    def build() -> VecEnv:
        return spec.build_vec_env(cfg.env, cfg.agent, ctx.device, ctx.seed)

    if ctx.world_size == 1:
        return build()
    marker = built_marker(spec.name, cfg.env, ctx.device)
    cached = torch.tensor([int(marker.exists())], device=ctx.device)
    dist.all_reduce(cached, op=dist.ReduceOp.MIN)
    if cached.item():
        return build()
    store, key = kernels_built_signal(cfg.kernel_compile_wait_s)
    if ctx.local_rank == 0:
        env = build()
        mark_built(marker)
        store.set(key, "1")
        return env
    log.info("rank %d: waiting for local rank 0 to compile the Warp kernels", ctx.rank)
    try:
        store.wait([key], datetime.timedelta(seconds=cfg.kernel_compile_wait_s))
    except (dist.DistStoreError, RuntimeError) as error:  # a timeout (DistStoreError) or a lost store
        raise TimeoutError(
            f"local rank 0 did not finish compiling the environment's Warp kernels within "
            f"{cfg.kernel_compile_wait_s:g} s (--kernel-compile-wait-s): {first_line(error)}"
        ) from error
    return build()


def kernels_built_signal(wait_s: float) -> tuple[dist.Store, str]:
    """A client of the job's rendezvous store (MASTER_ADDR:MASTER_PORT, set by torchrunx and torchrun) and this
    machine's key in it for the current attempt (torchrun restarts count separately)."""
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=datetime.timedelta(seconds=wait_s),
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return store, f"mjdist/kernels-built/{socket.gethostname()}/{attempt}"


def iterations_to_run(plan: TrainPlan, cfg: TrainConfig) -> int:
    """--agent.max-iterations from the start point, or what is left to the plan's end iteration."""
    if plan.end_iteration is None:
        return cfg.agent.max_iterations
    return max(plan.end_iteration - next_iteration(plan), 0)


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
