"""A cart-pole task whose environment fails on purpose, for the fault tests.

``MJDIST_TEST_FAULT="<raise|kill>:<rank>:<step>"`` makes that rank raise, or SIGKILL itself, at that control
step, after writing the time of the fault to ``MJDIST_TEST_FAULT_STAMP`` (a file path) when that is set.
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
    """Cart-pole that raises or dies at a chosen step on a chosen rank."""

    def step(self, actions: torch.Tensor):
        self.steps_taken = getattr(self, "steps_taken", 0) + 1
        mode, rank, step = os.environ.get(FAULT_VARIABLE, "none:-1:0").split(":")
        if int(os.environ.get("RANK", "0")) == int(rank) and self.steps_taken == int(step):
            if STAMP_VARIABLE in os.environ:
                Path(os.environ[STAMP_VARIABLE]).write_text(str(time.time()))
            if mode == "raise":
                raise InjectedFault(f"injected fault at step {step}")
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        return super().step(actions)


FAULTY = TaskSpec(
    name="faulty-cartpole", env_class="faulty_task:FaultyCartpoleEnv", env=BALANCE.env, agent=BALANCE.agent
)
