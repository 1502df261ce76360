"""What ``scripts/gpu-check`` reads from its steps' outputs, and the one JSON summary it writes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PROGRESS = re.compile(r"iter +(\d+)/\d+ \| +([\d,]+) env-steps/s .*\| reward +(\S+) \| ep len +(\S+)")
BALANCING_LENGTH = 450
"""Mean episode length (of 500 at most) from which a cart-pole policy counts as balancing."""


@dataclass
class Outcome:
    """What one step did."""

    name: str
    returncode: int | None
    wall_s: float
    metrics: dict = field(default_factory=dict)
    tail: str = ""
    """The last lines of its output when it failed."""
    alongside: str | None = None
    """The background step that ran at the same time, if any (its numbers are then not measured alone)."""

    def ok(self) -> bool:
        # a background training stopped by SIGINT saves its checkpoint and exits with 130
        return self.returncode == 0 or (self.name == "train-quadruped" and self.returncode == 130)


def training_metrics(output: str) -> dict:
    """The last progress line of ``train``: iterations, env-steps/s, mean reward and episode length."""
    matches = PROGRESS.findall(output)
    if not matches:
        return {}
    iteration, rate, reward, length = matches[-1]
    return {
        "iterations": int(iteration),
        "env_steps_per_s": float(rate.replace(",", "")),
        "mean_reward": None if reward == "n/a" else float(reward),
        "mean_episode_length": None if length == "n/a" else float(length),
    }


def play_metrics(output: str) -> dict:
    """``play --json``'s summary (its last line that is a JSON object)."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def context_gpus(query_output: str, pids: set[int]) -> set[str]:
    """GPU UUIDs on which any of ``pids`` holds a CUDA context, from ``nvidia-smi --query-compute-apps=pid,gpu_uuid
    --format=csv,noheader``."""
    gpus = set()
    for line in query_output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in pids:
            gpus.add(parts[1])
    return gpus


def summarize(outcomes: list[Outcome], gpus: list[str]) -> dict:
    """The one JSON summary: the GPUs, every step's outcome and metrics, and whether all passed."""
    steps = {o.name: {"ok": o.ok(), "returncode": o.returncode, "wall_s": round(o.wall_s, 1), **o.metrics,
                      **({"alongside": o.alongside} if o.alongside else {}),
                      **({"tail": o.tail} if not o.ok() else {})} for o in outcomes}  # fmt: skip
    played = steps.get("play-cartpole", {})
    return {
        "gpus": gpus,
        "ok": all(o.ok() for o in outcomes),
        "cartpole_balances": bool((played.get("mean_episode_length") or 0) >= BALANCING_LENGTH),
        "steps": steps,
    }
