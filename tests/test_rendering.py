"""`play --video` picks an OpenGL backend that works: EGL on the play GPU when a probe can render there, else
OSMesa (one log line), OSMesa on MIG; and without any backend, one line naming what to install (exit 2)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mjdist import rendering
from mjdist.cli.play import main
from mjdist.rendering import RenderingUnavailable, choose_gl_backend


@pytest.fixture
def environ() -> dict[str, str]:
    """An environment without MUJOCO_GL and CUDA/NVIDIA device lists, passed to the choice (os.environ is untouched)."""
    dropped = {"MUJOCO_GL", "MUJOCO_EGL_DEVICE_ID", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"}
    return {name: value for name, value in os.environ.items() if name not in dropped}


def _libraries(monkeypatch: pytest.MonkeyPatch, osmesa: bool, egl: str | None = "probe not expected") -> None:
    monkeypatch.setattr(rendering, "osmesa_failure", lambda: None if osmesa else "libOSMesa is not installed")

    def probe(gpu: int, rank_environ: dict[str, str]) -> str | None:
        assert egl != "probe not expected", "EGL was probed"
        return egl

    monkeypatch.setattr(rendering, "egl_failure", probe)


def test_cpu_renders_with_osmesa(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _libraries(monkeypatch, osmesa=True)
    before = dict(os.environ)
    assert choose_gl_backend("cpu", None, environ) == {"MUJOCO_GL": "osmesa"}
    assert dict(os.environ) == before, "the choice is returned, never set in this process"


def test_gpu_renders_with_egl_on_its_own_gpu(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _libraries(monkeypatch, osmesa=True, egl=None)
    assert choose_gl_backend("cuda:1", None, environ) == {"MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "1"}


def test_the_egl_probe_sees_the_ranks_gpus(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`--gpu-ids 2 3`: rank 0 renders on cuda:0 of CUDA_VISIBLE_DEVICES=2,3, so the probe runs with those GPUs."""
    _libraries(monkeypatch, osmesa=True)
    seen: list[tuple[int, str | None]] = []
    monkeypatch.setattr(rendering, "egl_failure", lambda gpu, env: seen.append((gpu, env.get("CUDA_VISIBLE_DEVICES"))))
    assert choose_gl_backend("cuda:0", "2,3", environ)["MUJOCO_GL"] == "egl"
    assert seen == [(0, "2,3")]


def test_gpu_falls_back_to_osmesa_when_egl_cannot_render(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _libraries(monkeypatch, osmesa=True, egl="EGL_NOT_INITIALIZED")
    with caplog.at_level(logging.INFO, logger="mjdist.rendering"):
        assert choose_gl_backend("cuda:0", None, environ) == {"MUJOCO_GL": "osmesa"}
    (record,) = caplog.records
    assert "OSMesa" in record.getMessage() and "GPU 0 (EGL_NOT_INITIALIZED)" in record.getMessage()


@pytest.mark.parametrize("variable", ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"])
def test_mig_renders_with_osmesa_without_probing_egl(
    variable: str, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    environ[variable] = "MIG-4f3c2b1a-0000-1111-2222-333344445555"
    _libraries(monkeypatch, osmesa=True)
    assert choose_gl_backend("cuda:0", None, environ) == {"MUJOCO_GL": "osmesa"}


def test_a_users_backend_is_kept(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _libraries(monkeypatch, osmesa=False)
    environ["MUJOCO_GL"] = "egl"
    assert choose_gl_backend("cuda:2", None, environ) == {"MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "2"}
    environ["MUJOCO_EGL_DEVICE_ID"] = "0"
    assert choose_gl_backend("cuda:2", None, environ) == {"MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "0"}


@pytest.mark.parametrize(
    ("device", "egl", "names"),
    [
        ("cuda:0", "EGL_NOT_INITIALIZED", ["GPU 0: EGL cannot render (EGL_NOT_INITIALIZED)", "libEGL_nvidia",
                                           "apt-get install libosmesa6"]),
        ("cuda:0", "probe not expected", ["MIG instance", "libEGL_nvidia", "apt-get install libosmesa6"]),
    ],
    ids=["egl-broken", "mig"],
)  # fmt: skip
def test_gpu_without_any_backend_names_what_to_install(
    device: str, egl: str, names: list[str], environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if egl == "probe not expected":
        environ["CUDA_VISIBLE_DEVICES"] = "MIG-4f3c2b1a-0000-1111-2222-333344445555"
    _libraries(monkeypatch, osmesa=False, egl=egl)
    with pytest.raises(RenderingUnavailable) as refused:
        choose_gl_backend(device, None, environ)
    message = str(refused.value)
    assert "\n" not in message and all(name in message for name in names), message


def test_an_osmesa_library_that_cannot_load_is_refused_in_one_line(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real load probe, in a child process, on a file in the library's place that is no library (what a hidden
    or broken install looks like to the loader)."""
    broken = tmp_path / "libOSMesa.so.8"
    broken.write_bytes(b"")
    monkeypatch.setattr(rendering, "find_library", lambda name: str(broken))
    with pytest.raises(RenderingUnavailable) as refused:
        choose_gl_backend("cpu", None, environ)
    message = str(refused.value)
    assert message.startswith("--video renders with OSMesa on the CPU, and libOSMesa cannot be loaded (")
    assert "\n" not in message and "apt-get install libosmesa6" in message


def test_play_video_without_osmesa_is_one_line_and_writes_nothing(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _libraries(monkeypatch, osmesa=False)
    args = ["cartpole-balance", "--agent", "zero", "--gpu-ids", "None", "--video", "--log-root", str(tmp_path / "runs")]
    assert main(args) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line == (
        "play: error: --video renders with OSMesa on the CPU, and libOSMesa is not installed; install it "
        "(apt-get install libosmesa6) or drop --video"
    )
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_the_egl_probe_reports_why_it_cannot_render() -> None:
    """The real probe, in a child process, on a device no machine has (or without any EGL library): one line."""
    reason = rendering.egl_failure(99, dict(os.environ))
    assert reason and "\n" not in reason
