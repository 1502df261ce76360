"""scripts/wheelhouse and scripts/install-offline: mjdist onto a node without internet, with the node's own Python
and torch. Fast tests for the manifest, the filters and the refusals; one slow test of the whole route (a
wheelhouse for this Python from the lock, an offline install into a venv that already holds torch, 2 iterations
of training with that venv's `train`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))

from wheelhouse import (
    Target,
    export_lock,
    freeze_names,
    left_out,
    locked_names,
    main,
    manifest_entries,
    parse_size,
    pinned_requirements,
)

INSTALL_OFFLINE = str(REPO / "scripts" / "install-offline")
NO_NETWORK = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "UV_OFFLINE": "1",
}
"""Any download would go to a closed port."""
LOCK = REPO / "uv.lock"
LINUX_312 = Target("3.12", "manylinux_2_28_x86_64")


def _pinned(pruned: frozenset[str] = frozenset(), gpu_check: bool = False, target: Target = LINUX_312) -> set[str]:
    """Names the wheelhouse would download for ``target``."""
    return {pin.split("==")[0] for pin in pinned_requirements(export_lock(set(pruned), gpu_check), target)}


def test_have_and_exclude_leave_out_what_the_node_has_and_what_only_that_needs() -> None:
    freeze = "\n".join(["# comment", "NumPy==2.1.0", "matplotlib @ file:///wheels/matplotlib.whl",
                        "-e git+https://x/y#egg=z", "", "torch==2.11.0+cu130", "not-in-the-lock==1"])  # fmt: skip
    have = freeze_names(freeze)
    assert have == {"numpy", "matplotlib", "torch", "not-in-the-lock"}
    pruned = frozenset(left_out(locked_names(LOCK), have, ["nvidia-*", "triton", "mjdist"]))
    assert {"numpy", "matplotlib", "torch", "triton", "nvidia-cublas"} <= pruned
    assert "not-in-the-lock" not in pruned and "mjdist" not in pruned  # only locked names; never mjdist itself
    the_node_has = {"torch", "numpy", "matplotlib", "kiwisolver", "nvidia-cublas", "triton"}  # kiwisolver: matplotlib's
    assert the_node_has <= _pinned()
    names = _pinned(pruned)
    assert not the_node_has & names
    assert {"warp-lang", "mujoco-warp", "rsl-rl-lib", "torchrunx", "tyro", "wandb", "pyopengl"} <= names
    assert not {"pytest", "ruff", "mkdocs"} & names  # runtime only
    assert "pytest" in _pinned(pruned, gpu_check=True)


def test_markers_are_those_of_the_target_not_of_this_machine() -> None:
    exported = export_lock(set(), gpu_check=False)
    numpy = {python: [pin for pin in pinned_requirements(exported, Target(python, "manylinux_2_28_x86_64"))
                      if pin.startswith("numpy==")] for python in ("3.11", "3.12")}  # fmt: skip
    assert len(numpy["3.11"]) == len(numpy["3.12"]) == 1 and numpy["3.11"] != numpy["3.12"]  # locked per Python
    assert "nvidia-cublas" in _pinned() and "nvidia-cublas" not in _pinned(target=Target("3.12", "macosx_14_0_arm64"))


def test_the_manifest_lists_every_wheel_and_splits_those_above_the_cap(tmp_path: Path) -> None:
    big, small = tmp_path / "big_pkg-1.0-py3-none-any.whl", tmp_path / "small-2.0-py3-none-any.whl"
    big.write_bytes(os.urandom(2500))
    small.write_bytes(b"tiny")
    whole = big.read_bytes()
    entries = manifest_entries([small, big], max_size=1000)
    assert [(e["name"], e["version"], e["size"]) for e in entries] == [("big-pkg", "1.0", 2500), ("small", "2.0", 4)]
    assert entries[0]["sha256"] == hashlib.sha256(whole).hexdigest() and "parts" not in entries[1]
    assert [(p["file"], p["size"]) for p in entries[0]["parts"]] == [
        (f"{big.name}.part00{n}", size) for n, size in ((1, 1000), (2, 1000), (3, 500))
    ]
    assert not big.exists() and b"".join((tmp_path / p["file"]).read_bytes() for p in entries[0]["parts"]) == whole
    assert all(
        hashlib.sha256((tmp_path / p["file"]).read_bytes()).hexdigest() == p["sha256"] for p in entries[0]["parts"]
    )
    assert parse_size("60M") == 60 * 2**20 and parse_size("2G") == 2 * 2**30 and parse_size("500") == 500


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--python", "3"], "--python '3': give the target's Python as major.minor, e.g. 3.12"),
        (["--platform", "solaris_sparc"], "--platform solaris_sparc: not a platform tag mjdist knows"),
        (["--max-file-size", "0"], "--max-file-size '0': give a positive size such as 60M"),
        (["--have", "/nonexistent/freeze.txt"], "--have /nonexistent/freeze.txt: cannot read it"),
    ],
)
def test_wheelhouse_bad_input_is_one_line_and_writes_nothing(
    args: list[str], message: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "wheelhouse"
    assert main([str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wheelhouse: error: {message}") and err.count("\n") == 1
    assert not out.exists()


def test_wheelhouse_refuses_a_directory_that_is_not_empty(tmp_path: Path, capsys) -> None:
    (tmp_path / "old.whl").write_bytes(b"x")
    assert main([str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"wheelhouse: error: {tmp_path} exists and is not an empty directory; name a new one\n"
    )


def _fake_wheelhouse(root: Path, torch: str = "torch>=2.8") -> Path:
    """A manifest with one whole and one split file (contents need not be wheels: they are refused first)."""
    root.mkdir()
    whole, split = b"whole wheel", b"split wheel, three parts"
    parts = [split[:10], split[10:20], split[20:]]
    for number, part in enumerate(parts, 1):
        (root / f"b-1.0-py3-none-any.whl.part00{number}").write_bytes(part)
    (root / "a-1.0-py3-none-any.whl").write_bytes(whole)
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    manifest = {
        "format": 1,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "platform": "any",
        "project": {"name": "mjdist", "version": "0.1.0", "torch": torch},
        "wheels": [
            {"name": "a", "version": "1.0", "file": "a-1.0-py3-none-any.whl", "size": len(whole), "sha256": sha(whole)},
            {
                "name": "b",
                "version": "1.0",
                "file": "b-1.0-py3-none-any.whl",
                "size": len(split),
                "sha256": sha(split),
                "parts": [
                    {"file": f"b-1.0-py3-none-any.whl.part00{n}", "size": len(p), "sha256": sha(p)}
                    for n, p in enumerate(parts, 1)
                ],
            },
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _install_offline(wheelhouse: Path, venv: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INSTALL_OFFLINE, str(wheelhouse), "--venv", str(venv), "--python", python],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **NO_NETWORK},
    )


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("install-offline: error: ")
    return result.stderr


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "a-1.0-py3-none-any.whl").unlink(), "a-1.0-py3-none-any.whl is missing from"),
        (lambda root: (root / "b-1.0-py3-none-any.whl.part002").unlink(), "b-1.0-py3-none-any.whl.part002 is missing"),
        (lambda root: (root / "a-1.0-py3-none-any.whl").write_bytes(b"whole wheeL"), "a-1.0-py3-none-any.whl in"),
        (lambda root: (root / "b-1.0-py3-none-any.whl.part003").write_bytes(b"three part"), ".whl.part003 in"),
    ],
    ids=["missing-wheel", "missing-part", "bad-checksum", "bad-part-checksum"],
)
def test_a_missing_or_damaged_file_is_refused_in_one_line(damage, message: str, tmp_path: Path) -> None:
    """Checked before anything is installed: no venv is made."""
    wheelhouse = _fake_wheelhouse(tmp_path / "wheelhouse")
    damage(wheelhouse)
    err = _refused(_install_offline(wheelhouse, tmp_path / "venv"))
    assert message in err and ("copy it again" in err)
    assert not (tmp_path / "venv").exists()


def test_a_torch_outside_the_range_or_another_python_is_refused(tmp_path: Path) -> None:
    old = _refused(_install_offline(_fake_wheelhouse(tmp_path / "a", torch="torch>=99"), tmp_path / "venv"))
    assert "does not satisfy mjdist's torch>=99" in old
    wheelhouse = _fake_wheelhouse(tmp_path / "b")
    manifest = json.loads((wheelhouse / "manifest.json").read_text())
    (wheelhouse / "manifest.json").write_text(json.dumps({**manifest, "python": "3.99"}))
    assert "the wheelhouse is for Python 3.99" in _refused(_install_offline(wheelhouse, tmp_path / "venv"))
    assert "has no readable manifest.json" in _refused(_install_offline(tmp_path, tmp_path / "venv"))
    assert not (tmp_path / "venv").exists()


def _node_with_torch(venv: Path) -> None:
    """A venv that holds torch and what it needs, and pip, as a GPU node's Python would: made offline, from uv's
    cache (every locked package outside torch's dependency closure left out)."""
    packages = {p["name"]: p for p in tomllib.loads(LOCK.read_text())["package"]}
    closure, frontier = set(), [("torch", ())]
    while frontier:
        name, extras = frontier.pop()
        if (name, extras) in closure:
            continue
        closure.add((name, extras))
        package = packages[name]
        deps = package.get("dependencies", []) + [
            d for e in extras for d in package.get("optional-dependencies", {}).get(e, [])
        ]
        frontier += [(d["name"], tuple(d.get("extra", ()))) for d in deps]
    keep = {name for name, _ in closure}
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=300)  # with pip (ensurepip)
    leave_out = [arg for name in sorted(set(packages) - keep) for arg in ("--no-install-package", name)]
    subprocess.run(
        [
            "uv",
            "sync",
            "--frozen",
            "--offline",
            "--inexact",
            "--no-default-groups",
            "--no-install-project",
            "--quiet",
            *leave_out,
        ],
        check=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
    )


