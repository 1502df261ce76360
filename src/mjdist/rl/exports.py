"""Policies exported for use without mjdist, in ``<run dir>/exported/``.

- ``model_<it>.onnx`` beside every checkpoint ``model_<it>.pt`` (rank 0 writes it when it saves the checkpoint);
- ``policy.onnx`` and ``policy.pt`` (TorchScript) for the final policy, when training finishes.

Both formats map the concatenated actor observations (the ``policy`` group) to actions, observation normalization
included. An ONNX file's metadata (``metadata_props``, every value a string; lists and numbers as JSON) says how
to feed it and what its actions mean: see :func:`onnx_metadata`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import onnx_ir
import torch
from rsl_rl.models import MLPModel

from mjdist.atomic_files import replace_atomically
from mjdist.envs.core import MjWarpEnv
from mjdist.runs import EXPORT_DIR

TORCHSCRIPT_POLICY = "policy.pt"
"""The final policy as TorchScript: ``torch.jit.load(path)(obs)`` runs with plain torch."""
ONNX_POLICY = "policy.onnx"
"""The final policy as ONNX, with metadata."""
ONNX_INPUT, ONNX_OUTPUT = "obs", "actions"
"""Names of the ONNX model's input ``[batch, observation size]`` and output ``[batch, actions]``."""

EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


def checkpoint_onnx_path(checkpoint: Path) -> Path:
    """``<run dir>/exported/model_<it>.onnx`` for the checkpoint ``<run dir>/model_<it>.pt``."""
    return checkpoint.parent / EXPORT_DIR / checkpoint.with_suffix(".onnx").name


def onnx_metadata(env: MjWarpEnv, task: str, iteration: int) -> dict[str, str]:
    """What deployment code needs to know about a policy of ``task`` trained in ``env``, as ONNX metadata.

    ``task``, ``mjdist_version``; ``checkpoint_iteration``; ``observation_terms`` (the policy observation's terms
    in order, ``[{"name", "size"}]``); ``action_names`` (the actuators, in action order); ``action_scale`` and
    ``action_clip`` (the env clips actions to +-clip, then scales them); ``control_dt`` (seconds per action); plus
    the task's own :meth:`~mjdist.envs.core.MjWarpEnv.deployment_metadata` (the quadruped's default joint pose).
    """
    terms = env.policy_observation_terms()
    width = env.obs["policy"].shape[-1]
    if sum(terms.values()) != width:
        raise ValueError(f"task {task}: policy_observation_terms() add up to {sum(terms.values())}, not {width}")
    model = env.mj_model
    values: dict[str, object] = {
        "task": task,
        "mjdist_version": version("mjdist"),
        "checkpoint_iteration": iteration,
        "observation_terms": [{"name": name, "size": size} for name, size in terms.items()],
        "action_names": [model.actuator(i).name for i in range(model.nu)],
        "action_scale": env.cfg.action_scale,
        "action_clip": env.cfg.action_clip,
        "control_dt": env.step_dt,
        **env.deployment_metadata(),
    }
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def export_onnx(policy: MLPModel, path: Path, metadata: dict[str, str]) -> None:
    """Write ``policy`` (normalizer included, deterministic actions, any batch size) as one ONNX file.

    Written atomically (:mod:`mjdist.atomic_files`), so ``path`` is never half-written. The policy itself is not
    touched: rsl_rl exports a CPU copy of it.
    """
    OnnxExporter().export(policy, path, metadata)


class OnnxExporter:
    """Exports one policy at successive checkpoints: torch's exporter traces the graph once (seconds), later
    exports write the policy's current parameters and buffers into that graph (milliseconds).

    The graph is exported without the ONNX optimizer, so that it does not fold buffers into new constants
    (``std + eps``): torch.export lifts every parameter and buffer the policy uses into a graph initializer named
    like its state-dict entry. If an initializer does not match an entry (name, shape, dtype), the policy is
    traced again instead.
    """

    def __init__(self) -> None:
        self._program: torch.onnx.ONNXProgram | None = None

    def export(self, policy: MLPModel, path: Path, metadata: dict[str, str]) -> None:
        """Write ``policy`` as one ONNX file at ``path`` (through a temporary file), with ``metadata``."""
        module = policy.as_onnx(verbose=False).to("cpu").eval()
        state = {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}
        if self._program is None or not _load_initializers(self._program, state):
            self._program = _trace(module)
            if not _load_initializers(self._program, state):  # the trace holds the values; just don't reuse it
                program, self._program = self._program, None
                _save(program, path, metadata)
                return
        _save(self._program, path, metadata)


def _trace(module: torch.nn.Module) -> torch.onnx.ONNXProgram:
    observations = torch.zeros(2, module.input_size)  # a batch of 2: torch.export specializes a batch of 1
    with _quiet_exporter():
        return torch.onnx.export(
            module,
            (observations,),
            dynamo=True,
            optimize=False,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )


def _load_initializers(program: torch.onnx.ONNXProgram, state: dict[str, torch.Tensor]) -> bool:
    """Put ``state``'s values into the graph's initializers; False (nothing changed) unless every initializer
    names a state entry of the same shape and dtype."""
    initializers = program.model.graph.initializers
    for name, value in initializers.items():
        tensor = state.get(name)
        if tensor is None or value.const_value is None:
            return False
        current = value.const_value.numpy()
        if tuple(current.shape) != tuple(tensor.shape) or current.dtype != tensor.numpy().dtype:
            return False
    for name, value in initializers.items():
        value.const_value = onnx_ir.tensor(state[name].numpy().copy(), name=name)
    return True


def _save(program: torch.onnx.ONNXProgram, path: Path, metadata: dict[str, str]) -> None:
    program.model.metadata_props.update(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda temporary: program.save(temporary, external_data=False))


def export_final_policy(policy: MLPModel, run_dir: Path, final_checkpoint: Path) -> None:
    """``exported/policy.pt`` (TorchScript) and ``exported/policy.onnx`` (the final checkpoint's ONNX export)."""
    export_dir = run_dir / EXPORT_DIR
    export_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch deprecates jit.script, which rsl_rl's TorchScript copy is made for
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(policy.as_jit().to("cpu"))
    replace_atomically(export_dir / TORCHSCRIPT_POLICY, lambda temporary: scripted.save(str(temporary)))
    onnx = checkpoint_onnx_path(final_checkpoint)
    replace_atomically(export_dir / ONNX_POLICY, lambda temporary: shutil.copyfile(onnx, temporary))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch's ONNX exporter prints its steps, its graph optimizer logs each rewrite, and both warn about optional
    packages (torchvision) that an MLP does not need."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
