"""``scripts/wheelhouse``: a directory of wheels that installs mjdist on a node without internet.

On a machine with internet, it downloads from PyPI the wheels ``uv.lock`` pins for a target Python and platform
(runtime dependencies only; ``--gpu-check`` adds what ``scripts/gpu-check`` needs), builds mjdist's own wheel, and
leaves out what the target already has (``--have``: its ``pip freeze``; ``--exclude``: names or patterns, with
whatever only they need). Wheels above ``--max-file-size`` are split into numbered parts. ``manifest.json`` lists
every wheel (name, version, size, sha256, and its parts' sizes and sha256). ``install-offline`` is copied in, so
the directory is all a node needs: ``python3 WHEELHOUSE/install-offline WHEELHOUSE --venv DIR``.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.tags import platform_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
PROJECT = "mjdist"
MANIFEST = "manifest.json"
INSTALLER = "install-offline"
PART_SUFFIX = ".part"
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
"""--max-file-size suffixes: binary units (60M is 60 MiB)."""
PLATFORM_SYSTEMS = {
    "manylinux": ("linux", "Linux"),
    "linux": ("linux", "Linux"),
    "musllinux": ("linux", "Linux"),
    "macosx": ("darwin", "Darwin"),
    "win": ("win32", "Windows"),
}
"""Platform tag prefix -> (sys_platform, platform_system) for the target's environment markers."""
CHUNK = 1024 * 1024
PIP_SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT", "PIP_PRE")
"""pip's environment variables that choose where packages come from."""

log = logging.getLogger("wheelhouse")


class WheelhouseError(Exception):
    """Bad input or a failed step; the message is one line."""


@dataclass(frozen=True)
class Target:
    """The Python and platform the wheels are for."""

    python: str
    """Major.minor, e.g. 3.12."""
    platform: str
    """A wheel platform tag, e.g. manylinux_2_28_x86_64."""

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    def markers(self) -> dict[str, str]:
        """The environment markers of a CPython ``python`` on ``platform``."""
        prefix = next((p for p in PLATFORM_SYSTEMS if self.platform.startswith(p)), None)
        if prefix is None:
            raise WheelhouseError(
                f"--platform {self.platform}: not a platform tag mjdist knows (e.g. "
                f"manylinux_2_28_x86_64, manylinux_2_28_aarch64, macosx_14_0_arm64, win_amd64)"
            )
        sys_platform, system = PLATFORM_SYSTEMS[prefix]
        machine = re.sub(
            r"^(manylinux_\d+_\d+|musllinux_\d+_\d+|manylinux\d+|linux|macosx_\d+_\d+|win)_", "", self.platform
        )
        machine = {"amd64": "AMD64", "arm64": "arm64" if prefix == "macosx" else "ARM64"}.get(machine, machine)
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "sys_platform": sys_platform,
            "platform_system": system,
            "platform_machine": machine,
            "os_name": "nt" if prefix == "win" else "posix",
        }


def parse_size(text: str) -> int:
    """``60M`` -> 62914560 (binary units: K, M, G; no suffix: bytes)."""
    match = re.fullmatch(r"(\d+)([KMG]?)(i?B)?", text.strip(), re.IGNORECASE)
    if match is None or int(match.group(1)) == 0:
        raise WheelhouseError(f"--max-file-size {text!r}: give a positive size such as 60M, 2G or 500K")
    return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]


def freeze_names(freeze: str) -> set[str]:
    """Distribution names in ``pip freeze`` output (``name==1.0``, ``name @ file://...``; comments, ``-e`` lines
    and blank lines skipped), normalized."""
    names = set()
    for line in freeze.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        names.add(canonicalize_name(re.split(r"[\s=<>!~;@\[]", line, maxsplit=1)[0]))
    return names


def locked_names(lock: Path) -> set[str]:
    """Every package name in ``uv.lock``, normalized."""
    return {canonicalize_name(package["name"]) for package in tomllib.loads(lock.read_text())["package"]}


def left_out(locked: set[str], have: set[str], patterns: list[str]) -> set[str]:
    """Locked packages the target does not need from the wheelhouse: those it has, and those matching a pattern
    (``torch``, ``nvidia-*``); never mjdist itself."""
    matched = {name for name in locked for pattern in patterns if fnmatch.fnmatch(name, canonicalize_name(pattern))}
    return (matched | (have & locked)) - {PROJECT}


