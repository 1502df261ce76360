"""The report's PNG plots (matplotlib, Agg backend): throughput against num_envs, scaling efficiency against ranks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened

import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first
from matplotlib import ticker

Record = dict[str, Any]
Series = dict[str, list[tuple[float, dict[str, Any]]]]
"""Line label -> (x, metric stats) points."""
DPI = 120
FIGURE_SIZE = (7.0, 4.5)
STATISTICS = ("median", "min", "max")
"""The per-metric statistics a line of a plot draws: the median, with the min..max range as error bars."""


def throughput_plot(records: Sequence[Record], label: Callable[[Record], str], path: Path) -> None:
    """Env-steps/s per control step against num_envs (log-log): each physics engine, env.step and the rsl_rl
    adapter, with min..max bars over the repetitions."""
    series: Series = defaultdict(list)
    for record in records:
        metrics = record["metrics"]
        if record["benchmark"] == "physics":
            series[label(record)].append((record["config"]["num_envs"], metrics["control_steps_per_s"]))
        else:
            series[label(record)].append((record["config"]["num_envs"], metrics["env_steps_per_s"]))
            adapter = label(record).replace("env.step", "VecEnv.step")
            series[adapter].append((record["config"]["num_envs"], metrics["vec_env_steps_per_s"]))
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    _draw(axes, series)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({record["config"]["num_envs"] for record in records}))
    axes.xaxis.set_major_formatter(ticker.ScalarFormatter())
    axes.set_yscale("log")
    axes.set_xlabel("num_envs (worlds)")
    axes.set_ylabel("env-steps/s (worlds x control steps / s)")
    axes.set_title(f"{records[0]['task']}: throughput")
    _save(figure, axes, path)


def scaling_plot(records: Sequence[Record], label: Callable[[Record], str], path: Path) -> None:
    """Scaling efficiency (total / (ranks x one rank)) against the number of ranks, one line per task and device,
    and the same for as many independent runs at once (the machine's own limit) where they were measured."""
    jobs: Series = defaultdict(list)
    independent_runs: Series = defaultdict(list)
    for record in records:
        ranks, metrics = record["config"]["ranks"], record["metrics"]
        name = f"{record['task']}, {label(record)}, {record['config']['num_envs']} envs/rank"
        jobs[name].append((ranks, metrics["efficiency"]))
        independent = metrics.get("independent_speedup", dict.fromkeys(STATISTICS, 1.0))  # one run is itself
        independent_runs[f"{name}: as many independent runs"].append(
            (ranks, {key: independent[key] / ranks for key in STATISTICS})
        )
    figure, axes = plt.subplots(figsize=FIGURE_SIZE)
    _draw(axes, jobs)
    _draw(axes, independent_runs, linestyle="--")
    ranks = sorted({record["config"]["ranks"] for record in records})
    axes.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="ideal")
    axes.set_xticks(ranks)
    axes.set_ylim(bottom=0)
    axes.set_xlabel("ranks")
    axes.set_ylabel("efficiency: total env-steps/s / (ranks x one rank)")
    axes.set_title("Scaling efficiency")
    _save(figure, axes, path)


def _draw(axes: Any, series: Series, linestyle: str = "-") -> None:
    for name, points in sorted(series.items()):
        points.sort(key=lambda point: point[0])
        xs = [x for x, _ in points]
        medians = [stats["median"] for _, stats in points]
        below = [stats["median"] - stats["min"] for _, stats in points]
        above = [stats["max"] - stats["median"] for _, stats in points]
        axes.errorbar(xs, medians, yerr=[below, above], marker="o", capsize=3, linestyle=linestyle, label=name)


def _save(figure: Any, axes: Any, path: Path) -> None:
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
