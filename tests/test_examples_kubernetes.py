"""examples/kubernetes/pytorchjob.yaml, with its image substituted as its header says, is a PyTorchJob that the
training operator's CRD accepts (the OpenAPI schemas of v1.7.0, the first with ``nprocPerNode``, and v1.9.0, the
last v1 release: tests/schemas/, the openAPIV3Schema of kubeflow/training-operator's manifests/base/crds/
kubeflow.org_pytorchjobs.yaml at those tags, commits 5525468b and 6f74c7f6, descriptions left out), and each
pod's command dry-runs as the rank torchrun makes of it from the operator's PET_* variables."""

from __future__ import annotations

import json
import os
import re
import string

import jsonschema
import pytest
import yaml
from conftest import REPO
from example_commands import EXAMPLES, commands_in, dry_run, engine_for

OPERATOR_VERSIONS = ("v1.7.0", "v1.9.0")
IMAGE = "registry.example.com/robotics/mjdist:0.1.0"


def strict(schema: object) -> object:
    """``schema`` with unknown fields refused, as ``kubectl apply`` (strict field validation) refuses them: every
    object that lists its properties, unless it keeps unknown fields, gets ``additionalProperties: false``."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict_schema = {key: strict(value) for key, value in schema.items()}
    keeps_unknown = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and not keeps_unknown:
        strict_schema["additionalProperties"] = False
    return strict_schema


@pytest.fixture(scope="module", params=OPERATOR_VERSIONS)
def crd_validator(request: pytest.FixtureRequest) -> jsonschema.Draft4Validator:
    path = REPO / "tests" / "schemas" / f"pytorchjob-training-operator-{request.param}.json"
    return jsonschema.Draft4Validator(strict(json.loads(path.read_text())))


def manifest() -> dict:
    """The file after ``envsubst '$MJDIST_IMAGE'``, the only substitution its header names."""
    text = (EXAMPLES / "kubernetes" / "pytorchjob.yaml").read_text()
    assert re.findall(r"\$\{?\w+", text.split("apiVersion:")[1]) == ["${MJDIST_IMAGE", "${MJDIST_IMAGE"]
    assert "envsubst '$MJDIST_IMAGE'" in text
    return yaml.safe_load(string.Template(text).substitute(MJDIST_IMAGE=IMAGE))


def test_the_operator_accepts_the_pytorchjob_and_would_refuse_a_misspelled_field(crd_validator) -> None:
    job = manifest()
    crd_validator.validate(job)
    job["spec"]["nprocsPerNode"] = job["spec"].pop("nprocPerNode")
    (error,) = crd_validator.iter_errors(job)  # its message, not str(error), which prints the whole schema
    assert "'nprocsPerNode' was unexpected" in error.message


def test_the_pytorchjob_runs_one_rank_per_gpu_in_each_pod(capsys, monkeypatch, tmp_path) -> None:
    engine = engine_for(monkeypatch, tmp_path)
    job = manifest()
    assert job["kind"] == "PyTorchJob" and job["apiVersion"] == "kubeflow.org/v1"
    nproc = int(job["spec"]["nprocPerNode"])
    replicas = job["spec"]["pytorchReplicaSpecs"]
    pods = sum(replica["replicas"] for replica in replicas.values())
    run_dirs = []
    for role, replica in replicas.items():
        (container,) = replica["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and container["image"] == IMAGE
        assert container["resources"]["limits"]["nvidia.com/gpu"] == nproc
        assert all(os.path.isabs(path) for path in (*container["command"][:2], container["workingDir"]))
        (command,) = commands_in(" ".join(container["command"]), {})
        assert command.args[command.args.index("--resume") + 1] == "auto"
        assert command.torchrun == {}, "torchrun takes its flags from the operator's PET_* variables"
        engine.as_rank_of(pods, nproc)
        plan = dry_run(capsys, command)
        assert plan["launcher"] == "environment" and plan["world_size"] == pods * nproc
        run_dirs.append(plan["run_dir"])
        mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
        assert ("/runs" in mounts) == (role == "Master"), "only the Master (rank 0) keeps the run directory"
    assert {os.path.basename(run_dir).split("_", 2)[-1] for run_dir in run_dirs} == {"k8s"}
