"""The package's layers hold: import-linter's contracts in pyproject.toml (cli -> bench -> train -> play -> launch |
rl -> envs, core modules below them all, no import cycles) are kept, so CI fails when a layer is crossed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_import_contracts_are_kept() -> None:
    checked = subprocess.run([str(LINT_IMPORTS)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Contracts: 3 kept, 0 broken." in checked.stdout


def test_a_crossed_layer_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts can fail: a copy of the package whose launch/ imports training is refused."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(REPO / "src", copy / "src")
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    crossing = copy / "src" / "mjdist" / "launch" / "crossing.py"
    crossing.write_text("from mjdist.train.plan import TrainPlan\n")
    checked = subprocess.run(
        [str(LINT_IMPORTS)], capture_output=True, text=True, cwd=copy, timeout=120,
        env={"PYTHONPATH": str(copy / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert checked.returncode != 0
    assert "mjdist.launch.crossing -> mjdist.train.plan" in checked.stdout


@pytest.mark.parametrize("package", ["launch", "rl"])
def test_launch_and_rl_import_nothing_of_each_other_or_above(package: str) -> None:
    import grimp

    graph = grimp.build_graph("mjdist", exclude_type_checking_imports=True)
    above = {"mjdist.train", "mjdist.play", "mjdist.bench", "mjdist.cli", "mjdist.launch", "mjdist.rl"} - {
        f"mjdist.{package}"
    }
    for other in above:
        assert not graph.chain_exists(importer=f"mjdist.{package}", imported=other, as_packages=True), other
