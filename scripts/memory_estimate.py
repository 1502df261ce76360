"""``uv run python scripts/memory_estimate.py``: the memory pre-flight's estimate against measured peak memory.

Repository tooling, not part of the package. For each ``--num-envs`` it trains ``--task`` for one iteration on the
CPU, in a fresh process (in-process, one rank, ``--agent.logger none``), and compares that process's peak resident
memory (``ru_maxrss``) with the estimate ``train --dry-run`` prints (``memory_per_rank_bytes``). It prints one line
per size and writes every number to ``--output`` as JSON. It measures memory, not time, so a busy machine does not
change its numbers; docs/reliability.md holds the last comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("memory_estimate")

TRAIN_ONE_ITERATION = """
import resource, sys, tempfile
import mjdist
with tempfile.TemporaryDirectory() as log_root:
    mjdist.train(sys.argv[1], env={"num_envs": int(sys.argv[2])}, agent={"max_iterations": 1, "logger": "none"},
                 gpu_ids=None, log_root=log_root)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def estimate(task: str, num_envs: int) -> int:
    """``memory_per_rank_bytes`` of ``train --dry-run`` on the CPU."""
    train = Path(sys.executable).with_name("train")  # the console script next to this interpreter
    command = [str(train), task, "--gpu-ids", "None", "--env.num-envs", str(num_envs), "--dry-run"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output)["memory_per_rank_bytes"]


def measure(task: str, num_envs: int) -> int:
    """Peak resident bytes of a process that trains one iteration."""
    command = [sys.executable, "-c", TRAIN_ONE_ITERATION, task, str(num_envs)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return int(output.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cartpole-balance")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1024, 16384, 65536])
    parser.add_argument("--output", type=Path, default=Path("bench-results/memory-estimate.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for num_envs in args.num_envs:
        estimated, measured = estimate(args.task, num_envs), measure(args.task, num_envs)
        rows.append({"num_envs": num_envs, "estimate_bytes": estimated, "peak_rss_bytes": measured,
                     "error": estimated / measured - 1})  # fmt: skip
        log.info("%s %7d envs: estimate %6.2f GB, peak RSS %6.2f GB (%+.1f %%)", args.task, num_envs,
                 estimated / 1e9, measured / 1e9, 100 * rows[-1]["error"])  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"task": args.task, "device": "cpu", "machine": platform.machine(), "python": platform.python_version(),
              "sizes": rows}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", dir=args.output.parent, delete=False) as partial:
        json.dump(record, partial, indent=2)
    Path(partial.name).replace(args.output)
    log.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
