"""``play <task> [flags]``: roll out a trained policy (or a baseline) on one device and summarize its episodes."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mjdist.checkpoints import CheckpointError, latest_checkpoint, latest_run, read_checkpoint, resolve_checkpoint
from mjdist.cli.usage import UsageError, fail_usage, parse_task_command
from mjdist.envs.config import EnvConfig
from mjdist.launch.devices import DeviceSelectionError, check_gpus_exist, cuda_device_count, resolve_devices
from mjdist.play_config import PlayConfig
from mjdist.runs import check_writable
from mjdist.tasks import TaskSpec

if TYPE_CHECKING:
    from mjdist.evaluation import PlaySummary

log = logging.getLogger("mjdist.play")

PROG = "play"


@dataclass(frozen=True)
class PolicyCheckpoint:
    """A checkpoint that was read and checked, and the rsl_rl train_cfg that built its networks."""

    path: Path
    iteration: int
    train_cfg: dict


@dataclass(frozen=True)
class PlayPlan:
    """A checked `play` request: the environments, the budget, the device, and the checkpoint for a policy."""

    env: EnvConfig
    num_episodes: int | None
    num_steps: int | None
    device: str
    checkpoint: PolicyCheckpoint | None
    video: Path | None = None
    """Where the mp4 goes (None: no video)."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``play``."""
    try:
        spec, cfg = parse_task_command(PROG, argv, PlayConfig, lambda spec: PlayConfig(env=spec.play_env or spec.env))
    except UsageError as error:
        return fail_usage(PROG, str(error))
    try:
        plan = _plan(spec, cfg)
    except (ValueError, DeviceSelectionError, CheckpointError) as error:
        return fail_usage(PROG, str(error))
    if cfg.dry_run:
        print(json.dumps(_plan_json(spec, cfg, plan)))
        return 0
    if plan.video is not None:
        _choose_renderer(plan.device)
    try:
        summary = _play(spec, cfg, plan)
    except CheckpointError as error:
        return fail_usage(PROG, str(error))
    except KeyboardInterrupt:
        log.error("Interrupted.")
        return 130
    print(json.dumps(summary.to_json()) if cfg.json else summary.to_text())
    return 0


def _plan(spec: TaskSpec, cfg: PlayConfig) -> PlayPlan:
    """Check every flag, pick the device and read the checkpoint; raise a one-line error for bad input."""
    if cfg.num_envs is not None and cfg.num_envs < 1:
        raise ValueError(f"--num-envs must be at least 1, got {cfg.num_envs}")
    env = cfg.env if cfg.num_envs is None else dataclasses.replace(cfg.env, num_envs=cfg.num_envs)
    env.validate()
    num_episodes, num_steps = _budget(cfg, env.num_envs)
    _check_video_flags(cfg)
    device = _device(cfg)
    if cfg.agent != "policy":
        if cfg.checkpoint is not None or cfg.run is not None:
            raise ValueError(f"--agent {cfg.agent} plays without a checkpoint; drop --checkpoint and --run")
        video_dir = cfg.log_root / spec.agent.experiment_name / "videos" / "play"
        return PlayPlan(env, num_episodes, num_steps, device, None, _video_path(cfg, video_dir / f"{cfg.agent}.mp4"))
    try:
        path = _checkpoint_path(spec, cfg)
    except CheckpointError as error:
        if not cfg.dry_run:
            raise
        log.warning("%s (a real run would stop here)", error)
        return PlayPlan(env, num_episodes, num_steps, device, None)
    checkpoint = read_checkpoint(path, spec.name)
    train_cfg = checkpoint["infos"].get("train_cfg")
    if not isinstance(train_cfg, dict):
        raise CheckpointError(f"checkpoint {path} does not record the train_cfg that built its networks")
    policy = PolicyCheckpoint(path.absolute(), checkpoint["iter"], train_cfg)
    video = _video_path(cfg, policy.path.parent / "videos" / "play" / f"{path.stem}.mp4")
    return PlayPlan(env, num_episodes, num_steps, device, policy, video)


def _plan_json(spec: TaskSpec, cfg: PlayConfig, plan: PlayPlan) -> dict:
    """What ``--dry-run`` prints."""
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


def _choose_renderer(device: str) -> None:
    """Headless rendering: EGL on a GPU, OSMesa on the CPU, unless MUJOCO_GL says otherwise (read on mujoco import).

    Mesa's OSMesa and triton (imported by torch._dynamo, which tensordict imports) each carry their own LLVM, and
    triton's library crashes while loading if Mesa's came first; so triton, when installed, is loaded first.
    """
    os.environ.setdefault("MUJOCO_GL", "egl" if device.startswith("cuda") else "osmesa")
    if os.environ["MUJOCO_GL"] == "osmesa" and importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")


