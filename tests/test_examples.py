"""Every ``train``/``play`` command in examples/ is valid: each file is parsed (shell, sbatch, OSMO workflow,
Kubernetes manifest), its template values and variables are filled in as the engine would, and each command runs
with ``--dry-run`` in the environment the engine gives it (a SLURM job, torchrun's rank variables). Nothing starts."""

from __future__ import annotations

import json
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from mjdist.cli import play, train

EXAMPLES = REPO / "examples"
OPERATORS = {"&&", "||", ";", "|", "&"}
TEMPLATE = re.compile(r"\{\{\s*([\w:]+)\s*\}\}")
VARIABLE = re.compile(r"\$\{?(\w+)(?::[-?][^}]*)?\}?")
RANK_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Command:
    program: str
    """'train' or 'play'."""
    args: list[str]
    torchrun: dict[str, str] | None
    """torchrun's flags when torchrun starts the command (None when it does not)."""


def commands_in(script: str, variables: dict[str, str]) -> list[Command]:
    """The train/play commands of a shell script, with its variables replaced by ``variables``."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        if not any(Path(token).name in ("train", "play") for token in tokens):
            continue
        tokens = [VARIABLE.sub(lambda m: variables[m.group(1)], token) for token in tokens]
        for index, token in enumerate(tokens):
            if Path(token).name in ("train", "play"):
                args = []
                for arg in tokens[index + 1 :]:
                    if arg in OPERATORS or arg.startswith(">"):
                        break
                    args.append(arg)
                found.append(Command(Path(token).name, args, torchrun_flags(tokens[:index])))
                break
    return found


def torchrun_flags(tokens: list[str]) -> dict[str, str] | None:
    if not any(Path(token).name == "torchrun" for token in tokens):
        return None
    flags = [token for token in tokens if token.startswith("--")]
    return {flag[2:].replace("_", "-"): tokens[tokens.index(flag) + 1] for flag in flags}


def fill_template(text: str, values: dict[str, object]) -> str:
    """OSMO's Jinja tokens: default-values, {{output}} and {{host:<task>}}."""
    return TEMPLATE.sub(lambda m: str(values[m.group(1)]), text)


def osmo_workflow(path: Path, output: Path) -> dict:
    text = path.read_text()
    defaults = yaml.safe_load(TEMPLATE.sub("TEMPLATE", text))["default-values"]
    return yaml.safe_load(fill_template(text, {**defaults, "output": output, "host:master": "10.0.0.1"}))


def osmo_tasks(workflow: dict) -> list[dict]:
    spec = workflow["workflow"]
    return spec.get("tasks", []) + [task for group in spec.get("groups", []) for task in group["tasks"]]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A clean environment, and a function that sets what the engine sets for a command."""
    for name in ("CUDA_VISIBLE_DEVICES", "TORCHRUNX_LOG_DIR", "SLURM_JOB_ID", "SLURM_JOBID", *RANK_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO)

    def as_rank_of(command: Command, nnodes: int, nproc: int) -> None:
        """torchrun's variables for its last process (global rank world-1, local rank nproc-1)."""
        world = nnodes * nproc
        values = {"RANK": world - 1, "WORLD_SIZE": world, "LOCAL_RANK": nproc - 1, "LOCAL_WORLD_SIZE": nproc,
                  "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": 29500}  # fmt: skip
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(nproc))))

    def in_slurm_job(hosts: list[str], gpus_per_node: int) -> None:
        scontrol = tmp_path / "scontrol"  # SLURM's answer for the allocation (test_slurm.py runs a real one)
        scontrol.write_text("#!/bin/sh\nprintf '" + "\\n".join(hosts) + "\\n'\n")
        scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{tmp_path}:{Path('/usr/bin')}:{Path('/bin')}")
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(gpus_per_node))))

    def with_gpus(count: int) -> None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(count))))

    return as_rank_of, in_slurm_job, with_gpus


