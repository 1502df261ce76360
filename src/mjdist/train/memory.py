"""The memory pre-flight: what one rank of a training run needs, against what this machine has free.

A rank holds a runtime (Python, torch, Warp, MuJoCo and their kernels), the networks with their gradients and
Adam's moments, and, for each of its ``num_envs`` worlds, the simulation state, the rollout storage and its share
of a mini-batch's activations during the PPO update. The sizes come from the task's MuJoCo model (nq, nv, nu,
nbody, ngeom, nsensordata, nconmax, njmax) and the configs; the per-item byte counts below are those of
MuJoCo-Warp 4.0 and rsl_rl 5.5, and docs/reliability.md compares the estimate with measured peak memory.
``scripts/memory_estimate.py`` measures it again.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from mjdist.envs.config import EnvConfig
from mjdist.errors import ConfigError
from mjdist.launch.hosts import LOCALHOST
from mjdist.launch.machine import Machine, free_gpu_memory
from mjdist.launch.plan import LaunchPlan
from mjdist.rl.config import AgentConfig, ModelConfig

log = logging.getLogger("mjdist.train")

FLOAT = 4
"""Bytes of a float32 (every tensor of the simulation and the learner)."""
CPU_RUNTIME_BYTES = 1_100_000_000
"""Resident memory of a CPU rank before its first world: the interpreter with torch, Warp, MuJoCo-Warp, rsl_rl
and the compiled kernels (measured at ``--env.num-envs 1``)."""
GPU_RUNTIME_BYTES = 600_000_000
"""Device memory of a GPU rank before its first world: torch's CUDA context and allocator, Warp's kernels."""
CONTACT_BYTES = 168
"""MuJoCo-Warp's state of one contact slot."""
CONSTRAINT_ROW_BYTES = 69
"""MuJoCo-Warp's state of one constraint row, besides its Jacobian row (nv floats, padded to 4)."""
ACTIVATION_FLOATS = 3.0
"""Floats kept per hidden unit and sample during a PPO update (layer outputs, activations and their gradients);
fitted to the peak memory of quadruped updates with 1 and 6 samples per world in a mini-batch."""
STEP_FLOATS_PER_OBSERVATION = 8
"""Floats per observation entry, world and rollout step beyond what the rollout stores: what the allocator keeps
of each step's temporaries (observation groups, normalized copies, noise). Fitted, not derived: it makes the
estimate of both bundled tasks agree with their measured peak memory (docs/reliability.md)."""