def _check_video_flags(cfg: PlayConfig) -> None:
    if cfg.video_length < 1:
        raise ValueError(f"--video-length must be at least 1 frame, got {cfg.video_length}")
    for flag, value in (("--video-width", cfg.video_width), ("--video-height", cfg.video_height)):
        if value < 16 or value % 2:
            raise ValueError(f"{flag} must be an even number of pixels, at least 16, got {value}")


def _video_path(cfg: PlayConfig, path: Path) -> Path | None:
    """The video's path when --video is given, after checking it can be written (nothing is created)."""
    if not cfg.video:
        return None
    check_writable(path.parent)
    return path.absolute()


def _budget(cfg: PlayConfig, num_envs: int) -> tuple[int | None, int | None]:
    """``(num_episodes, num_steps)`` with exactly one set; by default 2 episodes per environment."""
    if cfg.num_episodes is not None and cfg.num_steps is not None:
        raise ValueError("give --num-episodes or --num-steps, not both")
    for flag, value in (("--num-episodes", cfg.num_episodes), ("--num-steps", cfg.num_steps)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if cfg.num_steps is not None:
        return None, cfg.num_steps
    return (cfg.num_episodes or 2 * num_envs), None


def _device(cfg: PlayConfig) -> str:
    """The one torch/Warp device to play on: ``cuda:<index>`` or ``cpu``."""
    cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    device_count = cuda_device_count(cuda_visible_devices)
    selection = resolve_devices(
        gpu_ids=cfg.gpu_ids or None,
        cpu_workers=None,
        cuda_visible_devices=cuda_visible_devices,
        device_count=device_count,
        cpu_count=1,
    )
    if selection.world_size > 1:
        raise DeviceSelectionError(f"play runs on one device; give one GPU id (got --gpu-ids {' '.join(cfg.gpu_ids)})")
    if selection.kind == "cpu":
        return "cpu"
    if not cfg.dry_run:  # a dry run may plan for another machine, as train's does
        check_gpus_exist(cuda_visible_devices, device_count)
    return f"cuda:{selection.visible_indices[0]}"


def _checkpoint_path(spec: TaskSpec, cfg: PlayConfig) -> Path:
    """--checkpoint as given, the latest checkpoint of --run, or that of the newest run under --log-root."""
    if cfg.checkpoint is not None and cfg.run is not None:
        raise ValueError("give --checkpoint or --run, not both")
    if cfg.checkpoint is not None:
        return resolve_checkpoint(cfg.checkpoint)
    if cfg.run is not None:
        return latest_checkpoint(cfg.run)
    return latest_checkpoint(latest_run(cfg.log_root / spec.agent.experiment_name))


def _play(spec: TaskSpec, cfg: PlayConfig, plan: PlayPlan) -> PlaySummary:
    """Build the environments and the actor on the plan's device, roll out, and summarize."""
    import torch
    import warp as wp

    from mjdist.actors import baseline, load_policy
    from mjdist.envs.vec_env import RslRlVecEnv
    from mjdist.evaluation import PlaySummary, rollout

    wp.config.log_level = wp.LOG_WARNING
    if plan.device.startswith("cuda"):
        torch.cuda.set_device(plan.device)
    with wp.ScopedDevice(plan.device):
        vec_env = RslRlVecEnv(spec.load_env_class()(plan.env, device=plan.device, seed=cfg.seed))
        if plan.checkpoint is None:
            actor = baseline(cfg.agent, vec_env)
        else:
            actor = load_policy(vec_env, plan.checkpoint.path, plan.checkpoint.train_cfg, spec.name, plan.device)
            log.info("Loaded checkpoint %s (iteration %d)", plan.checkpoint.path, plan.checkpoint.iteration)
        if plan.video is not None:
            from mjdist.video import VideoSpec, record_video

            video = VideoSpec(plan.video, cfg.video_length, cfg.video_width, cfg.video_height, spec.video_camera)
            record_video(vec_env, actor, video)
            vec_env.env.reset()  # the evaluation starts from fresh episodes
        budget = f"{plan.num_episodes} episodes" if plan.num_steps is None else f"{plan.num_steps} steps"
        log.info("Playing %s (%s) on %s: %d envs, %s", spec.name, cfg.agent, plan.device, plan.env.num_envs, budget)
        episodes = rollout(vec_env, actor, plan.num_episodes, plan.num_steps)
    checkpoint = None if plan.checkpoint is None else str(plan.checkpoint.path)
    return PlaySummary.of(episodes, spec.name, cfg.agent, checkpoint, plan.env.num_envs)


def run() -> None:
    """``play`` console script."""
    sys.exit(main())
