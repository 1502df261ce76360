"""A cart-pole task whose environment fails on purpose, for the fault tests.

``MJDIST_TEST_FAULT="<raise|kill|startup>:<rank>:<step>"`` makes that rank raise, or SIGKILL itself, at that
control step, or raise while its environment is built ("startup"), after writing the time of the fault to
``MJDIST_TEST_FAULT_STAMP`` (a file path) when that is set.
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
        return super().step(actions)


def _fault_now(mode: str, step: int) -> bool:
    """Whether the configured fault is ``mode`` on this rank at ``step``; stamps the time if so."""
    fault_mode, rank, fault_step = os.environ.get(FAULT_VARIABLE, "none:-1:0").split(":")
    due = fault_mode == mode and int(os.environ.get("RANK", "0")) == int(rank) and step == int(fault_step)
    if due and STAMP_VARIABLE in os.environ:
        Path(os.environ[STAMP_VARIABLE]).write_text(str(time.time()))
    return due


FAULTY = TaskSpec(
    name="faulty-cartpole", env_class="faulty_task:FaultyCartpoleEnv", env=BALANCE.env, agent=BALANCE.agent
)
