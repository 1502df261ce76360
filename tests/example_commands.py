"""What the example tests share: the ``train``/``play`` commands of a shell script (with its variables filled in),
the environment an engine gives such a command, and a ``--dry-run`` of it in this process."""

from __future__ import annotations

import json
import re
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

from mjdist.cli import play, train

EXAMPLES = REPO / "examples"
OPERATORS = {"&&", "||", ";", "|", "&"}
VARIABLE = re.compile(r"\$\{?(\w+)(?::[-?][^}]*)?\}?")
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
PROGRAMS = ("train", "play")


@dataclass(frozen=True)
class Command:
    program: str
    """'train' or 'play'."""
    args: list[str]
    torchrun: dict[str, str] | None
    """torchrun's flags when torchrun starts the command (None when it does not)."""


def commands_in(script: str, variables: dict[str, str]) -> list[Command]:
    """The train/play commands of a shell script, with its variables replaced by ``variables`` (``"$@"``, the
    script's arguments, by the words of ``variables["@"]``). A variable the test does not name fails it."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        if not any(Path(token).name in PROGRAMS for token in tokens):
            continue
        words: list[str] = []
        for token in tokens:
            if token == "$@":
                words += shlex.split(variables["@"])
            else:
                words.append(VARIABLE.sub(lambda m: variables[m.group(1)], token))
        index = next(index for index, word in enumerate(words) if Path(word).name in PROGRAMS)
        args = []
        for arg in words[index + 1 :]:
            if arg in OPERATORS or arg.startswith(">"):
                break
            args.append(arg)
        found.append(Command(Path(words[index]).name, args, torchrun_flags(words[:index])))
    return found


def torchrun_flags(words: list[str]) -> dict[str, str] | None:
    """The ``--flag value`` pairs after ``torchrun`` (None when no torchrun starts the command)."""
    starts = [index for index, word in enumerate(words) if Path(word).name == "torchrun"]
    if not starts:
        return None
    after = words[starts[0] + 1 :]
    return {word[2:].replace("_", "-"): after[i + 1] for i, word in enumerate(after) if word.startswith("--")}


@dataclass(frozen=True)
class Engine:
    """Sets, for the rest of a test, the environment an engine gives a command."""

    as_rank_of: Callable[[int, int], None]
    """torchrun's variables for the last process of ``nnodes`` x ``nproc`` (global rank world-1, local rank
    nproc-1), and that many GPUs visible."""
    in_slurm_job: Callable[[list[str], int], None]
    """A SLURM job over ``hosts`` with ``gpus_per_node`` GPUs (``scontrol show hostnames`` answers the hosts)."""
    with_gpus: Callable[[int], None]
    """``count`` GPUs visible."""


def engine_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Engine:
    """A clean environment for the test, and an :class:`Engine` to set what the engine sets for a command."""
    for name in ("CUDA_VISIBLE_DEVICES", "TORCHRUNX_LOG_DIR", "SLURM_JOB_ID", "SLURM_JOBID", "TORCHELASTIC_RUN_ID",
                 *RANK_VARIABLES):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO)

    def with_gpus(count: int) -> None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(count))))

    def as_rank_of(nnodes: int, nproc: int) -> None:
        world = nnodes * nproc
        values = {"RANK": world - 1, "WORLD_SIZE": world, "LOCAL_RANK": nproc - 1, "LOCAL_WORLD_SIZE": nproc,
                  "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": 29500, "TORCHELASTIC_RUN_ID": "example"}  # fmt: skip
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        with_gpus(nproc)

    def in_slurm_job(hosts: list[str], gpus_per_node: int) -> None:
        scontrol = tmp_path / "scontrol"  # SLURM's answer for the allocation (test_slurm.py runs a real one)
        scontrol.write_text("#!/bin/sh\nprintf '" + "\\n".join(hosts) + "\\n'\n")
        scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{tmp_path}:{Path('/usr/bin')}:{Path('/bin')}")
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        with_gpus(gpus_per_node)

    return Engine(as_rank_of, in_slurm_job, with_gpus)


def dry_run(capsys: pytest.CaptureFixture[str], command: Command) -> dict:
    """The plan ``command`` prints with ``--dry-run``; it must exit 0."""
    main = train.main if command.program == "train" else play.main
    code = main([*command.args, "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0, f"{command.program} {shlex.join(command.args)}: {captured.err}"
    return json.loads(captured.out.strip().splitlines()[-1])