@pytest.mark.slow
def test_offline_install_into_a_venv_with_torch_then_training(tmp_path: Path) -> None:
    """Build a wheelhouse for this Python against the node's pip freeze (warp-lang, 142 MiB, split at 60 MiB),
    install it with no network into the venv that holds torch, and train cart-pole with that venv's `train`."""
    node, wheelhouse = tmp_path / "node", tmp_path / "wheelhouse"
    timings = {}
    started = time.perf_counter()
    _node_with_torch(node)
    timings["node venv"] = time.perf_counter() - started
    freeze = tmp_path / "freeze.txt"
    freeze.write_text(
        subprocess.run(
            [str(node / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
        ).stdout
    )
    started = time.perf_counter()
    built = subprocess.run(
        [str(REPO / "scripts" / "wheelhouse"), str(wheelhouse), "--have", str(freeze), "--max-file-size", "60M"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    timings["wheelhouse"] = time.perf_counter() - started
    assert built.returncode == 0, built.stderr
    manifest = json.loads((wheelhouse / "manifest.json").read_text())
    wheels = {entry["name"]: entry for entry in manifest["wheels"]}
    assert "torch" not in wheels and {"mjdist", "warp-lang", "mujoco-warp"} <= set(wheels)
    assert len(wheels["warp-lang"]["parts"]) >= 3 and not (wheelhouse / wheels["warp-lang"]["file"]).exists()
    assert all(part["size"] <= 60 * 2**20 for entry in manifest["wheels"] for part in entry.get("parts", ()))

    started = time.perf_counter()
    installed = subprocess.run(
        [str(wheelhouse / "install-offline"), str(wheelhouse), "--venv", str(node)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **NO_NETWORK},
    )
    timings["install-offline"] = time.perf_counter() - started
    assert installed.returncode == 0, installed.stderr
    assert "installed into" in installed.stderr and "with torch 2." in installed.stderr

    started = time.perf_counter()
    trained = subprocess.run(
        [
            str(node / "bin" / "train"),
            "cartpole-balance",
            "--gpu-ids",
            "None",
            "--env.num-envs",
            "64",
            "--agent.max-iterations",
            "2",
            "--log-root",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, **NO_NETWORK},
    )
    timings["train"] = time.perf_counter() - started
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "iter 2/2" in trained.stdout + trained.stderr
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    assert json.loads(summary.read_text())["status"] == "finished"
    print(" | ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items()))
