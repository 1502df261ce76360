"""``mjdist.play``: roll out a trained policy (or a baseline) on one device and summarize its episodes; the
``play`` command parses its flags into the same PlayConfig and runs the same flow."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mjdist.checkpoints import (
    Checkpoint,
    CheckpointError,
    latest_run,
    newest_loadable_checkpoint,
    resolve_checkpoint,
    written_by_mjlab,
)
from mjdist.domains import check_fields
from mjdist.envs.config import EnvConfig
from mjdist.errors import ConfigError, UsageError
from mjdist.launch.devices import (
    DeviceRequest,
    DeviceSelection,
    DeviceSelectionError,
    GpuIds,
    check_gpus_exist,
    resolve_devices,
)
from mjdist.launch.hosts import LOCALHOST
from mjdist.launch.machine import read_machine
from mjdist.launch.plan import LaunchPlan, plan_ranks
from mjdist.overrides import resolve_config
from mjdist.play.config import PlayConfig
from mjdist.rendering import check_video_flags, choose_gl_backend
from mjdist.rl.config import SEED_MAX
from mjdist.runs import check_writable
from mjdist.tasks import TaskSpec, get_task

if TYPE_CHECKING:
    from mjdist.play.evaluation import PlaySummary

log = logging.getLogger("mjdist.play")


def play(
    task: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    run: str | os.PathLike[str] | None = None,
    log_root: str | os.PathLike[str] = "logs/rsl_rl",
    agent: Literal["policy", "random", "zero"] = "policy",
    env: EnvConfig | Mapping[str, Any] | None = None,
    num_envs: int | None = None,
    num_episodes: int | None = None,
    num_steps: int | None = None,
    gpu_ids: GpuIds = (),
    video: bool = False,
    video_length: int = 500,
    video_width: int = 640,
    video_height: int = 480,
    seed: int = 0,
) -> PlaySummary:
    """Roll out a trained policy (or a baseline) on ``task`` and summarize its episodes; the ``play`` command,
    as a function.

    Args:
        task: A registered task name.
        checkpoint: A ``model_<iteration>.pt`` to play.
        run: A run directory: play its latest checkpoint.
        log_root: Without ``checkpoint`` or ``run``: the newest run of the task under ``<log_root>/<experiment>``.
        agent: ``"policy"`` (the checkpoint's, deterministic), or the baselines ``"random"`` and ``"zero"``, which
            need no checkpoint.
        env: The task's play environment config, or a dict of overrides of it, or None for its default.
        num_envs: Environments to simulate (a shortcut for ``env={"num_envs": ...}``).
        num_episodes: Stop once this many episodes finished (default: 2 per environment).
        num_steps: Stop after this many control steps instead.
        gpu_ids: One GPU (an index into CUDA_VISIBLE_DEVICES), ``None`` for the CPU; default GPU 0, else the CPU.
        video: First record an mp4 of environment 0, into ``videos/play/`` next to the checkpoint (baselines:
            ``<log_root>/<experiment>/videos/play/``). Headless rendering is chosen through MUJOCO_GL, which
            mujoco reads when it is first imported: record in a process that has not imported it yet, or set
            MUJOCO_GL (``egl``, ``osmesa``) yourself. The choice is set only while playing: ``os.environ`` is left
            as it was.
        video_length: Frames to record, one per control step.
        video_width: Video width in pixels (even, at least 16).
        video_height: Video height in pixels (even, at least 16).
        seed: Seed of the environments' initial states (and of the random baseline's actions).

    Returns:
        The episodes' statistics, and the video's path when one was recorded.

    Raises:
        UsageError: Bad input (unknown task, bad value, several GPUs, no usable checkpoint: a CheckpointError);
            nothing was written.
    """
    spec = get_task(task)
    request = DeviceRequest.from_values(gpu_ids, None)
    cfg = PlayConfig(
        env=resolve_config(spec.play_env or spec.env, env, "env"),
        num_envs=num_envs,
        checkpoint=None if checkpoint is None else Path(checkpoint),
        run=None if run is None else Path(run),
        log_root=Path(log_root),
        agent=agent,
        num_episodes=num_episodes,
        num_steps=num_steps,
        video=video,
        video_length=video_length,
        video_width=video_width,
        video_height=video_height,
        seed=seed,
    )
    return run_play(spec, cfg, request)


def run_play(spec: TaskSpec, cfg: PlayConfig, request: DeviceRequest) -> PlaySummary:
    """Check the request, then build the environments and the actor, roll out and summarize."""
    plan = plan_play(spec, cfg, request)
    return _play(spec, cfg, plan)


@dataclass(frozen=True)
class PlayPlan:
    """A checked `play` request: the environments, the budget, the one rank that plays, and the checkpoint."""

    env: EnvConfig
    num_episodes: int | None
    num_steps: int | None
    rank: LaunchPlan
    """The one in-process rank: its device, seed and environment (the rendering choice)."""
    checkpoint: Checkpoint | None
    video: Path | None = None
    """Where the mp4 goes (None: no video)."""

    @property
    def device(self) -> str:
        """The torch/Warp device played on."""
        return self.rank.ranks[0].device


def plan_play(spec: TaskSpec, cfg: PlayConfig, request: DeviceRequest) -> PlayPlan:
    """Check every flag, pick the device and read the checkpoint; raise a one-line error for bad input."""
    if cfg.num_envs is not None and cfg.num_envs < 1:
        raise UsageError(f"--num-envs must be at least 1, got {cfg.num_envs}")
    env = cfg.env if cfg.num_envs is None else cfg.env.with_num_envs(cfg.num_envs)
    if cfg.video:
        spec.refuse("--video")
    if cfg.agent != "policy":
        spec.refuse(f"--agent {cfg.agent}")
    try:
        env.validate()
        check_fields(cfg, "", skip=("env",))  # env.validate() checks it
        if not 0 <= cfg.seed <= SEED_MAX:
            raise ValueError(f"--seed must be between 0 and {SEED_MAX}, got {cfg.seed}")
    except ValueError as error:
        raise ConfigError(str(error)) from None
    num_episodes, num_steps = _budget(cfg, env.num_envs)
    if cfg.video:
        try:
            check_video_flags(cfg.video_length, cfg.video_width, cfg.video_height)
        except ValueError as error:
            raise UsageError(str(error)) from None
    rank = _rank(cfg, request)
    checkpoint = None
    if cfg.agent != "policy":
        if cfg.checkpoint is not None or cfg.run is not None:
            raise UsageError(f"--agent {cfg.agent} plays without a checkpoint; drop --checkpoint and --run")
        video = _video_path(cfg, cfg.log_root / spec.agent.experiment_name / "videos" / "play" / f"{cfg.agent}.mp4")
    else:
        try:
            checkpoint = _checkpoint(spec, cfg)
        except CheckpointError as error:
            if not cfg.dry_run:
                raise
            log.warning("%s (a real run would stop here)", error)
            return PlayPlan(env, num_episodes, num_steps, rank, None)
        if checkpoint.train_cfg is None and written_by_mjlab(checkpoint.state["infos"]):
            checkpoint = dataclasses.replace(checkpoint, train_cfg=spec.agent.to_rsl_rl(""))  # the task's networks
        if checkpoint.train_cfg is None:
            raise CheckpointError(f"checkpoint {checkpoint.path} does not record the train_cfg that built its networks")
        video = _video_path(cfg, checkpoint.path.parent / "videos" / "play" / f"{checkpoint.path.stem}.mp4")
    if video is not None:  # last: the probes start processes (RenderingUnavailable names what to install)
        rendering = choose_gl_backend(rank.ranks[0].device, rank.rank_visible_devices)
        rank = dataclasses.replace(rank, rank_environment=tuple(sorted(rendering.items())))
    return PlayPlan(env, num_episodes, num_steps, rank, checkpoint, video)


def plan_json(spec: TaskSpec, cfg: PlayConfig, plan: PlayPlan) -> dict:
    """What ``play --dry-run`` prints."""
    return {
        "task": spec.name,
        "agent": cfg.agent,
        "device": plan.device,
        "num_envs": plan.env.num_envs,
        "num_episodes": plan.num_episodes,
        "num_steps": plan.num_steps,
        "checkpoint": None if plan.checkpoint is None else str(plan.checkpoint.path),
        "video": None if plan.video is None else str(plan.video),
    }


def _video_path(cfg: PlayConfig, path: Path) -> Path | None:
    """The video's path when --video is given, after checking it can be written (nothing is created)."""
    if not cfg.video:
        return None
    try:
        check_writable(path.parent)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return path.absolute()


