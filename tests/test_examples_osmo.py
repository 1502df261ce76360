"""The OSMO workflows of examples/osmo/: each is rendered as OSMO renders it (its top-level sections, Jinja over the
``workflow`` section with ``default-values`` and any ``--set`` values, OSMO's own tokens left for the service),
checked against OSMO's workflow spec (tests/schemas/osmo-workflow-spec.yaml, taken from OSMO's main branch), and
each task's ``train``/``play`` command dry-runs with the tokens filled in as OSMO fills them."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import jinja2.sandbox
import jsonschema
import pytest
import yaml
from conftest import REPO
from example_commands import EXAMPLES, commands_in, dry_run, engine_for

WORKFLOW_SPEC = jsonschema.Draft202012Validator(
    yaml.safe_load((REPO / "tests" / "schemas" / "osmo-workflow-spec.yaml").read_text())
)
SECTION = re.compile(r"^([a-zA-Z][a-zA-Z0-9_-]*):(.*?)(?=^[a-zA-Z][a-zA-Z0-9_-]*:|\Z)", re.DOTALL | re.MULTILINE)
OSMO_TOKEN = re.compile(r"{{(uuid|workflow_id|output|input:[^}]+|host:[^}]+)}}")
"""The tokens the service fills in when it starts a task, not at submission (TemplateSpec, workflow.py)."""


def render(path: Path, **values: object) -> dict:
    """What ``osmo workflow submit`` makes of ``path`` (with ``--set`` ``values``), parsed, OSMO's tokens kept;
    as TemplateSpec.load_template_with_variables and parse_workflow_spec do it on OSMO's main branch."""
    text = path.read_text()
    sections = {match.group(1): match.group(0) for match in SECTION.finditer(text)}
    assert set(sections) <= {"workflow", "default-values", "version"}, f"OSMO refuses top-level keys {set(sections)}"
    data = {**yaml.safe_load(sections["default-values"])["default-values"], **values}
    workflow = sections["workflow"]
    for token in set(OSMO_TOKEN.findall(workflow)):
        placeholder = "hash" + str(int(hashlib.md5(token.encode()).hexdigest(), 16))
        data[placeholder] = "{{" + token + "}}"
        workflow = workflow.replace("{{" + token + "}}", "{{" + placeholder + "}}")
    environment = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    spec = yaml.safe_load(environment.from_string(workflow).render(data))
    WORKFLOW_SPEC.validate(spec)
    return spec


def groups_of(spec: dict) -> list[list[dict]]:
    """The tasks of each group; a task outside groups is a group of its own."""
    workflow = spec["workflow"]
    return [group["tasks"] for group in workflow.get("groups", [])] + [[task] for task in workflow.get("tasks", [])]


def check_what_the_models_check_in_code(spec: dict) -> None:
    """TaskGroupSpec, TaskSpec and File's validators, and the tokens each task may use."""
    for tasks in groups_of(spec):
        names = [task["name"] for task in tasks]
        assert len(tasks) == 1 or sum(task.get("lead", False) for task in tasks) == 1, f"{names}: one lead task"
        for task in tasks:
            paths = [file["path"] for file in task.get("files", [])]
            assert len(paths) == len(set(paths)) and not any(p.strip("/").split("/")[0] == "osmo" for p in paths)
            for token in OSMO_TOKEN.findall(yaml.safe_dump(task)):
                kind, _, argument = token.partition(":")
                if kind == "host":
                    assert argument in names, f"{task['name']}: {{{{{token}}}}} names no task of its group"
                if kind == "input":
                    assert int(argument) < len(task.get("inputs", [])), f"{task['name']}: no input {argument}"


def fill_tokens(task: dict, text: str, output: Path, inputs: Path) -> str:
    """OSMO's tokens in ``text`` as the service fills them for ``task`` (TaskSpec.parse, TaskGroupSpec.parse)."""
    values = {"output": str(output), "workflow_id": "mjdist-train-1", "uuid": "0" * 32}
    values |= {f"input:{index}": str(inputs / str(index)) for index in range(len(task.get("inputs", [])))}
    return OSMO_TOKEN.sub(lambda m: values.get(m.group(1), "10.0.0.1" if m.group(1).startswith("host:") else ""), text)


def script_of(task: dict) -> str:
    (script,) = (file["contents"] for file in task["files"] if file["path"] == task["args"][0])
    return script


def test_the_schema_refuses_what_osmo_main_refuses(tmp_path: Path) -> None:
    """The schema is not a formality: a dataset output (OSMO 6.3's, gone on main) and a misspelled field fail."""
    workflow = {"name": "w", "tasks": [{"name": "t", "image": "i", "command": ["true"]}]}
    WORKFLOW_SPEC.validate({"workflow": workflow})
    for wrong in ({"outputs": [{"dataset": {"name": "d", "path": "runs"}}]}, {"exitAction": {"RESCHEDULE": 3}}):
        task = {**workflow["tasks"][0], **wrong}
        assert not WORKFLOW_SPEC.is_valid({"workflow": {**workflow, "tasks": [task]}}), wrong


