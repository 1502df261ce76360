"""The documentation site builds with ``mkdocs build --strict``: no broken link, anchor or API reference."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, subprocess_env


def test_the_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (the 'docs' dependency group: uv sync --group docs)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=300, env=subprocess_env(NO_MKDOCS_2_WARNING="1"), cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    for documented in ("mjdist.train", "mjdist.TrainResult.mean_reward", "Call <code>fn(*args, **kwargs)</code>"):
        assert documented in reference, documented