def pinned_requirements(exported: str, target: Target) -> list[str]:
    """``name==version`` of every line of ``uv export`` whose markers hold on ``target``."""
    environment = target.markers()
    pins = []
    for line in exported.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or Marker(str(requirement.marker)).evaluate(environment):
            pins.append(f"{canonicalize_name(requirement.name)}{requirement.specifier}")
    return pins


def export_lock(pruned: set[str], gpu_check: bool) -> str:
    """The lock's runtime requirements (plus the gpu-check group), without ``pruned`` and what only they need."""
    command = [
        "uv",
        "export",
        "--frozen",
        "--no-default-groups",
        "--no-hashes",
        "--no-emit-project",
        "--no-annotate",
        "--no-header",
        *(["--group", "gpu-check"] if gpu_check else []),
        *(arg for name in sorted(pruned) for arg in ("--prune", name)),
    ]
    return _run(command, "uv export").stdout


def lock_index(lock: Path) -> str:
    """The package index the lock's packages come from (the most common registry; PyPI's simple index)."""
    registries = Counter(
        package["source"]["registry"]
        for package in tomllib.loads(lock.read_text())["package"]
        if "registry" in package.get("source", {})
    )
    return registries.most_common(1)[0][0]


def download(pins: list[str], target: Target, index: str, into: Path) -> None:
    """The wheels of ``pins`` for ``target`` from the lock's ``index``, with pip (no source builds, no
    dependencies: the lock has them all). No pip configuration file, and no PIP_* variable that adds or replaces a
    package source (a machine's own find-links or extra index would otherwise mix into the wheelhouse)."""
    requirements = into / "requirements.txt"
    requirements.write_text("\n".join(pins) + "\n")
    tags = ["--python-version", target.python, "--implementation", "cp", "--platform", target.platform]
    tags += [*_older_manylinux(target.platform), "--abi", target.abi, "--abi", "abi3", "--abi", "none"]
    pip = ["uvx", "--from", "pip", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *tags]
    env = {name: value for name, value in os.environ.items() if name not in PIP_SOURCES}
    env["PIP_CONFIG_FILE"] = os.devnull
    _run([*pip, "--index-url", index, "--dest", str(into), "--requirement", str(requirements)], "pip download", env)
    requirements.unlink()


def _older_manylinux(platform: str) -> list[str]:
    """``--platform`` flags for every older glibc than ``manylinux_2_X_arch`` (pip takes only the tags it is given),
    down to manylinux1 (glibc 2.5), with the legacy aliases."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if match is None:
        return []
    glibc, arch = int(match.group(1)), match.group(2)
    older = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc - 1, 4, -1)]
    older += [f"manylinux{alias}_{arch}" for alias in ("2014", "2010", "1")]
    return [arg for tag in older for arg in ("--platform", tag)]


def build_own_wheel(into: Path) -> Path:
    """mjdist's wheel, built from this checkout."""
    _run(["uv", "build", "--wheel", "--quiet", "--out-dir", str(into), str(REPO)], "uv build")
    (wheel,) = into.glob(f"{PROJECT}-*.whl")
    return wheel


