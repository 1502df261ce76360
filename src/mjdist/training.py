"""``mjdist.train``: a task's configs with the caller's overrides, the devices, the run, training on every rank,
and what came of it. The ``train`` command parses its flags into the same TrainConfig and runs the same flow.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjdist.checkpoints import CHECKPOINT_NAME, checkpoint_iteration, read_checkpoint, resolve_checkpoint
from mjdist.config import TrainConfig, check_run_options
from mjdist.errors import ConfigError, RankFailedError, UsageError
from mjdist.failures import TrainingFailure
from mjdist.launch.context import RankResult
from mjdist.launch.devices import check_gpus_exist
from mjdist.launch.plan import LaunchPlan
from mjdist.launch.requeue import AUTO, find_continuation
from mjdist.launch.resolve import resolve_plan
from mjdist.launch.selection import GpuIds, cpu_worker_flag, gpu_id_flags, visible_gpus
from mjdist.overrides import resolve_config
from mjdist.rendering import check_video_flags, choose_gl_backend
from mjdist.run_summary import summary_on_exit
from mjdist.runs import EXPORT_DIR, check_writable, to_plain
from mjdist.tasks import TaskSpec, get_task

if TYPE_CHECKING:
    from mjdist.envs.config import EnvConfig
    from mjdist.rl.config import AgentConfig

log = logging.getLogger("mjdist.train")

INTERRUPTED_AFTER_ITERATION = "every rank stopped after its current iteration, which rank 0 saved"


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: where it went, its final metrics, and what every rank reported."""

    task: str
    """The task trained."""
    run_dir: Path
    """The run directory (configs, checkpoints, exported policy, logs)."""
    world_size: int
    """Ranks that trained."""
    devices: tuple[str, ...]
    """Each rank's torch device, in rank order ('cpu', 'cuda:0', ...); under torchrun, this rank's only."""
    hosts: tuple[str, ...]
    """The hosts the ranks ran on, in rank order of their first rank ('localhost' for this host alone)."""
    iterations: int
    """PPO iterations run (with ``resume``: in addition to the checkpoint's; after restarts: by the last attempt;
    0 when ``resume="auto"`` found the run already finished)."""
    wall_time_s: float
    """Seconds from the launch to the last rank's return (start-up and kernel compiles included)."""
    env_steps_per_s: float | None
    """Environment steps per second of all ranks together, over every iteration but the first (warm-up), or
    the first when there is only one; None after zero iterations."""
    mean_reward: float | None
    """Mean return of the last 100 episodes finished on rank 0 (as the progress line and TensorBoard's
    Train/mean_reward show it); None if no episode finished."""
    mean_episode_length: float | None
    """Mean length of those episodes, in control steps; None if no episode finished."""
    checkpoints: tuple[Path, ...]
    """The run's ``model_<it>.pt`` files, by iteration."""
    exports: tuple[Path, ...]
    """Files under ``<run dir>/exported``: ``model_<it>.onnx`` per checkpoint, and the final ``policy.onnx`` and
    ``policy.pt`` (TorchScript)."""
    parameter_digest: str
    """sha256 of the final actor and critic parameters (the same on every rank); '' when nothing was trained."""
    ranks: tuple[RankResult, ...]
    """What each rank reported, in rank order: its digests and the timing of each iteration."""

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (paths as strings)."""
        return to_plain(self)


def train(
    task: str,
    *,
    env: EnvConfig | Mapping[str, Any] | None = None,
    agent: AgentConfig | Mapping[str, Any] | None = None,
    gpu_ids: GpuIds = (),
    cpu_workers: int | str | None = None,
    hosts: str | Sequence[str] = (),
    ssh_config: str | os.PathLike[str] | None = None,
    log_root: str | os.PathLike[str] = "logs/rsl_rl",
    run_name: str = "",
    resume: str | os.PathLike[str] | None = None,
    torchrunx_log_dir: str | None = None,
    max_restarts: int = 0,
    timeout: float = TrainConfig.timeout,
    oversubscribe: bool = False,
) -> TrainResult:
    """Train a PPO policy on ``task`` and return the run's result; the ``train`` command, as a function.

    Args:
        task: A registered task name, e.g. ``"cartpole-balance"`` (see :func:`mjdist.get_task`).
        env: The task's environment config (:func:`mjdist.get_task` gives the default, to change with
            ``dataclasses.replace``), or a dict of overrides of it (nested dicts for nested configs), or None
            for the default.
        agent: The PPO config, or a dict of overrides (e.g. ``{"max_iterations": 20, "algorithm":
            {"learning_rate": 3e-4}}``), or None for the task's default.
        gpu_ids: GPUs as indices into CUDA_VISIBLE_DEVICES (``0``, ``[0, 1]``, ``"all"``), ``None`` for the CPU;
            the default ``()`` takes GPU 0 if one is visible, else the CPU.
        cpu_workers: CPU worker processes (one rank each), a number or ``"auto"``; CPU only.
        hosts: Hosts to start ranks on over SSH through torchrunx (each with the ranks ``gpu_ids``/``cpu_workers``
            give one host; the first must be reachable from every host), or ``"auto"`` for the SLURM allocation;
            default: this host only. See docs/cluster.md.
        ssh_config: OpenSSH client config file used to reach ``hosts`` (default: ~/.ssh/config).
        log_root: Runs go to ``<log_root>/<experiment>/<timestamp>[_<run_name>]``.
        run_name: Suffix of the run directory's name.
        resume: A checkpoint or run directory to continue from; ``agent.max_iterations`` then counts the
            additional iterations. ``"auto"`` (with ``run_name``; requeue-safe): continue the newest run named
            ``run_name`` in its own directory from its newest loadable checkpoint, or start it;
            ``agent.max_iterations`` is then the run's total.
        torchrunx_log_dir: Per-rank log files of a multi-rank run (default ``<run dir>/torchrunx``; ``""``: none).
        max_restarts: Restart a failed run (a rank raised, was killed, or hung) up to this many times from the
            newest loadable checkpoint of the same run directory; each restart goes to ``<run dir>/restarts.jsonl``.
        timeout: End the job when no rank has made progress for this many seconds, naming the stuck ranks
            (0 disables); the clock starts once every rank has built its environment.
        oversubscribe: Allow more ``cpu_workers`` than this process may use cores.

    Returns:
        The run directory, checkpoints, final metrics, per-rank timings and the parameter digest.

    Raises:
        UsageError: Bad input (an unknown task, a bad config value or override, unusable devices, a log root
            that cannot be written, an unusable checkpoint); nothing was started or written. Its kinds are
            ConfigError, DeviceSelectionError and CheckpointError.
        RankFailedError: A rank raised, was killed or hung (after ``max_restarts`` restarts); ``.rank`` names it
            when a single rank is to blame. Every process of the job was ended.
        KeyboardInterrupt: Ctrl-C or SIGTERM; every rank stopped after its current iteration, which rank 0 saved.
    """
    spec = get_task(task)
    cfg = TrainConfig(
        env=resolve_config(spec.env, env, "env"),
        agent=resolve_config(spec.agent, agent, "agent"),
        log_root=Path(log_root),
        run_name=run_name,
        gpu_ids=gpu_id_flags(gpu_ids),
        cpu_workers=cpu_worker_flag(cpu_workers),
        hosts=host_flags(hosts),
        ssh_config=None if ssh_config is None else Path(ssh_config),
        torchrunx_log_dir=torchrunx_log_dir,
        resume=None if resume is None else Path(resume),
        max_restarts=max_restarts,
        timeout=timeout,
        oversubscribe=oversubscribe,
    )
    return run_training(spec, cfg)


def host_flags(hosts: str | Sequence[str]) -> tuple[str, ...]:
    """``hosts`` as the ``--hosts`` strings: ``"auto"`` -> ``("auto",)``, ``["a", "b"]`` -> ``("a", "b")``."""
    return (hosts,) if isinstance(hosts, str) else tuple(hosts)


def plan_training(spec: TaskSpec, cfg: TrainConfig) -> LaunchPlan:
    """Check the configs, resolve the devices and the run directory; a UsageError for bad input. Creates nothing
    (with ``cfg.dry_run``, GPUs and the log root are not checked either: the plan may be for another machine)."""
    try:
        cfg.env.validate()
        cfg.agent.validate()
        check_run_options(cfg)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if cfg.video:
        _check_video(cfg)
    cuda_visible_devices, device_count = visible_gpus()
    run_dir, resume_from = _start_point(spec.name, cfg)
    plan, notice = resolve_plan(spec.name, cfg, os.environ, device_count, datetime.datetime.now(), resume_from, run_dir)
    if cfg.resume == AUTO:
        plan = dataclasses.replace(plan, end_iteration=cfg.agent.max_iterations)
    if not cfg.dry_run:
        if any(rank.physical_gpu is not None for rank in plan.ranks):
            check_gpus_exist(cuda_visible_devices, device_count)
        if plan.ranks[0].rank == 0:  # in rank mode only rank 0 writes, and only its host must allow it
            try:
                check_writable(plan.run_dir_path)
            except ValueError as error:
                raise UsageError(str(error)) from None
    if cfg.video and not cfg.dry_run:  # rank 0 renders; the ranks inherit MUJOCO_GL (RenderingUnavailable: exit 2)
        choose_gl_backend(plan.ranks[0].device)
    if notice:
        log.info("%s", notice)
    return plan


def run_training(spec: TaskSpec, cfg: TrainConfig) -> TrainResult:
    """Plan the run, train on every rank (restarted up to ``cfg.max_restarts`` times), check that the ranks agree,
    and collect the result."""
    from mjdist.launch.restarts import train_with_restarts

    plan = plan_training(spec, cfg)
    if _already_done(plan):
        log.info("Run %s already did its %d iterations; nothing to do", plan.run_dir, plan.end_iteration)
        return _result(plan, cfg, (), 0.0)
    ranks = ", ".join(f"{r.rank}:{r.device}" for r in plan.ranks)
    log.info("Training %s on %d rank(s) [%s]; run directory: %s", plan.task, plan.world_size, ranks, plan.run_dir)
    start = time.perf_counter()
    with summary_on_exit(plan) as run_end:  # summary.json however the run ends (an exception marks it failed)
        results = train_with_restarts(plan, cfg, spec)
        wall_time_s = time.perf_counter() - start
        digests = {result.parameter_digest for result in results}
        if len(digests) > 1:
            raise RankFailedError(
                f"ranks ended with different parameters; gradient averaging is broken: {sorted(digests)}"
            )
        run_end.finished(results[0].parameter_digest)
    if plan.world_size > 1:
        log.info(
            "All %d ranks ended with identical parameters (sha256 %s)",
            plan.world_size,
            results[0].parameter_digest[:12],
        )
    log.info("Done: %d iterations; checkpoints, configs and logs in %s", len(results[0].iterations), plan.run_dir)
    return _result(plan, cfg, tuple(results), wall_time_s)


def train_on_ranks(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    """Train on every rank of a plan already made and checked, once; the ranks' results in rank order.

    A failure during training is a RankFailedError naming its cause (in this process too, so that restarts
    see every failure alike); a checkpoint that does not fit, found while the ranks load it, stays a
    CheckpointError (a UsageError). Under torchrun-style variables this process is one rank of a job its
    scheduler started, and a failure ends the process at once (the scheduler stops the others).
    """
    if plan.launcher == "environment":  # torchrun, OSMO or Kubernetes started this process as one rank
        from mjdist.launch.rank_mode import train_as_rank

        return train_as_rank(plan, cfg, spec)
    from mjdist.launch.launcher import run_ranks
    from mjdist.launch.worker import first_line

    try:
        return run_ranks(plan, _train_rank, plan, cfg, spec, stopped=INTERRUPTED_AFTER_ITERATION, timeout_s=cfg.timeout)
    except (UsageError, RankFailedError, KeyboardInterrupt):
        raise
    except TrainingFailure as failure:  # raised in this process (one rank): its message says it all
        raise RankFailedError(f"{type(failure).__name__}: {failure}", 0) from failure
    except Exception as error:
        log.error("Training raised:", exc_info=True)
        raise RankFailedError(f"{type(error).__name__}: {first_line(error)}", 0) from error


def _train_rank(plan: LaunchPlan, cfg: TrainConfig, spec: TaskSpec) -> RankResult:
    """The rank function, importing the training code only on the ranks (a launcher of several never needs it)."""
    from mjdist.launch.rank import train_rank

    return train_rank(plan, cfg, spec)


def _start_point(task: str, cfg: TrainConfig) -> tuple[Path | None, Path | None]:
    """``(run_dir, resume_from)``: the named run's own directory and newest checkpoint under ``--resume auto``
    (None, None for a run not started yet); a new run directory and --resume's checkpoint otherwise."""
    if cfg.resume == AUTO:
        found = find_continuation(cfg.log_root / cfg.agent.experiment_name, cfg.run_name, task)
        if found.resume_from is not None:
            log.info("Continuing run %s from %s (--resume auto)", found.run_dir, found.resume_from.name)
        return found.run_dir, found.resume_from
    return None, _checked_resume(task, cfg.resume) if cfg.resume is not None else None


