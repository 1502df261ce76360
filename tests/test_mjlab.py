"""mjlab's tasks through mjdist (issue: mjlab's tasks through mjdist's launcher).

These tests need mjlab, which mjdist's own environment does not have (mjlab 1.6 pins MuJoCo 3.11 and rsl_rl
5.4.2): they run in examples/mjlab's environment, as .ci/run's last step does::

    cd examples/mjlab && uv run pytest ../../tests/test_mjlab.py -m "mjlab and not slow"

and are skipped elsewhere. Environments stay tiny (8-16 worlds, 2 iterations): mjlab's CPU step is slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mjlab", reason="mjlab is not installed (run these in examples/mjlab's environment)")

from conftest import every_rank_agreed, read_strict_json, subprocess_env

pytestmark = pytest.mark.mjlab

MJDIST = Path(sys.executable).with_name("mjdist")
CARTPOLE = "Mjlab-Cartpole-Balance"
GO1 = "Mjlab-Velocity-Flat-Unitree-Go1"
MJLAB_METADATA = ("joint_names", "joint_stiffness", "joint_damping", "default_joint_pos", "action_scale",
                  "observation_names", "command_names")  # fmt: skip


def mjdist(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The ``mjdist`` console script of this environment, run to its end."""
    return subprocess.run([str(MJDIST), *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env())


def only_run(log_root: Path, experiment: str) -> Path:
    (run_dir,) = (log_root / experiment).iterdir()
    return run_dir


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cart-pole, 1 process x 16 envs x 2 iterations, through ``mjdist train`` with mjlab's flags."""
    log_root = tmp_path_factory.mktemp("cartpole")
    result = mjdist("train", CARTPOLE, "--gpu-ids", "None", "--env.scene.num-envs", "16",
                    "--agent.max-iterations", "2", "--log-root", str(log_root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_root, "cartpole")


@pytest.fixture(scope="module")
def go1_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Go1 velocity tracking, 2 CPU workers x 8 envs x 2 iterations: the issue's done-when command."""
    log_root = tmp_path_factory.mktemp("go1")
    result = mjdist("train", GO1, "--gpu-ids", "None", "--cpu-workers", "2", "--env.scene.num-envs", "8",
                    "--agent.max-iterations", "2", "--log-root", str(log_root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_root, "go1_velocity")


def test_mjlab_ids_are_tasks_and_help_does_not_import_mjlab_tasks() -> None:
    """Every registry id is a task (mjdist's own first); `train --help` lists them from the cache without importing
    mjlab's tasks (seconds) or mjlab itself."""
    import mjlab.tasks  # noqa: F401
    from mjlab.tasks.registry import list_tasks

    from mjdist.tasks import registered_tasks, task_names

    names = task_names()
    assert names[: len(registered_tasks())] == list(registered_tasks())
    assert set(list_tasks()) <= set(names)
    probe = (
        "import sys; from mjdist.cli.main import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m == 'mjlab' or m.startswith('mjlab.')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    assert GO1 in result.stdout and result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-2000:]


def test_mjdist_command_refuses_unknown_subcommands_in_one_line() -> None:
    result = mjdist("fly")
    assert result.returncode == 2
    assert result.stderr.strip() == "mjdist: error: unknown command 'fly'; commands: train, play, bench " \
        "('mjdist --help' says more)"  # fmt: skip


def test_api_overrides_merge_into_mjlab_defaults() -> None:
    """Nested dicts change the named fields and dict entries of mjlab's configs and keep every other one."""
    from mjdist.errors import ConfigError
    from mjdist.overrides import resolve_config
    from mjdist.tasks import get_task

    spec = get_task(GO1)
    weight = spec.env.rewards["track_linear_velocity"].weight
    env = resolve_config(spec.env, {"scene": {"num_envs": 8}, "rewards": {"track_angular_velocity": {"weight": 9.0}}},
                         "env")  # fmt: skip
    assert env.scene.num_envs == 8 and env.scene.terrain == spec.env.scene.terrain
    assert env.rewards["track_angular_velocity"].weight == 9.0
    assert env.rewards["track_linear_velocity"].weight == weight and set(env.rewards) == set(spec.env.rewards)
    with pytest.raises(ConfigError, match=r"env.rewards has no entry 'flying'"):
        resolve_config(spec.env, {"rewards": {"flying": {"weight": 1.0}}}, "env")


def test_configs_become_plain_data_with_a_stable_kernel_cache_key() -> None:
    """mjlab's configs (enums, functions, classes) are written as plain YAML, and their kernel-cache key names no
    memory address, so that every process finds the same marker."""
    import yaml

    from mjdist.runs import to_plain
    from mjdist.tasks import get_task

    spec = get_task(GO1)
    plain = to_plain(spec.env)
    text = yaml.safe_dump(plain)
    assert " at 0x" not in text and yaml.safe_load(text) == plain
    probe = "from mjdist.tasks import get_task; from mjdist.train.kernel_cache import built_marker; " \
            f"print(built_marker({GO1!r}, get_task({GO1!r}).env, 'cpu').name)"  # fmt: skip
    from mjdist.train.kernel_cache import built_marker

    other_process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert other_process.splitlines()[-1] == built_marker(GO1, spec.env, "cpu").name  # after Warp's banner


def test_cartpole_trains_in_one_process(cartpole_run: Path) -> None:
    summary = every_rank_agreed(cartpole_run, 1)
    assert summary["iterations"] == 2 and summary["task"] == CARTPOLE
    assert [Path(path).name for path in summary["checkpoints"]] == ["model_0.pt", "model_1.pt"]
    env_yaml = (cartpole_run / "params" / "env.yaml").read_text()
    assert "num_envs: 16" in env_yaml
    assert (cartpole_run / "exported" / "policy.onnx").is_file()


def test_play_json_on_the_cartpole_run(cartpole_run: Path) -> None:
    result = mjdist("play", CARTPOLE, "--gpu-ids", "None", "--run", str(cartpole_run), "--num-envs", "4",
                    "--num-steps", "20", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["task"] == CARTPOLE and summary["checkpoint"].endswith("model_1.pt"), summary


def test_video_is_refused_in_one_line_for_mjlab_tasks(capsys, tmp_path: Path) -> None:
    from mjdist.cli.main import main  # in this process, which has imported mjlab already

    assert main(["train", CARTPOLE, "--gpu-ids", "None", "--video", "--log-root", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"mjdist train: error: --video does not work with task {CARTPOLE}: ")
    assert not any(tmp_path.iterdir())


def test_go1_two_workers_agree_and_export_mjlab_metadata(go1_run: Path) -> None:
    """2 CPU workers end with identical parameters and normalizers; the ONNX export carries mjlab's metadata and
    computes what the policy computes."""
    import onnx
    import onnxruntime

    summary = every_rank_agreed(go1_run, 2)
    assert summary["iterations"] == 2
    onnx_path = go1_run / "exported" / "policy.onnx"
    metadata = {entry.key: entry.value for entry in onnx.load(str(onnx_path)).metadata_props}
    assert set(MJLAB_METADATA) <= set(metadata), sorted(metadata)
    assert metadata["task"] == GO1 and len(metadata["joint_names"].split(",")) == 12
    policy = torch.jit.load(str(go1_run / "exported" / "policy.pt"))
    session = onnxruntime.InferenceSession(str(onnx_path))
    (given,) = session.get_inputs()
    for seed in range(3):  # mjlab's exporter fixes the batch at 1
        observation = torch.randn(1, given.shape[1], generator=torch.Generator().manual_seed(seed))
        (actions,) = session.run(None, {given.name: observation.numpy()})
        torch.testing.assert_close(torch.from_numpy(actions), policy(observation), rtol=1e-4, atol=1e-5)


def steps_per_iteration(run_dir: Path) -> int:
    """Control steps each environment takes per iteration in a run (mjlab's task default)."""
    import yaml

    return yaml.safe_load((run_dir / "params" / "agent.yaml").read_text())["num_steps_per_env"]


def test_resume_restores_the_curriculum_step_counter(cartpole_run: Path, tmp_path: Path) -> None:
    """A checkpoint keeps the env's common_step_counter (mjlab's curricula run on it); resuming carries it on."""
    from mjdist.checkpoints import read_checkpoint

    steps = steps_per_iteration(cartpole_run)
    saved = read_checkpoint(cartpole_run / "model_1.pt", CARTPOLE).state["infos"]["env_state"]["common_step_counter"]
    assert saved == 2 * steps
    result = mjdist("train", CARTPOLE, "--gpu-ids", "None", "--env.scene.num-envs", "16", "--agent.max-iterations",
                    "1", "--resume", str(cartpole_run), "--log-root", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = read_checkpoint(only_run(tmp_path, "cartpole") / "model_2.pt", CARTPOLE)
    assert resumed.state["infos"]["env_state"]["common_step_counter"] == saved + steps


def test_a_checkpoint_written_by_mjlabs_runner_resumes(cartpole_run: Path, tmp_path: Path) -> None:
    """A checkpoint as mjlab's own runner writes it (its infos hold only env_state: no task, no train_cfg) is read
    weights-only and continued."""
    state = torch.load(cartpole_run / "model_1.pt", weights_only=True)
    state["infos"] = {"env_state": {"common_step_counter": 1000}}
    mjlab_checkpoint = tmp_path / "mjlab_run" / "model_1.pt"
    mjlab_checkpoint.parent.mkdir()
    torch.save(state, mjlab_checkpoint)
    log_root = tmp_path / "runs"
    result = mjdist("train", CARTPOLE, "--gpu-ids", "None", "--env.scene.num-envs", "16", "--agent.max-iterations",
                    "1", "--resume", str(mjlab_checkpoint), "--log-root", str(log_root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = torch.load(only_run(log_root, "cartpole") / "model_2.pt", weights_only=True)
    assert resumed["infos"]["env_state"]["common_step_counter"] == 1000 + steps_per_iteration(cartpole_run)


def test_graph_capture_on_the_cpu_keeps_trajectories() -> None:
    """mjlab's physics replayed as captured Warp graphs on the CPU (mjdist's default there) steps exactly as mjlab's
    uncaptured step."""
    from mjdist.tasks import get_task

    spec = get_task(CARTPOLE)
    trajectories = []
    for capture in (False, True):
        env_cfg = spec.env.with_num_envs(4)
        env_cfg.cpu_graph_capture = capture
        env = spec.build_vec_env(env_cfg, spec.agent, "cpu", seed=3)
        assert env.unwrapped.sim.use_cuda_graph is capture
        generator = torch.Generator().manual_seed(0)
        observations = []
        for _ in range(30):
            obs, _, _, _ = env.step(torch.rand(4, env.num_actions, generator=generator) * 2 - 1)
            observations.append(obs["actor"].clone())
        trajectories.append(torch.stack(observations))
    assert torch.equal(trajectories[0], trajectories[1])


def synthetic_motion(path: Path, num_joints: int, frames: int = 50, bodies: int = 64) -> Path:
    """A motion file as mjlab's tracking tasks read it: the robot standing still at 0.8 m, for ``frames`` frames."""
    import numpy as np

    body_pos = np.zeros((frames, bodies, 3), dtype=np.float32)
    body_pos[..., 2] = 0.8
    body_quat = np.zeros((frames, bodies, 4), dtype=np.float32)
    body_quat[..., 0] = 1.0
    np.savez(path, fps=np.array([50]), joint_pos=np.zeros((frames, num_joints), np.float32),
             joint_vel=np.zeros((frames, num_joints), np.float32), body_pos_w=body_pos, body_quat_w=body_quat,
             body_lin_vel_w=np.zeros((frames, bodies, 3), np.float32),
             body_ang_vel_w=np.zeros((frames, bodies, 3), np.float32))  # fmt: skip
    return path


@pytest.mark.slow
def test_a_tracking_task_trains_on_a_synthetic_motion(tmp_path: Path) -> None:
    """G1 motion tracking from a local motion file; its export takes the motion's time step and names the bodies."""
    import onnx

    motion = synthetic_motion(tmp_path / "motion.npz", num_joints=29)
    result = mjdist("train", "Mjlab-Tracking-Flat-Unitree-G1", "--gpu-ids", "None", "--env.scene.num-envs", "2",
                    "--agent.max-iterations", "1", "--env.commands.motion.motion-file", str(motion),
                    "--log-root", str(tmp_path / "runs"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    model = onnx.load(str(run_dir / "exported" / "policy.onnx"))
    assert [given.name for given in model.graph.input] == ["obs", "time_step"]
    metadata = {entry.key for entry in model.metadata_props}
    assert {"anchor_body_name", "body_names", *MJLAB_METADATA} <= metadata


def test_a_tracking_task_without_a_motion_file_is_refused_in_one_line(capsys, tmp_path: Path) -> None:
    from mjdist.cli.main import main

    assert main(["train", "Mjlab-Tracking-Flat-Unitree-G1", "--gpu-ids", "None", "--log-root", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mjdist train: error: --env.commands.motion.motion-file")
    assert not any(tmp_path.iterdir())


def registry_ids() -> list[str]:
    from mjdist.mjlab_tasks import mjlab_task_ids

    return list(mjlab_task_ids())


@pytest.mark.slow
@pytest.mark.parametrize("task", registry_ids())
def test_every_registry_id_trains_one_iteration_or_is_refused_in_one_line(task: str, tmp_path: Path) -> None:
    """Each id builds 2 environments and trains one short iteration (tracking tasks on a synthetic motion), or is
    refused with exit code 2 and one line."""
    flags = ["--gpu-ids", "None", "--env.scene.num-envs", "2", "--agent.max-iterations", "1",
             "--agent.num-steps-per-env", "4", "--log-root", str(tmp_path / "runs")]  # fmt: skip
    if "Tracking" in task:
        flags += ["--env.commands.motion.motion-file", str(synthetic_motion(tmp_path / "motion.npz", 29))]
    result = mjdist("train", task, *flags)
    if result.returncode == 2:
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("mjdist train: error:")]
        print(f"{task}: refused: {line}")
        return
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    assert read_strict_json(run_dir / "summary.json")["status"] == "finished"
