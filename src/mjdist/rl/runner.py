"""rsl_rl's OnPolicyRunner, joined to mjdist's process group and printing one line per iteration."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner
from torch.utils.tensorboard import SummaryWriter

from mjdist.checkpoints import CheckpointError, load_weights_only, write_checkpoint
from mjdist.rl.config import PPO_CLASS_NAME
from mjdist.rl.exports import OnnxExporter, checkpoint_onnx_path, onnx_metadata
from mjdist.rl.health import IterationHealth, NonFiniteTrainingError, non_finite_parameters
from mjdist.rl.interrupt import StopRequest, TrainingInterrupted
from mjdist.rl.metrics import IterationTiming, TrainingMetrics, env_steps_per_s
from mjdist.rl.normalization import gather_normalizer_statistics
from mjdist.rl.ppo import DistributedPPO
from mjdist.rl.progress import ProgressLogger

log = logging.getLogger(__name__)


class DistributedRunner(OnPolicyRunner):
    """OnPolicyRunner that uses the process group the launcher already created (gloo or nccl).

    rsl_rl 5.5.1 insists on nccl and ``device == cuda:<LOCAL_RANK>`` and creates its own group; everything
    else it does for multi-GPU (broadcast at start, gradient all-reduce, KL and normalizer sync) is plain
    torch.distributed and runs unchanged on the existing group. The observation normalizers merge the ranks'
    statistics in one all-gather per update instead of three all-reduces (:mod:`mjdist.rl.normalization`).

    ``iteration_timings`` records where each iteration's time went (collection, learning, gradient all-reduce).
    Once per iteration the ranks also agree, in one all-reduce, on whether to stop, whether any loss or parameter
    is non-finite, and how many worlds were reset for diverging physics (:mod:`mjdist.rl.health`).

    ``on_stage(stage)`` hears how far this rank got ('started training', 'collected iteration N', 'finished
    iteration N'); the launcher's hang watchdog listens there. The algorithm is rsl_rl's PPO extended through its
    ``class_name`` seam (:class:`~mjdist.rl.ppo.DistributedPPO`). rsl_rl has no such seam for its logger, so the
    runner replaces it once after construction with :class:`~mjdist.rl.progress.ProgressLogger`, the one place
    mjdist reaches into rsl_rl's objects.
    """

    def __init__(
        self,
        env: VecEnv,
        train_cfg: dict,
        log_dir: str | None,
        device: str,
        task: str,
        local_rank: int = 0,
        on_stage: Callable[[str], None] | None = None,
    ) -> None:
        self.task = task
        self.local_rank = local_rank
        self.on_stage = on_stage or _ignore_stage
        self._onnx = OnnxExporter()
        self.train_cfg = copy.deepcopy(train_cfg)
        """The train_cfg as given, saved in checkpoints (rsl_rl up to 5.4 pops its ``class_name`` keys in place)."""
        with contextlib.redirect_stdout(_DebugLog()):
            super().__init__(env, train_cfg, log_dir=log_dir, device=device)
        if not isinstance(self.alg, DistributedPPO):
            raise TypeError(f"train_cfg's algorithm must be {PPO_CLASS_NAME}, got {type(self.alg).__name__}")
        gather_normalizer_statistics(self.alg.actor, self.alg.critic)
        self.logger = ProgressLogger(
            log_dir=log_dir,
            cfg=self.cfg,
            env_cfg=self.env.cfg,
            num_envs=self.env.num_envs,
            is_distributed=self.is_distributed,
            gpu_world_size=self.gpu_world_size,
            gpu_global_rank=self.gpu_global_rank,
            device=self.device,
            after_iteration=self._end_iteration,
        )
        self.stop_request = StopRequest()
        self.iteration_timings: list[IterationTiming] = []
        self._start_iteration = 0
        self.iteration_hooks: list[Callable[[int], None]] = []
        """Called with the iteration's number once it is complete and logged, on this rank (before a stop)."""
        self.health = IterationHealth()
        self.alg.after_broadcast = lambda: self.on_stage("started training")
        self.alg.update_guard = self._guarded_update

    def learn(self, num_learning_iterations: int, init_at_random_ep_len: bool = False) -> None:
        """rsl_rl's loop; its console prints (model summaries, per-iteration blocks) go to the debug log."""
        try:
            with contextlib.redirect_stdout(_DebugLog()), self.stop_request.installed():
                self._start_iteration = self.current_learning_iteration
                if not self.is_distributed:  # rsl_rl broadcasts (and so starts) only with several ranks
                    self.on_stage("started training")
                super().learn(num_learning_iterations, init_at_random_ep_len)
        except TrainingInterrupted as stop:
            if self.logger.writer is not None:  # rank 0
                path = os.path.join(self.logger.log_dir, f"model_{stop.iteration}.pt")
                self.save(path)
                log.warning("Interrupted: saved %s, the last completed iteration", path)
            raise KeyboardInterrupt from stop
        finally:
            if isinstance(self.logger.writer, SummaryWriter):
                self.logger.writer.close()  # rsl_rl leaves TensorBoard's writer open; close it to flush the events

    def _guarded_update(self, update: Callable[[], dict[str, float]]) -> dict[str, float]:
        """rsl_rl's PPO update; its mean losses are kept for the end-of-iteration check."""
        iteration = self._start_iteration + len(self.iteration_timings)
        self.on_stage(f"collected iteration {iteration + 1}")
        try:
            self.health.losses = update()
        except RuntimeError as error:  # e.g. torch's Normal refusing a NaN std, mid-update
            if not non_finite_parameters(self.alg.actor, self.alg.critic).item():
                raise
            self.health.losses = {}
            cause = self.health.non_finite_cause(iteration, bad_parameters=True, bad_losses=False)
            raise NonFiniteTrainingError(cause) from error
        return self.health.losses

    def _end_iteration(self, iteration: int, collect_time: float, learn_time: float) -> None:
        self.iteration_timings.append(IterationTiming(collect_time, learn_time, self.alg.take_sync_seconds()))
        for hook in self.iteration_hooks:
            hook(iteration)
        self._check_iteration(iteration)
        self.on_stage(f"finished iteration {iteration + 1}")

    def metrics(self) -> TrainingMetrics:
        """Iterations completed by this runner, env-steps/s of all ranks over them (:func:`env_steps_per_s`), and the
        mean return and length of the last 100 episodes (tracked on rank 0 only)."""
        timings = self.iteration_timings
        steps_per_iteration = self.cfg["num_steps_per_env"] * self.env.num_envs * self.gpu_world_size
        rewards, lengths = self.logger.rewbuffer, self.logger.lenbuffer
        return TrainingMetrics(
            iterations=len(timings),
            env_steps_per_s=env_steps_per_s(timings, steps_per_iteration),
            mean_reward=statistics.mean(rewards) if rewards else None,
            mean_episode_length=statistics.mean(lengths) if lengths else None,
        )

    def _check_iteration(self, iteration: int) -> None:
        """Once per iteration, all ranks together (none waits alone): count the worlds reset for diverging
        physics, stop on non-finite losses or parameters (before anything is saved), stop if asked to."""
        local = (float(self.stop_request.requested), float(bool(self.health.bad_losses())))
        flags = torch.cat(
            (
                torch.tensor(local, device=self.device),
                non_finite_parameters(self.alg.actor, self.alg.critic).float().reshape(1),
                self.env.take_diverged_count().float().reshape(1),  # type: ignore[attr-defined]
            )
        )
        if self.is_distributed:
            dist.all_reduce(flags)  # sums: any rank's stop request or bad loss counts for all
        stop, bad_losses, bad_parameters, diverged_worlds = flags.tolist()
        self.health.record_diverged(int(diverged_worlds), iteration, self.logger.writer)
        failure = self.health.non_finite_cause(iteration, bool(bad_parameters), bool(bad_losses))
        if failure is not None:
            raise NonFiniteTrainingError(failure)
        if stop:
            raise TrainingInterrupted(iteration)

    def load_checkpoint(self, path: Path, device: str) -> None:
        """Load networks, optimizer, normalizers and iteration from ``path``; a CheckpointError if they don't fit."""
        self.load_state(load_weights_only(path, device), path)

    def load_state(self, state: dict, source: Path) -> None:
        """Load networks, optimizer, normalizers and iteration from a checkpoint's ``state`` (read from ``source``,
        here or by another rank); a CheckpointError if they don't fit."""
        try:
            if self.alg.load(state, None, strict=True):
                self.current_learning_iteration = state["iter"]
        except RuntimeError as error:  # torch's load_state_dict: missing keys or shapes that differ
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise CheckpointError(
                f"checkpoint {source} does not fit this task's networks: {' '.join(lines[:2])}"
            ) from error

    def load(
        self, path: str, load_cfg: dict | None = None, strict: bool = True, map_location: str | None = None
    ) -> dict:
        """rsl_rl's load from a weights-only read (rsl_rl's own unpickles anything): a checkpoint runs no code."""
        checkpoint = load_weights_only(Path(path), map_location)
        if self.alg.load(checkpoint, load_cfg, strict):
            self.current_learning_iteration = checkpoint["iter"]
        return checkpoint["infos"]

    def save(self, path: str, infos: dict | None = None) -> None:
        """rsl_rl's checkpoint, which also records the task and the train_cfg that built its networks, written
        atomically (see :func:`mjdist.checkpoints.write_checkpoint`); never one with non-finite parameters; and its
        policy as ONNX in ``exported/`` (once per iteration: rsl_rl saves the last iteration twice when it falls on
        the save interval)."""
        if non_finite_parameters(self.alg.actor, self.alg.critic).item():
            raise NonFiniteTrainingError(
                f"not saving {path}: non-finite parameters at iteration {self.current_learning_iteration + 1}"
            )
        state = self.alg.save()
        state["iter"] = self.current_learning_iteration
        state["infos"] = {"task": self.task, "train_cfg": self.train_cfg, **(infos or {})}
        write_checkpoint(state, Path(path))
        self.logger.save_model(path, self.current_learning_iteration)
        onnx_path = checkpoint_onnx_path(Path(path))
        if not onnx_path.exists():
            self.export_onnx(onnx_path)

    def export_onnx(self, path: Path) -> None:
        """The current policy as ONNX at ``path``, with :func:`~mjdist.rl.exports.onnx_metadata`."""
        metadata = onnx_metadata(self.env.env, self.task, self.current_learning_iteration)  # type: ignore[attr-defined]
        self._onnx.export(self.alg.get_policy(), path, metadata)

    def _configure_multi_gpu(self) -> None:
        self.is_distributed = dist.is_initialized() and dist.get_world_size() > 1
        if not self.is_distributed:
            self.gpu_world_size, self.gpu_global_rank, self.gpu_local_rank = 1, 0, 0
            self.cfg["multi_gpu"] = None
            return
        self.gpu_world_size = dist.get_world_size()
        self.gpu_global_rank = dist.get_rank()
        self.gpu_local_rank = self.local_rank
        self.cfg["multi_gpu"] = {
            "global_rank": self.gpu_global_rank,
            "local_rank": self.gpu_local_rank,
            "world_size": self.gpu_world_size,
        }


def _ignore_stage(stage: str) -> None:
    return None


class _DebugLog(io.TextIOBase):
    """A stdout stand-in that sends what rsl_rl prints to the debug log, line by line."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("%s", line)
        return len(text)
