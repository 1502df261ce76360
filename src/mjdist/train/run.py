"""``mjdist.train``: a task's configs with the caller's overrides, the devices, the run, training on every rank,
and what came of it. The ``train`` command parses its flags into the same TrainConfig and runs the same flow.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mjdist.checkpoints import list_checkpoints
from mjdist.errors import RankFailedError, TrainingFailure, UsageError
from mjdist.launch.devices import DeviceRequest, GpuIds
from mjdist.launch.machine import read_machine
from mjdist.overrides import resolve_config
from mjdist.rl.metrics import env_steps_per_s
from mjdist.run_lock import hold_run_dir
from mjdist.runs import list_exports
from mjdist.tasks import TaskSpec, get_task
from mjdist.train.config import TrainConfig
from mjdist.train.plan import TrainPlan, plan_training
from mjdist.train.requeue import AUTO
from mjdist.train.restarts import next_iteration, train_with_restarts
from mjdist.train.result import RankResult, TrainResult
from mjdist.train.summary import summary_on_exit

if TYPE_CHECKING:
    from mjdist.envs.config import EnvConfig
    from mjdist.rl.config import AgentConfig

log = logging.getLogger("mjdist.train")

INTERRUPTED_AFTER_ITERATION = "every rank stopped after its current iteration, which rank 0 saved"


def train(
    task: str,
    *,
    env: EnvConfig | Mapping[str, Any] | None = None,
    agent: AgentConfig | Mapping[str, Any] | None = None,
    gpu_ids: GpuIds = (),
    cpu_workers: int | str | None = None,
    hosts: str | Sequence[str] = (),
    ssh_config: str | os.PathLike[str] | None = None,
    host_check: bool = True,
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
        host_check: Check ``hosts`` before launching: each resolves and accepts a non-interactive SSH login that
            runs this Python, in this working directory, with mjdist importable (False skips it).
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
    request = DeviceRequest.from_values(gpu_ids, cpu_workers)
    cfg = TrainConfig(
        env=resolve_config(spec.env, env, "env"),
        agent=resolve_config(spec.agent, agent, "agent"),
        log_root=Path(log_root),
        run_name=run_name,
        hosts=(hosts,) if isinstance(hosts, str) else tuple(hosts),
        ssh_config=None if ssh_config is None else Path(ssh_config),
        host_check=host_check,
        torchrunx_log_dir=torchrunx_log_dir,
        resume=None if resume is None else Path(resume),
        max_restarts=max_restarts,
        timeout=timeout,
        oversubscribe=oversubscribe,
    )
    return run_training(spec, cfg, request)


def plan_run(spec: TaskSpec, cfg: TrainConfig, request: DeviceRequest) -> TrainPlan:
    """The run's plan on this machine, now (see :func:`mjdist.train.plan.plan_training`)."""
    return plan_training(spec, cfg, request, read_machine(), os.environ, datetime.datetime.now())


def run_training(spec: TaskSpec, cfg: TrainConfig, request: DeviceRequest) -> TrainResult:
    """Plan the run, train on every rank (restarted up to ``cfg.max_restarts`` times), check that the ranks agree,
    and collect the result."""
    plan = plan_run(spec, cfg, request)
    with _run_held(plan):
        if cfg.resume == AUTO and plan.launch.launcher != "environment" and _moved_on(plan):
            # its last job saved again while this one was planning (rank mode agrees on its start after the join)
            plan = plan_run(spec, cfg, request)
        if cfg.resume == AUTO and plan.resume_from is not None:
            log.info("Continuing run %s from %s (--resume auto)", plan.run_dir, Path(plan.resume_from).name)
        with _whole_job(plan, cfg) as job:
            if _already_done(job):
                log.info("Run %s already did its %d iterations; nothing to do", job.run_dir, job.end_iteration)
                return _result(job, cfg, (), 0.0)
            return _train(spec, cfg, job)


def _run_held(plan: TrainPlan) -> contextlib.AbstractContextManager[None]:
    """The run directory, locked for the job by the process that writes it: the launching process (whose ranks are
    its children), or in rank mode global rank 0. Another job holding it is refused (a RunInUseError)."""
    if plan.launch.launcher == "environment" and plan.launch.ranks[0].rank != 0:
        return contextlib.nullcontext()
    return hold_run_dir(plan.run_dir_path)


def _moved_on(plan: TrainPlan) -> bool:
    """Whether the run's newest checkpoint is no longer the one the plan continues from."""
    checkpoints = list_checkpoints(plan.run_dir_path)
    newest = str(checkpoints[-1].absolute()) if checkpoints else None
    return newest != (str(Path(plan.resume_from).absolute()) if plan.resume_from is not None else None)


def _whole_job(plan: TrainPlan, cfg: TrainConfig) -> contextlib.AbstractContextManager[TrainPlan]:
    """The plan of every rank: in rank mode, this process joins its scheduler's job and learns the other ranks'
    plans, rank 0's run directory and the start point they agree on; otherwise the plan already is the whole
    job's."""
    if plan.launch.launcher == "environment":
        from mjdist.train.rank_mode import scheduler_job

        return scheduler_job(plan, cfg)
    return contextlib.nullcontext(plan)