def _check_video(cfg: TrainConfig) -> None:
    try:
        check_video_flags(cfg.video_length, cfg.video_width, cfg.video_height)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if cfg.video_interval < 1:
        raise UsageError(f"--video-interval must be at least 1 iteration, got {cfg.video_interval}")


def _checked_resume(task: str, resume: Path) -> Path:
    """The checkpoint to resume from, read once here so that a bad one is refused before anything starts."""
    checkpoint = resolve_checkpoint(resume, task)
    read_checkpoint(checkpoint, task)
    return checkpoint


def _already_done(plan: LaunchPlan) -> bool:
    """A run continued by --resume auto whose newest checkpoint is its last iteration."""
    if plan.end_iteration is None or plan.resume_from is None:
        return False
    return checkpoint_iteration(Path(plan.resume_from)) + 1 >= plan.end_iteration


def _result(plan: LaunchPlan, cfg: TrainConfig, ranks: tuple[RankResult, ...], wall_time_s: float) -> TrainResult:
    """The run's result; ``ranks`` is empty when nothing was left to train (a finished run under resume auto)."""
    main = ranks[0] if ranks else None
    run_dir = plan.run_dir_path
    exported = run_dir / EXPORT_DIR
    return TrainResult(
        task=plan.task,
        run_dir=run_dir,
        world_size=plan.world_size,
        devices=tuple(rank.device for rank in plan.ranks),
        hosts=plan.hosts,
        iterations=len(main.iterations) if main else 0,
        wall_time_s=wall_time_s,
        env_steps_per_s=_env_steps_per_s(main, cfg.agent.num_steps_per_env * cfg.env.num_envs * plan.world_size)
        if main
        else None,
        mean_reward=main.mean_reward if main else None,
        mean_episode_length=main.mean_episode_length if main else None,
        checkpoints=tuple(
            sorted((p for p in run_dir.iterdir() if CHECKPOINT_NAME.match(p.name)), key=checkpoint_iteration)
        )
        if run_dir.is_dir()  # under torchrun, rank 0's run directory may be on another node
        else (),
        exports=tuple(sorted(p for p in exported.rglob("*") if p.is_file() and not p.name.startswith(".")))
        if exported.is_dir()
        else (),
        parameter_digest=main.parameter_digest if main else "",
        ranks=ranks,
    )


def _env_steps_per_s(main: RankResult, steps_per_iteration: int) -> float | None:
    timed = main.iterations[1:] or main.iterations
    seconds = sum(timing.collect_s + timing.learn_s for timing in timed)
    return steps_per_iteration * len(timed) / seconds if timed and seconds > 0 else None