def test_the_one_node_workflow_trains_then_plays_into_its_url_output(capsys, monkeypatch, tmp_path: Path) -> None:
    engine = engine_for(monkeypatch, tmp_path)
    spec = render(EXAMPLES / "osmo" / "train-one-node.yaml")
    check_what_the_models_check_in_code(spec)
    ((task,),) = groups_of(spec)
    assert task["outputs"] == [{"url": "s3://my-bucket/mjdist/{{workflow_id}}"}]
    script = fill_tokens(task, script_of(task), tmp_path / "output", tmp_path / "input")
    runs = str(tmp_path / "output" / "runs")
    commands = commands_in(script, {"RUNS": runs, "TENSORBOARD": "1"})
    assert [command.program for command in commands] == ["train", "play"]
    engine.with_gpus(spec["workflow"]["resources"]["default"]["gpu"])
    plan = dry_run(capsys, commands[0])
    assert plan["run_dir"].startswith(runs) and plan["ranks"][0]["device"] == "cuda:0"
    assert dry_run(capsys, commands[1])["task"] == plan["task"]


def run_script(task: dict, tmp_path: Path, programs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``task``'s script run by bash, as OSMO runs it, with stand-ins for the checkout's programs (each a shell
    body) and its paths under ``tmp_path``. Returns when the script's stdout and stderr close (as OSMO waits)."""
    checkout = tmp_path / "workspace" / "mjdist"
    (checkout / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    for name, body in programs.items():
        program = checkout / ".venv" / "bin" / name
        program.write_text(f"#!/bin/sh\n{body}\n")
        program.chmod(0o755)
    script = re.sub(r"/workspace/mjdist|/tmp(?=/)", lambda m: str(checkout if "mjdist" in m.group() else tmp_path),
                    script_of(task))  # fmt: skip
    script = fill_tokens(task, script, tmp_path / "output", tmp_path / "input")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=20)


def test_tensorboard_cannot_hold_the_one_node_task_open(tmp_path: Path) -> None:
    """With a TensorBoard that never exits and a train that fails, the script ends at once with train's failure
    and leaves nothing holding its stdout, so OSMO can end the task and upload its output."""
    ((task,),) = groups_of(render(EXAMPLES / "osmo" / "train-one-node.yaml"))
    (tmp_path / "output").mkdir()
    done = run_script(task, tmp_path, {"tensorboard": "exec sleep 30", "train": "exit 1", "play": "exit 0"})
    assert done.returncode == 1, done.stderr


@pytest.mark.parametrize("num_nodes", [2, 3])
def test_the_nodes_workflow_runs_one_rank_per_gpu_on_every_node(capsys, monkeypatch, tmp_path, num_nodes) -> None:
    engine = engine_for(monkeypatch, tmp_path)
    spec = render(EXAMPLES / "osmo" / "train-nodes.yaml", num_nodes=num_nodes)
    check_what_the_models_check_in_code(spec)
    (tasks,) = groups_of(spec)
    assert [task["name"] for task in tasks] == ["master", *(f"worker-{node}" for node in range(1, num_nodes))]
    gpus = spec["workflow"]["resources"]["default"]["gpu"]
    for node, task in enumerate(tasks):
        preflight, command = commands_in(fill_tokens(task, script_of(task), tmp_path / "out", tmp_path / "in"), {})
        assert preflight.args == [*command.args, "--dry-run"], "the preflight checks the options torchrun runs"
        assert command.torchrun is not None and command.torchrun["node-rank"] == str(node)
        assert command.torchrun["nnodes"] == str(num_nodes) and command.torchrun["master-addr"] == "10.0.0.1"
        assert int(command.torchrun["nproc-per-node"]) == gpus
        engine.as_rank_of(num_nodes, gpus)
        plan = dry_run(capsys, command)
        assert plan["world_size"] == num_nodes * gpus and plan["ranks"][0]["device"] == f"cuda:{gpus - 1}"


def test_the_nodes_workflow_gives_every_task_the_checkpoints_and_reschedules_on_failures(tmp_path: Path) -> None:
    """The master checkpoints its run directory to storage; every task takes that location as its input and
    copies it into its log root before torchrun starts. A failed torchrun exits with the reschedule code (the
    whole group is rescheduled); a mistake in the options fails the task (exit 2) before torchrun starts."""
    spec = render(EXAMPLES / "osmo" / "train-nodes.yaml")
    (group,) = spec["workflow"]["groups"]
    assert group["ignoreNonleadStatus"] is False
    master = group["tasks"][0]
    (checkpoint,) = master["checkpoint"]
    assert checkpoint["path"] == "/tmp/runs" and master["outputs"] == [
        {"url": "s3://my-bucket/mjdist/osmo-nodes/final"}
    ]
    code = yaml.safe_load((EXAMPLES / "osmo" / "train-nodes.yaml").read_text().split("default-values:")[1])
    for task in group["tasks"]:
        assert task["inputs"] == [{"url": f"{checkpoint['url']}/runs"}]
        assert str(task["exitActions"]["RESCHEDULE"]) == str(code["reschedule_code"])
    saved = tmp_path / "input" / "0" / "cartpole_balance" / "2026-01-01_00-00-00_osmo-nodes" / "model_3.pt"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"checkpoint")
    (tmp_path / "output").mkdir()
    ran = run_script(master, tmp_path, {"train": "exit 0", "torchrun": "exit 0"})
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "output" / saved.relative_to(tmp_path / "input" / "0")).read_bytes() == b"checkpoint"
    failed = run_script(master, tmp_path, {"train": "exit 0", "torchrun": "exit 1"})
    assert failed.returncode == code["reschedule_code"], failed.stderr
    refused = run_script(master, tmp_path, {"train": "exit 2", "torchrun": "exit 0"})
    assert refused.returncode == 2, refused.stderr