def _budget(cfg: PlayConfig, num_envs: int) -> tuple[int | None, int | None]:
    """``(num_episodes, num_steps)`` with exactly one set; by default 2 episodes per environment."""
    if cfg.num_episodes is not None and cfg.num_steps is not None:
        raise UsageError("give --num-episodes or --num-steps, not both")
    for flag, value in (("--num-episodes", cfg.num_episodes), ("--num-steps", cfg.num_steps)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if cfg.num_steps is not None:
        return None, cfg.num_steps
    return (cfg.num_episodes or 2 * num_envs), None


def _rank(cfg: PlayConfig, request: DeviceRequest) -> LaunchPlan:
    """The one rank that plays, in this process: on ``cuda:<index>`` or the CPU, seeded with ``cfg.seed``."""
    machine = read_machine()
    selection: DeviceSelection = resolve_devices(request, machine)
    if selection.kind == "cuda" and not cfg.dry_run:  # a dry run may plan for another machine, as train's does
        check_gpus_exist(machine)
    if selection.world_size > 1:
        raise DeviceSelectionError(f"play runs on one device; give one GPU id (got {request.gpu_flag})")
    return plan_ranks("play", selection, (LOCALHOST,), cfg.seed, {})


def _checkpoint(spec: TaskSpec, cfg: PlayConfig) -> Checkpoint:
    """--checkpoint as given, the newest loadable checkpoint of --run, or that of the newest run under --log-root;
    read once, here."""
    if cfg.checkpoint is not None and cfg.run is not None:
        raise UsageError("give --checkpoint or --run, not both")
    if cfg.checkpoint is not None:
        return resolve_checkpoint(cfg.checkpoint, spec.name)
    if cfg.run is not None:
        return newest_loadable_checkpoint(cfg.run, spec.name)
    return newest_loadable_checkpoint(latest_run(cfg.log_root / spec.agent.experiment_name), spec.name)


def _play(spec: TaskSpec, cfg: PlayConfig, plan: PlayPlan) -> PlaySummary:
    """Build the environments and the actor on the plan's device, roll out, and summarize."""
    from mjdist.launch.bootstrap import enter_device
    from mjdist.launch.identity import RankIdentity

    # A rank of its own (also inside a rank of mjdist.launch), set up before mujoco is imported: the rendering
    # choice, triton first, the device
    with enter_device(plan.rank, RankIdentity()):
        return _play_on_device(spec, cfg, plan)


def _play_on_device(spec: TaskSpec, cfg: PlayConfig, plan: PlayPlan) -> PlaySummary:
    from mjdist.play.actors import baseline, load_policy
    from mjdist.play.evaluation import PlaySummary, rollout

    vec_env = spec.build_vec_env(plan.env, spec.agent, plan.device, cfg.seed)
    if plan.checkpoint is None:
        actor = baseline(cfg.agent, vec_env)
    else:
        actor = load_policy(vec_env, plan.checkpoint, plan.device)
        log.info("Loaded checkpoint %s (iteration %d)", plan.checkpoint.path, plan.checkpoint.iteration)
    if plan.video is not None:
        from mjdist.play.video import VideoSpec, record_video

        video = VideoSpec(plan.video, cfg.video_length, cfg.video_width, cfg.video_height, spec.video_camera)
        record_video(vec_env, actor, video)
        vec_env.env.reset()  # the evaluation starts from fresh episodes
    budget = f"{plan.num_episodes} episodes" if plan.num_steps is None else f"{plan.num_steps} steps"
    log.info("Playing %s (%s) on %s: %d envs, %s", spec.name, cfg.agent, plan.device, plan.env.num_envs, budget)
    episodes = rollout(vec_env, actor, plan.num_episodes, plan.num_steps)
    checkpoint = None if plan.checkpoint is None else str(plan.checkpoint.path)
    video_path = None if plan.video is None else str(plan.video)
    return PlaySummary.of(episodes, spec.name, cfg.agent, checkpoint, plan.env.num_envs, video_path)
