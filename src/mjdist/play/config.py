"""The `play` command's configuration: what acts, in which environments, for how long, on which device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from mjdist.envs.config import EnvConfig


@dataclass(frozen=True)
class PlayConfig:
    """Roll out a trained policy (or a baseline) on a task and report its episode returns and lengths."""

    env: EnvConfig
    """Environment (the task's play defaults; every field can be overridden)."""
    num_envs: int | None = None
    """Environments to simulate; a shortcut that overrides --env.num-envs."""
    checkpoint: Path | None = None
    """A model_<iteration>.pt checkpoint to play."""
    run: Path | None = None
    """A run directory: play its latest checkpoint."""
    log_root: Path = Path("logs/rsl_rl")
    """Without --checkpoint or --run: play the latest checkpoint of the newest run of this task under
    <log-root>/<experiment-name>/."""
    agent: Literal["policy", "random", "zero"] = "policy"
    """What acts: the trained policy (deterministic), uniform random actions, or all-zero actions.
    The baselines need no checkpoint."""
    num_episodes: int | None = None
    """Stop once this many episodes have finished, over all environments (default: 2 x the number of envs)."""
    num_steps: int | None = None
    """Stop after this many control steps instead; cannot be combined with --num-episodes."""
    json: bool = False
    """Print the summary as one JSON object on stdout, and nothing else there."""
    gpu_ids: Annotated[
        tuple[str, ...], tyro.conf.arg(metavar="ID|None", help_behavior_hint="(default: GPU 0, else CPU)")
    ] = ()
    """One GPU as an index into CUDA_VISIBLE_DEVICES, or 'None' for the CPU."""
    video: bool = False
    """Record an mp4 of environment 0 (headless: EGL on a GPU, OSMesa on the CPU) before the evaluation, into
    videos/play/ next to the checkpoint (for baselines: <log-root>/<experiment-name>/videos/play/)."""
    video_length: int = 500
    """Frames to record, one per control step."""
    video_width: int = 640
    """Video width in pixels (even)."""
    video_height: int = 480
    """Video height in pixels (even)."""
    seed: int = 0
    """Seed of the environments' random initial states (and of the random baseline's actions)."""
    dry_run: bool = False
    """Check the flags and print what would be played as one JSON object, starting and writing nothing. A
    checkpoint that does not exist yet (a run still to come) is printed as null, with the reason on stderr."""
