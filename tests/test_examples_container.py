"""examples/container/Dockerfile, parsed: the locked runtime dependencies alone (no dependency group) install in a
layer before the source is copied, the NVIDIA driver capabilities include graphics, and the driver that uv.lock's
torch needs is named. Where Docker runs, the image is built and imports mjdist; elsewhere that test skips."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tomllib
import uuid

import pytest
from conftest import REPO
from example_commands import EXAMPLES

DOCKERFILE = EXAMPLES / "container" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined and comments left out."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def test_the_dependencies_install_in_their_own_layer_before_the_source() -> None:
    steps = instructions()
    copies = [index for index, (name, _) in enumerate(steps) if name == "COPY"]
    assert [steps[index][1].split() for index in copies] == [["pyproject.toml", "uv.lock", "./"], [".", "."]]
    syncs = [index for index, (name, args) in enumerate(steps) if name == "RUN" and "uv sync" in args]
    assert copies[0] < syncs[0] < copies[1] < syncs[1], "uv sync from the lock alone, then the source, then the rest"
    assert "--no-install-project" in steps[syncs[0]][1].split()


def test_the_image_gets_the_runtime_dependencies_and_no_dependency_group() -> None:
    """The Dockerfile's own uv sync options, given to ``uv export`` on this uv.lock: torch and the runtime, but
    none of the dev or docs groups (``--no-dev`` alone would still install docs, a default group)."""
    uv = shutil.which("uv")
    assert uv, "uv is on PATH wherever the tests run (uv run pytest)"
    for _, args in (step for step in instructions() if step[0] == "RUN" and "uv sync" in step[1]):
        options = [word for word in shlex.split(args)[2:] if word != "--no-install-project"]
        assert {"--frozen", "--no-default-groups"} <= set(options), args
        exported = subprocess.run(
            [uv, "export", *options, "--no-hashes", "--no-emit-project", "--no-header"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        packages = {line.split("==")[0] for line in exported.splitlines() if "==" in line}
        assert {"torch", "warp-lang", "mujoco-warp", "rsl-rl-lib"} <= packages
        assert not packages & {"ruff", "pytest", "mkdocs", "import-linter", "jsonschema"}, packages


def test_the_driver_capabilities_and_the_driver_torch_needs_are_stated() -> None:
    environment = dict(args.split("=", 1) for name, args in instructions() if name == "ENV")
    assert {"compute", "utility", "graphics"} <= set(environment["NVIDIA_DRIVER_CAPABILITIES"].split(","))
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    (torch,) = (package for package in lock["package"] if package["name"] == "torch")
    cuda_13 = any(dependency["name"].endswith("-cu13") for dependency in torch.get("dependencies", []))
    assert cuda_13, f"torch {torch['version']} no longer brings CUDA 13: state the driver its CUDA needs"
    assert "driver R580 or newer" in DOCKERFILE.read_text()


def test_the_source_copy_leaves_the_image_venv_alone() -> None:
    ignored = (EXAMPLES / "container" / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored


@pytest.mark.slow
def test_the_image_builds_and_imports_mjdist() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no docker here (or its daemon is not running): the image is not built")
    tag = f"mjdist-test:{uuid.uuid4().hex[:12]}"
    try:
        built = subprocess.run([docker, "build", "-f", str(DOCKERFILE), "-t", tag, "."], cwd=REPO,
                               capture_output=True, text=True, timeout=3600)  # fmt: skip
        assert built.returncode == 0, built.stderr[-3000:]
        check = "import mjdist, warp, mujoco_warp; import importlib.util as u; assert u.find_spec('ruff') is None"
        ran = subprocess.run([docker, "run", "--rm", tag, ".venv/bin/python", "-c", check],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        assert ran.returncode == 0, ran.stderr[-3000:]
    finally:
        subprocess.run([docker, "image", "rm", "-f", tag], capture_output=True)