def split(path: Path, max_size: int) -> list[dict]:
    """Cut ``path`` into ``NAME.part001``, ... of at most ``max_size`` bytes each, and remove it; the parts' files,
    sizes and sha256."""
    parts = []
    with path.open("rb") as whole:
        number = 1
        while chunk := whole.read(max_size):
            part = path.with_name(f"{path.name}{PART_SUFFIX}{number:03d}")
            part.write_bytes(chunk)
            parts.append({"file": part.name, "size": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
            number += 1
    path.unlink()
    return parts


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def torch_requirement() -> str:
    """mjdist's own torch range, from pyproject.toml (install-offline checks the node's torch against it)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (torch,) = (dep for dep in project["dependencies"] if canonicalize_name(Requirement(dep).name) == "torch")
    return torch


def manifest_entries(wheels: list[Path], max_size: int | None) -> list[dict]:
    """One entry per wheel (split when above ``max_size``), sorted by name."""
    entries = []
    for wheel in sorted(wheels, key=lambda path: path.name.lower()):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        entry = {
            "name": str(name),
            "version": str(version),
            "file": wheel.name,
            "size": wheel.stat().st_size,
            "sha256": sha256(wheel),
        }
        if max_size is not None and entry["size"] > max_size:
            entry["parts"] = split(wheel, max_size)
        entries.append(entry)
    return entries


def build(out: Path, target: Target, have: set[str], exclude: list[str], gpu_check: bool, max_size: int | None) -> dict:
    """Fill ``out`` (new or empty) and return its manifest."""
    pruned = left_out(locked_names(REPO / "uv.lock"), have, exclude)
    pins = pinned_requirements(export_lock(pruned, gpu_check), target)
    log.info("downloading %d wheels for Python %s on %s into %s", len(pins), target.python, target.platform, out)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-", dir=out) as staging:
        staged = Path(staging)
        download(pins, target, lock_index(REPO / "uv.lock"), staged)
        build_own_wheel(staged)
        wheels = sorted(staged.glob("*.whl"))
        missing = {pin.split("==")[0] for pin in pins} - {str(parse_wheel_filename(w.name)[0]) for w in wheels}
        if missing:
            raise WheelhouseError(f"pip downloaded no wheel for {', '.join(sorted(missing))}")
        for wheel in wheels:
            wheel.rename(out / wheel.name)
    wheels = [out / wheel.name for wheel in wheels]
    entries = manifest_entries(wheels, max_size)
    own = next(entry for entry in entries if entry["name"] == PROJECT)
    manifest = {
        "format": 1,
        "project": {"name": PROJECT, "version": own["version"], "torch": torch_requirement()},
        "python": target.python,
        "platform": target.platform,
        "gpu_check": gpu_check,
        "left_out": sorted(pruned),
        "max_file_size": max_size,
        "total_size": sum(entry["size"] for entry in entries),
        "wheels": entries,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.copy2(REPO / "scripts" / INSTALLER, out / INSTALLER)
    return manifest


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise WheelhouseError(f"{what} failed: {lines[-1].strip() if lines else f'exit code {result.returncode}'}")
    return result


def _this_platform() -> str:
    """This machine's newest manylinux tag (on Linux), else its own platform tag."""
    tags = list(platform_tags())
    return next((tag for tag in tags if tag.startswith("manylinux_")), tags[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wheelhouse", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to fill (created; must be empty if it exists)")
    parser.add_argument(
        "--python",
        default=f"{sys.version_info.major}.{sys.version_info.minor}",
        help="the target's Python, major.minor (default: this one's)",
    )
    parser.add_argument(
        "--platform",
        default=_this_platform(),
        help="the target's wheel platform tag, e.g. manylinux_2_28_x86_64 (default: this machine's)",
    )
    parser.add_argument("--have", type=Path, help="the target's `pip freeze`: leave out what it already has")
    parser.add_argument(
        "--exclude",
        default="",
        help="comma-separated names or patterns to leave out, e.g. torch,nvidia-*,triton (and whatever only they need)",
    )
    parser.add_argument("--max-file-size", help="split wheels larger than this into parts, e.g. 60M")
    parser.add_argument("--gpu-check", action="store_true", help="also what scripts/gpu-check needs (pytest)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="wheelhouse: %(message)s", stream=sys.stderr)
    try:
        if not re.fullmatch(r"3\.\d+", args.python):
            raise WheelhouseError(f"--python {args.python!r}: give the target's Python as major.minor, e.g. 3.12")
        target = Target(args.python, args.platform)
        target.markers()
        max_size = parse_size(args.max_file_size) if args.max_file_size else None
        try:
            have = freeze_names(args.have.read_text()) if args.have else set()
        except OSError as error:
            raise WheelhouseError(f"--have {args.have}: cannot read it ({error.strerror})") from None
        if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise WheelhouseError(f"{args.out} exists and is not an empty directory; name a new one")
        created = not args.out.exists()
        args.out.mkdir(parents=True, exist_ok=True)
        exclude = [pattern.strip() for pattern in args.exclude.split(",") if pattern.strip()]
        try:
            manifest = build(args.out, target, have, exclude, args.gpu_check, max_size)
        except WheelhouseError:
            if created:
                shutil.rmtree(args.out)
            raise
    except WheelhouseError as error:
        print(f"wheelhouse: error: {error}", file=sys.stderr)
        return 2
    parts = sum(len(entry.get("parts", ())) for entry in manifest["wheels"])
    log.info(
        "%d wheels, %.1f MiB%s in %s",
        len(manifest["wheels"]),
        manifest["total_size"] / 2**20,
        f", {parts} parts" if parts else "",
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
