"""rsl_rl's OnPolicyRunner, joined to mjdist's process group and printing one line per iteration."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from rsl_rl.env import VecEnv
from rsl_rl.runners import OnPolicyRunner
from torch.utils.tensorboard import SummaryWriter

from mjdist.checkpoints import CheckpointError
from mjdist.exports import OnnxExporter, checkpoint_onnx_path, onnx_metadata
from mjdist.launch.context import IterationTiming
from mjdist.rl.interrupt import StopRequest, TrainingInterrupted
from mjdist.rl.normalization import gather_normalizer_statistics
from mjdist.rl.progress import ProgressLogger
from mjdist.run_summary import TrainingMetrics

log = logging.getLogger(__name__)


class DistributedRunner(OnPolicyRunner):
    """OnPolicyRunner that uses the process group the launcher already created (gloo or nccl).

    rsl_rl 5.5.1 insists on nccl and ``device == cuda:<LOCAL_RANK>`` and creates its own group; everything
    else it does for multi-GPU (broadcast at start, gradient all-reduce, KL and normalizer sync) is plain
    torch.distributed and runs unchanged on the existing group. The observation normalizers merge the ranks'
    statistics in one all-gather per update instead of three all-reduces (:mod:`mjdist.rl.normalization`).

    ``iteration_timings`` records where each iteration's time went (collection, learning, gradient all-reduce).
    """

    def __init__(self, env: VecEnv, train_cfg: dict, log_dir: str | None, device: str, task: str) -> None:
        self.task = task
        self._onnx = OnnxExporter()
        with contextlib.redirect_stdout(_DebugLog()):
            super().__init__(env, train_cfg, log_dir=log_dir, device=device)
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
        self.iteration_hooks: list[Callable[[int], None]] = []
        """Called with the iteration's number once it is complete and logged, on this rank (before a stop)."""
        self._sync_s = 0.0
        self._reduce_parameters = self.alg.reduce_parameters
        self.alg.reduce_parameters = self._timed_reduce_parameters  # type: ignore[method-assign]

    def learn(self, num_learning_iterations: int, init_at_random_ep_len: bool = False) -> None:
        """rsl_rl's loop; its console prints (model summaries, per-iteration blocks) go to the debug log."""
        try:
            with contextlib.redirect_stdout(_DebugLog()), self.stop_request.installed():
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

    def _timed_reduce_parameters(self) -> None:
        """rsl_rl's gradient all-reduce (called after every mini-batch), timed."""
        start = time.perf_counter()
        self._reduce_parameters()
        self._sync_s += time.perf_counter() - start

    def _end_iteration(self, iteration: int, collect_time: float, learn_time: float) -> None:
        self.iteration_timings.append(IterationTiming(collect_time, learn_time, self._sync_s))
        self._sync_s = 0.0
        for hook in self.iteration_hooks:
            hook(iteration)
        self._stop_if_requested(iteration)

    def metrics(self) -> TrainingMetrics:
        """Iterations completed by this runner, env-steps/s of all ranks over them, and the mean return and length
        of the last 100 episodes (tracked on rank 0 only)."""
        timings = self.iteration_timings
        seconds = sum(timing.collect_s + timing.learn_s for timing in timings)
        steps = self.cfg["num_steps_per_env"] * self.env.num_envs * self.gpu_world_size * len(timings)
        rewards, lengths = self.logger.rewbuffer, self.logger.lenbuffer
        return TrainingMetrics(
            iterations=len(timings),
            env_steps_per_s=steps / seconds if seconds > 0 else None,
            mean_reward=statistics.mean(rewards) if rewards else None,
            mean_episode_length=statistics.mean(lengths) if lengths else None,
        )

    def _stop_if_requested(self, iteration: int) -> None:
        """Stop after this iteration if any rank was asked to; all ranks decide together, so none waits alone."""
        stop = self.stop_request.requested
        if self.is_distributed:
            flag = torch.tensor([float(stop)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            raise TrainingInterrupted(iteration)

    def load_checkpoint(self, path: Path, device: str) -> None:
        """Load networks, optimizer, normalizers and iteration from ``path``; a CheckpointError if they don't fit."""
        try:
            self.load(str(path), map_location=device)
        except RuntimeError as error:  # torch's load_state_dict: missing keys or shapes that differ
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise CheckpointError(
                f"checkpoint {path} does not fit this task's networks: {' '.join(lines[:2])}"
            ) from error

    def save(self, path: str, infos: dict | None = None) -> None:
        """rsl_rl's checkpoint, which also records the task and the train_cfg that built its networks, and its
        policy as ONNX in ``exported/`` (once per iteration: rsl_rl saves the last iteration twice when it falls on
        the save interval)."""
        super().save(path, infos={"task": self.task, "train_cfg": self.cfg, **(infos or {})})
        onnx_path = checkpoint_onnx_path(Path(path))
        if not onnx_path.exists():
            metadata = onnx_metadata(self.env.env, self.task, self.current_learning_iteration)  # type: ignore[attr-defined]
            self._onnx.export(self.alg.get_policy(), onnx_path, metadata)

    def _configure_multi_gpu(self) -> None:
        self.is_distributed = dist.is_initialized() and dist.get_world_size() > 1
        if not self.is_distributed:
            self.gpu_world_size, self.gpu_global_rank, self.gpu_local_rank = 1, 0, 0
            self.cfg["multi_gpu"] = None
            return
        self.gpu_world_size = dist.get_world_size()
        self.gpu_global_rank = dist.get_rank()
        self.gpu_local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.cfg["multi_gpu"] = {
            "global_rank": self.gpu_global_rank,
            "local_rank": self.gpu_local_rank,
            "world_size": self.gpu_world_size,
        }


class _DebugLog(io.TextIOBase):
    """A stdout stand-in that sends what rsl_rl prints to the debug log, line by line."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("%s", line)
        return len(text)
