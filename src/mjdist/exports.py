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
import os
import shutil
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import torch
from rsl_rl.models import MLPModel

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

    Written through a temporary file, so ``path`` is never half-written. The policy itself is not touched: rsl_rl
    exports a CPU copy of it.
    """
    module = policy.as_onnx(verbose=False).to("cpu").eval()
    observations = torch.zeros(2, module.input_size)  # a batch of 2: torch.export specializes a batch of 1
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (observations,),
            dynamo=True,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    program.model.metadata_props.update(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    program.save(partial, external_data=False)
    os.replace(partial, path)


def export_final_policy(policy: MLPModel, run_dir: Path, final_checkpoint: Path) -> None:
    """``exported/policy.pt`` (TorchScript) and ``exported/policy.onnx`` (the final checkpoint's ONNX export)."""
    export_dir = run_dir / EXPORT_DIR
    export_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch deprecates jit.script, which rsl_rl's TorchScript copy is made for
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(policy.as_jit().to("cpu")).save(str(export_dir / TORCHSCRIPT_POLICY))
    shutil.copyfile(checkpoint_onnx_path(final_checkpoint), export_dir / ONNX_POLICY)


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
