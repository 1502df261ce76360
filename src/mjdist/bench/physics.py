"""The physics benchmark: a task's model stepped by bare MuJoCo-Warp (graph-captured or not) and by MuJoCo C.

Every engine starts all worlds from the model's default state with zero controls and keeps stepping from
where the previous repetition stopped. One unit of work is one control step (``decimation`` physics steps)
of every world; rates count worlds x steps per second.
"""

from __future__ import annotations

import logging
from typing import Any

import mujoco
import mujoco_warp as mjw
import numpy as np
import warp as wp
from mujoco import rollout

from mjdist.bench.config import BenchConfig
from mjdist.bench.records import Recorder
from mjdist.bench.timing import Timings, time_repetitions
from mjdist.envs.config import EnvConfig
from mjdist.launch.machine import read_machine
from mjdist.tasks import TaskSpec

ROLLOUT_STEPS_PER_CALL = 2**14
"""Worlds x physics steps that one mujoco.rollout call aims at: enough that its fixed cost (argument checks,
thread-pool dispatch) stays small, few enough that its recorded states stay small."""

log = logging.getLogger(__name__)


class WarpPhysics:
    """``num_envs`` MuJoCo-Warp worlds of a model on ``device``, advanced one control step at a time."""

    def __init__(self, mj_model: mujoco.MjModel, env: EnvConfig, num_envs: int, device: str, graph: bool) -> None:
        self.device = wp.get_device(device)
        self.decimation = env.decimation
        with wp.ScopedDevice(self.device):
            self.model = mjw.put_model(mj_model)
            self.data = mjw.put_data(
                mj_model, mujoco.MjData(mj_model), nworld=num_envs, nconmax=env.nconmax, njmax=env.njmax
            )
            mjw.step(self.model, self.data)  # compiles (or loads) every kernel before any capture
            self.graph = self._capture() if graph else None
        self.graph_capture = self.graph is not None
        """Whether the control step replays a captured graph (False when asked not to, or without a memory pool)."""

    def run(self, control_steps: int) -> None:
        """Advance every world ``control_steps`` control steps and wait until the device is done."""
        with wp.ScopedDevice(self.device):
            for _ in range(control_steps):
                if self.graph is not None:
                    wp.capture_launch(self.graph)
                else:
                    self._control_step()
            wp.synchronize_device(self.device)

    def _control_step(self) -> None:
        for _ in range(self.decimation):
            mjw.step(self.model, self.data)

    def _capture(self) -> wp.Graph | None:
        """The control step as a Warp graph; None (with a warning) on a GPU without Warp's memory pool, where
        mjw.step's allocations would fail the capture (as in the env's core)."""
        if self.device.is_cuda and not wp.is_mempool_enabled(self.device):
            log.warning("%s has no CUDA memory pool for Warp: measuring physics without graph capture", self.device)
            return None
        wp.synchronize_device(self.device)
        with wp.ScopedCapture() as capture:
            self._control_step()
        return capture.graph


class RolloutPhysics:
    """The same worlds under MuJoCo C's ``mujoco.rollout`` on ``threads`` threads (1: the calling thread).

    One call advances every world by ``control_steps_per_call`` control steps (about ROLLOUT_STEPS_PER_CALL
    world-steps in all); the next call starts from the states the previous one ended in.
    """

    def __init__(self, mj_model: mujoco.MjModel, decimation: int, num_envs: int, threads: int) -> None:
        self.model = mj_model
        self.data = [mujoco.MjData(mj_model) for _ in range(threads)]
        self.pool = rollout.Rollout(nthread=0 if threads == 1 else threads)
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        state_size = mujoco.mj_stateSize(mj_model, spec)
        self.initial_state = np.empty((num_envs, state_size))
        mujoco.mj_getState(mj_model, self.data[0], self.initial_state[0], spec)
        self.initial_state[1:] = self.initial_state[0]
        self.control_steps_per_call = max(1, ROLLOUT_STEPS_PER_CALL // (num_envs * decimation))
        nstep = self.control_steps_per_call * decimation
        self.states = np.empty((num_envs, nstep, state_size))
        self.sensordata = np.empty((num_envs, nstep, mj_model.nsensordata))

    def __enter__(self) -> RolloutPhysics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.pool.close()

    def run(self, calls: int) -> None:
        """Make ``calls`` rollout calls, each continuing from the previous call's final states."""
        for _ in range(calls):
            self.pool.rollout(
                self.model,
                self.data,
                self.initial_state,
                nstep=self.states.shape[1],
                state=self.states,
                sensordata=self.sensordata,
            )
            self.initial_state[:] = self.states[:, -1]


def run_physics(spec: TaskSpec, cfg: BenchConfig, device: str, record: Recorder) -> None:
    """One record per (engine, num_envs): MuJoCo-Warp per graph-capture setting, then MuJoCo C per thread count."""
    mj_model = mujoco.MjModel.from_xml_path(str(spec.load_env_class().model_file))
    decimation = spec.env.decimation
    for num_envs in cfg.num_envs:
        for graph in cfg.physics.graph_capture:
            warp = WarpPhysics(mj_model, spec.env, num_envs, device, graph)
            timings = time_repetitions(warp.run, cfg.duration, cfg.repetitions)
            engine = {"engine": "mujoco_warp", "device": device, "graph_capture": warp.graph_capture, "threads": None}
            record(
                "physics", _config(engine, num_envs, decimation, timings.units), _metrics(timings, num_envs, decimation)
            )
        for threads in rollout_threads() if cfg.physics.rollout else ():
            with RolloutPhysics(mj_model, decimation, num_envs, threads) as mujoco_c:
                timings = time_repetitions(mujoco_c.run, cfg.duration, cfg.repetitions)
            per_call = mujoco_c.control_steps_per_call
            engine = {"engine": "mujoco_c", "device": "cpu", "graph_capture": None, "threads": threads}
            config = _config(engine, num_envs, decimation, timings.units * per_call)
            record("physics", config, _metrics(timings, num_envs * per_call, decimation))


def rollout_threads() -> tuple[int, ...]:
    """MuJoCo C thread counts: 1, and every usable core when there is more than one."""
    cores = read_machine().usable_cores
    return (1, cores) if cores > 1 else (1,)


def _config(engine: dict[str, Any], num_envs: int, decimation: int, control_steps: int) -> dict[str, Any]:
    return {**engine, "num_envs": num_envs, "decimation": decimation, "control_steps_per_repetition": control_steps}


def _metrics(timings: Timings, world_steps_per_unit: int, decimation: int) -> dict[str, list[float]]:
    """Worlds x physics steps per second, and the same per control step (comparable with the env benchmark)."""
    control = timings.rates(world_steps_per_unit)
    return {"physics_steps_per_s": [rate * decimation for rate in control], "control_steps_per_s": control}
