"""Every ``train``/``play`` command in examples/ is valid: each file is parsed (shell, sbatch; OSMO, Kubernetes and
the container in test_examples_osmo.py, test_examples_kubernetes.py and test_examples_container.py), its variables
are filled in as the engine would, and each command runs with ``--dry-run`` in the environment the engine gives it
(a SLURM job, torchrun's rank variables). Nothing starts; test_slurm.py runs the sbatch files in a real SLURM."""

from __future__ import annotations

import re
import shlex

from example_commands import EXAMPLES, commands_in, dry_run, engine_for


def sbatch_directives(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", script, re.MULTILINE))


def test_the_hosts_auto_sbatch_file_trains_on_every_allocated_node_and_resumes_under_its_job_id(
    capsys, monkeypatch, tmp_path
) -> None:
    engine = engine_for(monkeypatch, tmp_path)
    script = (EXAMPLES / "slurm" / "hosts-auto.sbatch").read_text()
    sbatch = sbatch_directives(script)
    assert {"exclusive", "requeue"} <= sbatch.keys() and sbatch["signal"].startswith("B:TERM@")
    nodes, gpus = int(sbatch["nodes"]), int(sbatch["gpus-per-node"])
    (command,) = commands_in(script, {"SLURM_JOB_NAME": sbatch["job-name"], "SLURM_JOB_ID": "4242"})
    assert re.search(r"^exec \S+/train ", script.replace("\\\n", " "), re.MULTILINE), "TERM must reach train itself"
    engine.in_slurm_job([f"gpu-{i:02d}" for i in range(nodes)], gpus)
    plan = dry_run(capsys, command)
    assert plan["hosts"] == [f"gpu-{i:02d}" for i in range(nodes)]
    assert plan["world_size"] == nodes * gpus and plan["backend"] == "nccl"
    assert plan["run_dir"].endswith(f"_{sbatch['job-name']}-4242")


def test_the_srun_torchrun_sbatch_file_runs_one_rank_per_allocated_gpu(capsys, monkeypatch, tmp_path) -> None:
    engine = engine_for(monkeypatch, tmp_path)
    script = (EXAMPLES / "slurm" / "srun-torchrun.sbatch").read_text()
    sbatch = sbatch_directives(script)
    assert "requeue" in sbatch and sbatch["signal"].startswith("B:USR1@")
    nodes, gpus = int(sbatch["nodes"]), int(sbatch["gpus-per-node"])
    usage = re.search(r"#\s+sbatch examples/slurm/srun-torchrun.sbatch (\S+) (.*)", script)
    assert usage, "the header shows how to pass the task and train options"
    variables = {"TASK": usage.group(1), "@": usage.group(2), "RUN_NAME": f"{sbatch['job-name']}-4242",
                 "SLURM_NNODES": str(nodes), "NPROC_PER_NODE": str(gpus), "RDZV_HOST": "gpu-00",
                 "RDZV_PORT": "29400", "SLURM_JOB_ID": "4242",
                 "SLURM_CPUS_PER_TASK": sbatch["cpus-per-task"]}  # fmt: skip
    (command,) = commands_in(script, variables)
    assert command.torchrun == {"nnodes": str(nodes), "nproc-per-node": str(gpus), "rdzv-backend": "c10d",
                                "rdzv-endpoint": "gpu-00:29400", "rdzv-id": "4242"}  # fmt: skip
    assert re.search(r'^srun .*--cpus-per-task="\$SLURM_CPUS_PER_TASK" .*/torchrun ', script.replace("\\\n", " "),
                     re.MULTILINE), "Slurm 22.05's srun does not pass --cpus-per-task on by itself"  # fmt: skip
    extra = shlex.split(usage.group(2))
    assert command.args[-len(extra) :] == extra
    assert command.args[:5] == [usage.group(1), "--run-name", variables["RUN_NAME"], "--resume", "auto"]
    engine.in_slurm_job([f"gpu-{i:02d}" for i in range(nodes)], gpus)
    for name, value in {
        "SLURM_STEP_ID": 0,
        "SLURM_PROCID": nodes - 1,
        "SLURM_NTASKS": nodes,
        "SLURM_LOCALID": 0,
    }.items():
        monkeypatch.setenv(name, str(value))  # what srun gives the last node's torchrun, and so its ranks
    engine.as_rank_of(nodes, gpus)
    plan = dry_run(capsys, command)
    assert plan["launcher"] == "environment" and plan["world_size"] == nodes * gpus, "torchrun's ranks, not srun's"
    assert plan["ranks"][0]["rank"] == nodes * gpus - 1 and plan["ranks"][0]["local_rank"] == gpus - 1
    assert plan["ranks"][0]["device"] == f"cuda:{gpus - 1}" and plan["backend"] == "nccl"
    assert plan["run_dir"].endswith(f"_{sbatch['job-name']}-4242")


def test_the_torchrun_script_starts_one_rank_per_gpu_on_two_nodes(capsys, monkeypatch, tmp_path) -> None:
    engine = engine_for(monkeypatch, tmp_path)
    script = (EXAMPLES / "torchrun" / "two-nodes.sh").read_text()
    for node_rank in ("0", "1"):
        (command,) = commands_in(script, {"NODE_RANK": node_rank, "MASTER_ADDR": "10.0.0.1", "GPUS_PER_NODE": "2"})
        assert command.program == "train" and command.torchrun is not None
        assert command.torchrun["node-rank"] == node_rank and command.torchrun["master-addr"] == "10.0.0.1"
        engine.as_rank_of(int(command.torchrun["nnodes"]), int(command.torchrun["nproc-per-node"]))
        plan = dry_run(capsys, command)
        assert plan["launcher"] == "environment" and plan["world_size"] == 4
        assert plan["ranks"][0]["device"] == "cuda:1" and plan["backend"] == "nccl"


def test_every_example_file_is_covered() -> None:
    covered = {
        "slurm/hosts-auto.sbatch", "slurm/srun-torchrun.sbatch", "torchrun/two-nodes.sh",  # here
        "osmo/train-one-node.yaml", "osmo/train-nodes.yaml",  # test_examples_osmo.py
        "kubernetes/pytorchjob.yaml",  # test_examples_kubernetes.py
        "container/Dockerfile", "container/Dockerfile.dockerignore",  # test_examples_container.py
        "evaluate_checkpoints.py", "sweep_learning_rate.py",  # test_api.py runs them
        "mjlab/pyproject.toml", "mjlab/uv.lock", "mjlab/README.md",  # test_mjlab.py runs in that project
        "README.md",
    }  # fmt: skip
    files = {
        str(path.relative_to(EXAMPLES))
        for path in EXAMPLES.rglob("*")
        if path.is_file() and not {".venv", "logs"} & set(path.relative_to(EXAMPLES).parts)  # mjlab's env, runs
    }
    assert files <= covered, f"examples no test checks: {sorted(files - covered)}"
