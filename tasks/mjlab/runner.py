"""mjdist's runner for mjlab's tasks: checkpoints keep the curriculum's step counter, exports carry mjlab's
metadata."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from mjdist_tasks.mjlab.env import MjlabVecEnv
from mjlab.envs.mdp.actions import JointPositionAction
from mjlab.rl import MjlabOnPolicyRunner
from mjlab.rl.exporter_utils import attach_metadata_to_onnx, get_base_metadata
from mjlab.tasks.registry import load_runner_cls
from mjlab.tasks.tracking.mdp import MotionCommand

from mjdist.atomic_files import replace_atomically
from mjdist.rl.runner import DistributedRunner

RUN_PATH = "local"
"""mjlab's ``run_path`` metadata for a run without wandb (what mjlab's runners write then)."""


class MjlabRunner(DistributedRunner):
    """:class:`~mjdist.rl.runner.DistributedRunner` for an mjlab task, doing what mjlab's own runners add:

    - a checkpoint's ``infos["env_state"]`` keeps the environment's ``common_step_counter``, which drives
      mjlab's curricula, and loading one restores it (checkpoints written by mjlab's ``train`` load too);
    - each checkpoint's ONNX export is made by the task's own runner class (a tracking policy, say, takes the
      motion's time step as a second input) and carries mjlab's metadata (joint names, gains, default pose,
      action scale, observation terms...), so that mjlab's deployment tooling reads it.
    """

    env: MjlabVecEnv

    def save(self, path: str, infos: dict | None = None) -> None:
        """mjdist's checkpoint, with the environment's step counter."""
        env_state = {"common_step_counter": self.env.unwrapped.common_step_counter}
        super().save(path, {**(infos or {}), "env_state": env_state})

    def load_state(self, state: dict, source: Path) -> None:
        """mjdist's resume (from a checkpoint's state, read here or sent by another rank); the environment's step
        counter carries on from the checkpoint's."""
        super().load_state(state, source)
        infos = state.get("infos")
        if infos and "env_state" in infos:
            self.env.unwrapped.common_step_counter = int(infos["env_state"]["common_step_counter"])

    def export_onnx(self, path: Path) -> None:
        """The policy exported by the task's runner class (mjlab's exporter), with mjlab's metadata and mjdist's."""
        task_runner = load_runner_cls(self.task) or MjlabOnPolicyRunner

        def write(temporary: Path) -> None:
            task_runner.export_policy_to_onnx(self, str(temporary.parent), temporary.name)  # type: ignore[arg-type]
            attach_metadata_to_onnx(str(temporary), self.onnx_metadata())

        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, write)

    def onnx_metadata(self) -> dict[str, list | str | float]:
        """mjlab's metadata, as mjlab's runners attach it, where the task has what it describes (a robot driven by
        a joint-position action), plus the motion's bodies for tracking tasks; and mjdist's task, version and
        iteration."""
        env = self.env.unwrapped
        metadata: dict[str, list | str | float] = {
            "task": self.task,
            "mjdist_version": version("mjdist"),
            "checkpoint_iteration": str(self.current_learning_iteration),
        }
        joint_action = (
            env.action_manager.get_term("joint_pos") if "joint_pos" in env.action_manager.active_terms else None
        )
        if isinstance(joint_action, JointPositionAction) and "robot" in env.scene.entities:
            metadata.update(get_base_metadata(env, RUN_PATH))
        motion = env.command_manager.get_term("motion") if "motion" in env.command_manager.active_terms else None
        if isinstance(motion, MotionCommand):
            metadata.update(
                {"anchor_body_name": motion.cfg.anchor_body_name, "body_names": list(motion.cfg.body_names)}
            )
        return metadata