def dry_run(capsys: pytest.CaptureFixture[str], command: Command) -> dict:
    main = train.main if command.program == "train" else play.main
    code = main([*command.args, "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0, f"{command.program} {shlex.join(command.args)}: {captured.err}"
    return json.loads(captured.out.strip().splitlines()[-1])


def test_the_sbatch_script_trains_on_every_allocated_node(capsys, environment, tmp_path: Path) -> None:
    _, in_slurm_job, _ = environment
    script = (EXAMPLES / "slurm" / "train.sbatch").read_text()
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", script, re.MULTILINE))
    nodes, gpus = int(sbatch["nodes"]), int(sbatch["gpus-per-node"])
    (command,) = commands_in(script, {"SLURM_JOB_ID": "4242"})
    in_slurm_job([f"gpu-{i:02d}" for i in range(nodes)], gpus)
    plan = dry_run(capsys, command)
    assert plan["hosts"] == [f"gpu-{i:02d}" for i in range(nodes)]
    assert plan["world_size"] == nodes * gpus and plan["backend"] == "nccl"


def test_the_torchrun_script_starts_one_rank_per_gpu_on_two_nodes(capsys, environment) -> None:
    as_rank_of, _, _ = environment
    script = (EXAMPLES / "torchrun" / "two-nodes.sh").read_text()
    for node_rank in ("0", "1"):
        (command,) = commands_in(script, {"NODE_RANK": node_rank, "MASTER_ADDR": "10.0.0.1", "GPUS_PER_NODE": "2"})
        assert command.program == "train" and command.torchrun["node-rank"] == node_rank
        nnodes, nproc = int(command.torchrun["nnodes"]), int(command.torchrun["nproc-per-node"])
        as_rank_of(command, nnodes, nproc)
        plan = dry_run(capsys, command)
        assert plan["launcher"] == "environment" and plan["world_size"] == 4
        assert plan["ranks"][0]["device"] == "cuda:1" and plan["backend"] == "nccl"


def test_the_one_node_osmo_workflow_trains_then_plays_into_its_output(capsys, environment, tmp_path: Path) -> None:
    _, _, with_gpus = environment
    workflow = osmo_workflow(EXAMPLES / "osmo" / "train-one-node.yaml", tmp_path / "output")
    (task,) = osmo_tasks(workflow)
    assert task["outputs"][0]["dataset"]["path"] == "runs"
    (entry,) = (file["contents"] for file in task["files"] if file["path"] == task["args"][0])
    runs = str(tmp_path / "output" / "runs")
    commands = commands_in(entry, {"RUNS": runs, "TENSORBOARD": "1"})
    assert [command.program for command in commands] == ["train", "play"]
    with_gpus(int(workflow["workflow"]["resources"]["default"]["gpu"]))
    plan = dry_run(capsys, commands[0])
    assert plan["run_dir"].startswith(runs) and plan["ranks"][0]["device"] == "cuda:0"
    played = dry_run(capsys, commands[1])
    assert played["task"] == plan["task"]
    assert 'tensorboard --logdir "$RUNS"' in entry and 'kill "$TENSORBOARD"' in entry


def test_the_two_node_osmo_workflow_runs_one_rank_per_gpu(capsys, environment, tmp_path: Path) -> None:
    as_rank_of, _, _ = environment
    workflow = osmo_workflow(EXAMPLES / "osmo" / "train-two-nodes.yaml", tmp_path / "output")
    tasks = osmo_tasks(workflow)
    assert [task["name"] for task in tasks] == ["master", "worker"] and tasks[0]["lead"] is True
    gpus = int(workflow["workflow"]["resources"]["default"]["gpu"])
    for node_rank, task in enumerate(tasks):
        (script,) = (file["contents"] for file in task["files"])
        (command,) = commands_in(script, {})
        assert command.torchrun["node-rank"] == str(node_rank) and command.torchrun["master-addr"] == "10.0.0.1"
        assert int(command.torchrun["nproc-per-node"]) == gpus
        as_rank_of(command, int(command.torchrun["nnodes"]), gpus)
        plan = dry_run(capsys, command)
        assert plan["world_size"] == 2 * gpus and plan["ranks"][0]["device"] == f"cuda:{gpus - 1}"


def test_the_pytorchjob_runs_one_rank_per_gpu_in_each_pod(capsys, environment) -> None:
    as_rank_of, _, _ = environment
    job = yaml.safe_load((EXAMPLES / "kubernetes" / "pytorchjob.yaml").read_text())
    assert job["kind"] == "PyTorchJob"
    nproc = int(job["spec"]["nprocPerNode"])
    replicas = job["spec"]["pytorchReplicaSpecs"]
    pods = sum(replica["replicas"] for replica in replicas.values())
    for replica in replicas.values():
        (container,) = replica["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and container["resources"]["limits"]["nvidia.com/gpu"] == nproc
        (command,) = commands_in(shlex.join(container["command"]), {})
        assert command.torchrun is not None
        as_rank_of(command, pods, nproc)
        plan = dry_run(capsys, command)
        assert plan["launcher"] == "environment" and plan["world_size"] == pods * nproc


def test_every_example_file_is_covered() -> None:
    covered = {"slurm/train.sbatch", "torchrun/two-nodes.sh", "osmo/train-one-node.yaml", "osmo/train-two-nodes.yaml",
               "kubernetes/pytorchjob.yaml"}  # fmt: skip
    python_api = {"evaluate_checkpoints.py", "sweep_learning_rate.py"}  # run by tests/test_api.py
    covered |= python_api
    with_commands = {
        str(path.relative_to(EXAMPLES))
        for path in EXAMPLES.rglob("*")
        if path.is_file()
        and not {".venv", "logs"} & set(path.parts)  # examples/mjlab's environment and runs
        and re.search(r"(^|[\s/\[])(train|play) [a-z]", path.read_text())
    }
    assert with_commands <= covered, f"examples with commands no test checks: {sorted(with_commands - covered)}"