def _train(spec: TaskSpec, cfg: TrainConfig, plan: TrainPlan) -> TrainResult:
    launch = plan.launch
    ranks = ", ".join(f"{r.rank}:{r.device}" for r in launch.ranks)
    log.info("Training %s on %d rank(s) [%s]; run directory: %s", plan.task, launch.world_size, ranks, plan.run_dir)
    start = time.perf_counter()
    with summary_on_exit(plan) as run_end:  # summary.json however the run ends (an exception marks it failed)
        results = train_with_restarts(plan, cfg, spec, train_on_ranks)
        wall_time_s = time.perf_counter() - start
        check_ranks_agree(results, launch.world_size)
        run_end.finished([result.parameter_digest for result in results])
    if launch.world_size > 1:
        log.info(
            "All %d ranks ended with identical parameters (sha256 %s)",
            launch.world_size,
            results[0].parameter_digest[:12],
        )
    log.info("Done: %d iterations; checkpoints, configs and logs in %s", len(results[0].iterations), plan.run_dir)
    return _result(plan, cfg, tuple(results), wall_time_s)


def check_ranks_agree(results: Sequence[RankResult], world_size: int) -> None:
    """Every rank reported, in rank order, with the same parameters; a RankFailedError otherwise."""
    reported = [result.rank for result in results]
    if reported != list(range(world_size)):
        raise RankFailedError(f"{world_size} ranks trained, but the results of ranks {reported} came back")
    digests = {result.parameter_digest for result in results}
    if len(digests) > 1:
        raise RankFailedError(f"ranks ended with different parameters; gradient averaging is broken: {sorted(digests)}")


def train_on_ranks(plan: TrainPlan, cfg: TrainConfig, spec: TaskSpec) -> list[RankResult]:
    """Train on every rank of a plan already made and checked, once; the ranks' results in rank order.

    A failure during training is a RankFailedError naming its cause (in this process too, so that restarts
    see every failure alike); a checkpoint that does not fit, found while the ranks load it, stays a
    CheckpointError (a UsageError). Under torchrun-style variables this process is one rank of a job its
    scheduler started, and a failure ends the process at once (the scheduler stops the others).
    """
    if plan.launch.launcher == "environment":  # torchrun, OSMO or Kubernetes started this process as one rank
        from mjdist.train.rank_mode import train_as_rank

        return train_as_rank(plan, cfg, spec)
    from mjdist.launch.launcher import run_ranks
    from mjdist.launch.worker import first_line

    try:  # the rank function is imported in each rank, once it is set up (mujoco reads MUJOCO_GL on import)
        return run_ranks(plan.launch, "mjdist.train.rank:train_rank", plan, cfg, spec,
                         stopped=INTERRUPTED_AFTER_ITERATION, timeout_s=cfg.timeout)  # fmt: skip
    except (UsageError, RankFailedError, KeyboardInterrupt):
        raise
    except TrainingFailure as failure:  # raised in this process (one rank): its message says it all
        raise RankFailedError(f"{type(failure).__name__}: {failure}", 0) from failure
    except Exception as error:
        log.error("Training raised:", exc_info=True)
        raise RankFailedError(f"{type(error).__name__}: {first_line(error)}", 0) from error


def _already_done(plan: TrainPlan) -> bool:
    """A run continued by --resume auto whose newest checkpoint is its last iteration."""
    return (
        plan.end_iteration is not None and plan.resume_from is not None and next_iteration(plan) >= plan.end_iteration
    )


def _result(plan: TrainPlan, cfg: TrainConfig, ranks: tuple[RankResult, ...], wall_time_s: float) -> TrainResult:
    """The run's result; ``ranks`` is empty when nothing was left to train (a finished run under resume auto).
    Under torchrun, rank 0's run directory may be on another node: then no checkpoints or exports are listed."""
    main = ranks[0] if ranks else None
    launch = plan.launch
    steps_per_iteration = cfg.agent.num_steps_per_env * cfg.env.num_envs * launch.world_size
    return TrainResult(
        task=plan.task,
        run_dir=plan.run_dir_path,
        world_size=launch.world_size,
        devices=tuple(rank.device for rank in launch.ranks),
        hosts=launch.hosts,
        iterations=len(main.iterations) if main else 0,
        wall_time_s=wall_time_s,
        env_steps_per_s=env_steps_per_s(main.iterations, steps_per_iteration) if main else None,
        mean_reward=main.mean_reward if main else None,
        mean_episode_length=main.mean_episode_length if main else None,
        checkpoints=tuple(list_checkpoints(plan.run_dir_path)),
        exports=tuple(list_exports(plan.run_dir_path)),
        parameter_digest=main.parameter_digest if main else "",
        ranks=ranks,
    )
