"""A cart-pole task whose environment fails on purpose, for the fault tests.

``MJDIST_TEST_FAULT="<mode>:<rank>:<step>"`` makes that rank, at that control step (counted from the
environment's creation):
- ``raise``: raise InjectedFault; ``kill``: SIGKILL itself; ``sleep``: sleep forever (a hang);
- ``nan``: write NaN into the joint velocities of worlds 0-2 (their physics then diverges);
- ``startup``: raise while its environment is built (step is ignored).
Before the fault it writes the time to ``MJDIST_TEST_FAULT_STAMP`` (a file path) when that is set. With
``MJDIST_TEST_FAULT_ONCE`` (a file path) the fault happens only if that file does not exist yet, and creates it,
so a restarted run does not fail again.
The launcher process and the workers import this module from ``tests/helpers`` (on PYTHONPATH).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch
from mjdist_tasks.cartpole import BALANCE
from mjdist_tasks.cartpole.env import CartpoleEnv

from mjdist.tasks import TaskSpec

FAULT_VARIABLE = "MJDIST_TEST_FAULT"
STAMP_VARIABLE = "MJDIST_TEST_FAULT_STAMP"
ONCE_VARIABLE = "MJDIST_TEST_FAULT_ONCE"
NAN_WORLDS = 3
"""Worlds that get NaN velocities in the ``nan`` fault."""


class InjectedFault(RuntimeError):
    """The error a faulty rank raises."""


class FaultyCartpoleEnv(CartpoleEnv):
    """Cart-pole that fails on a chosen rank: while it is built, or at a chosen step."""

    def __init__(self, *args, **kwargs) -> None:
        self.steps_taken = 0
        if _fault_now("startup", 0):
            raise InjectedFault("injected start-up fault")
        super().__init__(*args, **kwargs)

    def step(self, actions: torch.Tensor):
        self.steps_taken += 1
        if _fault_now("raise", self.steps_taken):
            raise InjectedFault(f"injected fault at step {self.steps_taken}")
        if _fault_now("kill", self.steps_taken):
            os.kill(os.getpid(), signal.SIGKILL)
        if _fault_now("sleep", self.steps_taken):
            while True:
                time.sleep(60)
        if _fault_now("nan", self.steps_taken):
            self.qvel[:NAN_WORLDS] = float("nan")
        return super().step(actions)


def _fault_now(mode: str, step: int) -> bool:
    """Whether the configured fault is ``mode`` on this rank at ``step``; stamps the time if so."""
    fault_mode, rank, fault_step = os.environ.get(FAULT_VARIABLE, "none:-1:0").split(":")
    due = fault_mode == mode and int(os.environ.get("RANK", "0")) == int(rank) and step == int(fault_step)
    if due and ONCE_VARIABLE in os.environ:
        once = Path(os.environ[ONCE_VARIABLE])
        if once.exists():
            return False
        once.write_text(str(time.time()))
    if due and STAMP_VARIABLE in os.environ:
        Path(os.environ[STAMP_VARIABLE]).write_text(str(time.time()))
    return due


FAULTY = TaskSpec(
    name="faulty-cartpole", env_class="faulty_task:FaultyCartpoleEnv", env=BALANCE.env, agent=BALANCE.agent
)