@dataclass(frozen=True)
class ModelSizes:
    """The sizes of a task's MuJoCo model that set its memory."""

    nq: int
    nv: int
    nu: int
    nbody: int
    ngeom: int
    nsensordata: int
    nconmax: int
    """Contact slots per world: the config's, else MuJoCo-Warp's default for this model."""
    njmax: int
    """Constraint rows per world: the config's, else MuJoCo-Warp's default for this model."""

    @property
    def observation_width(self) -> int:
        """An observation's width, as tasks build them: positions, velocities, the last action, the sensors."""
        return self.nq + self.nv + self.nu + self.nsensordata


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one rank needs: a fixed part and a part per world (``--env.num-envs``)."""

    fixed_bytes: int
    """Runtime, networks and optimizer."""
    per_env_bytes: int
    """Simulation state, rollout storage and update activations of one world."""
    num_envs: int
    """The worlds the run asks for."""
    num_steps_per_env: int
    """The rollout's length."""

    @property
    def rank_bytes(self) -> int:
        """What one rank of the run needs."""
        return self.fixed_bytes + self.num_envs * self.per_env_bytes

    def max_num_envs(self, available_per_rank: int) -> int:
        """The most worlds a rank can have in ``available_per_rank`` bytes (0 if not even the fixed part fits)."""
        return max((available_per_rank - self.fixed_bytes) // self.per_env_bytes, 0)


def estimate_rank_memory(model_file: Path, env: EnvConfig, agent: AgentConfig, on_gpu: bool) -> MemoryEstimate | None:
    """What one rank training ``env`` with ``agent`` needs, in host memory (CPU) or device memory (GPU); None when
    the model's sizes cannot be read."""
    sizes = model_sizes(model_file, env.nconmax, env.njmax)
    if sizes is None:
        return None
    width = sizes.observation_width
    sample_floats = 2 * width + 3 * sizes.nu + 6  # both observations, action, mean, std, and 6 scalars
    hidden = sum(agent.actor.hidden_dims) + sum(agent.critic.hidden_dims)
    samples_per_mini_batch = math.ceil(agent.num_steps_per_env / agent.algorithm.num_mini_batches)
    per_env = (
        simulation_bytes(sizes)
        + agent.num_steps_per_env * (sample_floats + STEP_FLOATS_PER_OBSERVATION * width) * FLOAT
        + samples_per_mini_batch * (ACTIVATION_FLOATS * hidden + sample_floats) * FLOAT
    )
    parameters = _parameters(width, sizes.nu, agent.actor) + _parameters(width, 1, agent.critic)
    fixed = (GPU_RUNTIME_BYTES if on_gpu else CPU_RUNTIME_BYTES) + 4 * parameters * FLOAT  # + gradients, moments
    return MemoryEstimate(int(fixed), math.ceil(per_env), env.num_envs, agent.num_steps_per_env)


def simulation_bytes(sizes: ModelSizes) -> int:
    """MuJoCo-Warp's state of one world: contacts, constraint rows, and what grows with the model."""
    nv_padded = -(-sizes.nv // 4) * 4
    return (
        CONTACT_BYTES * sizes.nconmax
        + (CONSTRAINT_ROW_BYTES + FLOAT * nv_padded) * sizes.njmax
        + 3 * FLOAT * sizes.nv**2  # mass matrix and its factors
        + 166 * (sizes.nbody + sizes.ngeom + sizes.nq + sizes.nv)  # poses, inertias, velocities per body and geom
    )


def _parameters(inputs: int, outputs: int, model: ModelConfig) -> int:
    widths = (inputs, *model.hidden_dims, outputs)
    return sum((a + 1) * b for a, b in itertools.pairwise(widths))


def model_sizes(model_file: Path, nconmax: int | None, njmax: int | None) -> ModelSizes | None:
    """The sizes of the MJCF model in ``model_file``, with MuJoCo-Warp's defaults for what the config leaves out;
    None if they cannot be read."""
    sizes = read_model(str(model_file))
    if sizes is None:
        return None
    default_nconmax, default_njmax = default_contact_sizes(sizes)
    return ModelSizes(sizes["nq"], sizes["nv"], sizes["nu"], sizes["nbody"], sizes["ngeom"], sizes["nsensordata"],
                      nconmax or default_nconmax, njmax or default_njmax)  # fmt: skip


READ_MODEL = """
import json, sys
import mujoco
model = mujoco.MjModel.from_xml_path(sys.argv[1])
sizes = {name: int(getattr(model, name)) for name in ("nq", "nv", "nu", "nbody", "ngeom", "nsensordata", "nflex",
                                                      "nhfield")}
print(json.dumps({**sizes, "sdf": bool((model.geom_type == mujoco.mjtGeom.mjGEOM_SDF).any())}))
"""
"""Reads a model's sizes in another process: MuJoCo reads MUJOCO_GL once, on import, and the ranks (this process,
for a single rank) must import it only after they chose their rendering backend."""


@cache
def read_model(model_file: str) -> dict[str, int] | None:
    """The sizes of an MJCF model (nq, nv, nu, nbody, ngeom, nsensordata, nflex, nhfield, and sdf: any SDF geom);
    None, with a warning, when no process can read them (the ranks will report a broken model themselves)."""
    environ = {**os.environ, "MUJOCO_GL": "disable"}
    try:
        read = subprocess.run([sys.executable, "-c", READ_MODEL, model_file], env=environ, capture_output=True,
                              text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as error:
        reason = (getattr(error, "stderr", None) or str(error)).strip().splitlines()[-1]
        log.warning("No memory estimate: cannot read the sizes of %s (%s); the memory check is skipped",
                    model_file, reason)  # fmt: skip
        return None
    return json.loads(read.stdout)


def default_contact_sizes(sizes: dict[str, int]) -> tuple[int, int]:
    """``(nconmax, njmax)``: MuJoCo-Warp 4.0's guesses for a model (``put_data`` without them), computed here so
    that planning need not import MuJoCo-Warp; tests/test_memory.py checks them against it."""
    flex, hfield, sdf = sizes["nflex"] > 0, sizes["nhfield"] > 0, sizes["sdf"]
    nconmax = max(sizes["nv"] * 0.35 * hfield * 10 + 45, 256 * flex, 64 * sdf)
    njmax = max(sizes["nv"] * 2.26 * hfield * 18 + 53, 512 * flex, 256 * sdf)
    return _rounded_up(nconmax), _rounded_up(njmax)


def _rounded_up(size: float) -> int:
    """The next of MuJoCo-Warp's sizes 16, 24, 32, 48, 64, ... 8192 (beyond 8192: the size itself)."""
    sizes = [(2 + i % 2) * 2 ** (i // 2 + 3) for i in range(19)]
    return int(next((s for s in sizes if s >= size), size))


def check_fits(estimate: MemoryEstimate, ranks: int, available: int, where: str) -> None:
    """A ConfigError unless ``ranks`` ranks of ``estimate`` fit in the ``available`` bytes of ``where`` (this
    machine's memory, or one GPU's)."""
    needed = ranks * estimate.rank_bytes
    if needed <= available:
        return
    fits = estimate.max_num_envs(available // ranks)
    per_rank = f" ({_gb(needed)} for {ranks} ranks)" if ranks > 1 else ""
    advice = (
        f"use --env.num-envs {fits} or fewer"
        if fits
        else "not even --env.num-envs 1 fits: lower --agent.num-steps-per-env or the hidden layer sizes"
    )
    raise ConfigError(
        f"--env.num-envs {estimate.num_envs} x --agent.num-steps-per-env {estimate.num_steps_per_env} needs about "
        f"{_gb(estimate.rank_bytes)} per rank{per_rank}, but {where} has {_gb(available)} free; {advice}, or add "
        "--skip-memory-check to start anyway"
    )


def _gb(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


def check_memory(launch: LaunchPlan, estimate: MemoryEstimate, machine: Machine) -> None:
    """A ConfigError unless the ranks that run on this machine fit: CPU ranks together in its available memory,
    each GPU rank in its GPU's free memory. Ranks on other hosts are not checked."""
    here = [rank for rank in launch.ranks if rank.host in {LOCALHOST, socket.gethostname()}]
    gpus = [rank.physical_gpu for rank in here if rank.physical_gpu is not None]
    cpu_ranks = len(here) - len(gpus)
    if cpu_ranks and machine.available_memory is not None:
        check_fits(estimate, cpu_ranks, machine.available_memory, "this machine")
    for gpu, free in zip(gpus, free_gpu_memory(tuple(gpus)) if gpus else (), strict=False):
        check_fits(estimate, 1, free, f"GPU {gpu}")
