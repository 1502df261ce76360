"""An env step never waits for the device: no host syncs in MjWarpEnv.step, the rsl_rl adapter or the logger's
per-step bookkeeping (counted by patching torch's and Warp's calls that sync on a GPU; on a GPU, CUDA's sync debug
mode also turns any of torch's into an error, but cannot see Warp's). A sync planted in the physics step shows the
counter sees each kind. Mask-based resets give bitwise the same trajectories as index-based ones."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
import warp as wp
from mjdist_tasks.cartpole import BALANCE

from mjdist.envs.core import MjWarpEnv
from mjdist.envs.vec_env import RslRlVecEnv
from mjdist.rl.progress import ProgressLogger
from mjdist.tasks import registered_tasks

TASKS = [
    pytest.param(name, marks=[pytest.mark.slow] if "quadruped" in name else []) for name in sorted(registered_tasks())
]  # the quadruped compiles its kernels for ~20 s on a cold Warp cache
N = 16
STEPS = 12
SYNCING_METHODS = ("item", "tolist", "nonzero", "argwhere", "unique", "unique_consecutive", "masked_select",
                   "numpy", "cpu", "to", "__bool__", "__int__", "__float__", "__index__", "__len__", "__iter__", "any",
                   "all")  # fmt: skip
"""Tensor methods that read a value back to the host, or whose result's size depends on the data (the device
must report it). ``to`` counts when it copies to the CPU; any/all count over the whole tensor, where they exist to
be read back (along a dimension, e.g. per world, they stay on the device)."""
SYNCING_FUNCTIONS = ("nonzero", "argwhere", "unique", "unique_consecutive", "masked_select", "any", "all", "where")
"""The same as torch functions; ``where`` counts in its one-argument form (``nonzero(as_tuple=True)``)."""
WARP_SYNCS = ("synchronize", "synchronize_device", "synchronize_stream", "synchronize_event", "copy")
"""Warp's waits for the device, and ``copy``, which counts when it copies a device array to the host."""
WARP_ARRAY_READS = ("numpy", "list")
"""``wp.array`` methods that read the array on the host (a copy and a wait on a GPU)."""


def make_env(task: str, device: str, **overrides) -> MjWarpEnv:
    spec = registered_tasks()[task]
    cfg = dataclasses.replace(spec.env, num_envs=N, episode_length=5, **overrides)  # time-outs within the test
    return spec.load_env_class()(cfg, device=device, seed=0)


def make_logger(env: MjWarpEnv) -> ProgressLogger:
    logger = ProgressLogger(log_dir=None, cfg=BALANCE.agent.to_rsl_rl(""), env_cfg=env.cfg, num_envs=env.num_envs,
                            is_distributed=False, gpu_world_size=1, gpu_global_rank=0, device=str(env.device),
                            after_iteration=lambda *_: None)  # fmt: skip
    logger.writer = object()  # rank 0's bookkeeping, without files
    return logger


def steps(env: MjWarpEnv, logger: ProgressLogger) -> Iterator[None]:
    """STEPS rollout steps as rsl_rl takes them: random actions through the adapter, then the logger."""
    vec_env = RslRlVecEnv(env)
    generator = torch.Generator(device=env.device).manual_seed(1)
    actions = 4 * torch.rand(STEPS, N, env.num_actions, generator=generator, device=env.device) - 2
    with torch.inference_mode():
        for step_actions in actions.unbind():
            _, rewards, dones, extras = vec_env.step(step_actions)
            logger.process_env_step(rewards, dones, extras)
            yield


class SyncCounter:
    """Counts host syncs on any device, the CPU included: calls of torch's and Warp's syncing functions and
    methods, and indexing by a list or a boolean mask (which copies the list to the device, or asks the device how
    many elements are set). A syncing call made inside another counted one (``Tensor.unique`` calls
    ``torch.unique``) counts once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[str] = Counter()
        self.active = False
        self._inside_a_counted_call = False
        for name in SYNCING_METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, getattr(torch.Tensor, name)))
        for name in SYNCING_FUNCTIONS:
            monkeypatch.setattr(torch, name, self._counting(f"torch.{name}", getattr(torch, name)))
        for name in ("__getitem__", "__setitem__"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._index_checking(name, original))
        for name in WARP_SYNCS:
            monkeypatch.setattr(wp, name, self._counting(f"wp.{name}", getattr(wp, name)))
        for name in WARP_ARRAY_READS:
            monkeypatch.setattr(wp.array, name, self._counting(f"wp.array.{name}", getattr(wp.array, name)))

    def _counting(self, name: str, original):
        def wrapper(*args, **kwargs):
            if not self.active or self._inside_a_counted_call or not syncs(name, args, kwargs):
                return original(*args, **kwargs)
            self.calls[name] += 1
            self._inside_a_counted_call = True
            try:
                return original(*args, **kwargs)
            finally:
                self._inside_a_counted_call = False

        return wrapper

    def _index_checking(self, name: str, original):
        def wrapper(tensor, index, *args):
            if self.active:
                for part in index if isinstance(index, tuple) else (index,):
                    if isinstance(part, list) or (isinstance(part, torch.Tensor) and part.dtype == torch.bool):
                        self.calls[f"{name}[{type(part).__name__}]"] += 1
            return original(tensor, index, *args)

        return wrapper


def syncs(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether this call of a counted function or method waits for the device."""
    short = name.rpartition(".")[2]
    if short in ("any", "all"):
        return len(args) == 1 and "dim" not in kwargs
    if name == "torch.where":
        return len(args) + len(kwargs) == 1
    if name == "to":
        return copies_to_the_host(args[0], [*args[1:], kwargs.get("device")])
    if name == "wp.copy":
        destination = args[0] if args else kwargs["dest"]
        source = args[1] if len(args) > 1 else kwargs["src"]
        return destination.device.is_cpu and not source.device.is_cpu
    return True


def copies_to_the_host(tensor: torch.Tensor, targets: list[object]) -> bool:
    """Whether ``tensor.to(*targets)`` copies it to the CPU: a CPU device named in so many words ("cpu": the host
    whatever the env's device is), or any CPU device for a tensor that is not on the CPU."""
    for target in targets:
        if isinstance(target, str) and torch.device(target).type == "cpu":
            return True
        if isinstance(target, torch.device) and target.type == "cpu" and tensor.device.type != "cpu":
            return True
    return False


@pytest.mark.parametrize("task", TASKS)
def test_env_steps_make_no_host_syncs(task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(task, "cpu")
    logger = make_logger(env)
    counter = SyncCounter(monkeypatch)
    counter.active = True
    for _ in steps(env, logger):
        pass
    counter.active = False
    assert counter.calls == Counter(), f"host syncs in {STEPS} env steps: {dict(counter.calls)}"
    logger._read_episode_statistics()
    ended = len(logger.lenbuffer)
    assert ended > 0, "episodes ended (and were reset) during the counted steps"


def test_the_counter_sees_the_syncs_of_index_based_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter is not blind: the old way (nonzero() on the done mask, a list index) is counted."""
    counter = SyncCounter(monkeypatch)
    done = torch.tensor([True, False, True])
    counter.active = True
    done.nonzero()
    torch.zeros(3, 4)[:, [0, 2]]
    torch.zeros(3)[done] = 1.0
    counter.active = False
    assert counter.calls == Counter({"nonzero": 1, "__getitem__[list]": 1, "__setitem__[Tensor]": 1})


@pytest.mark.gpu
@pytest.mark.parametrize("task", sorted(registered_tasks()))
def test_env_steps_make_no_host_syncs_on_a_gpu(task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's own check: any synchronizing call of torch's in the steps raises; the counter sees Warp's, which
    CUDA's check cannot."""
    env = make_env(task, "cuda:0")
    assert env._graph is not None, "the physics step was not captured as a graph (the steps would run eagerly)"
    logger = make_logger(env)
    rollout = steps(env, logger)
    next(rollout)  # the first step may allocate and load (not part of the steady state)
    torch.cuda.synchronize()
    counter = SyncCounter(monkeypatch)
    counter.active = True
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in rollout:
            pass
    finally:
        torch.cuda.set_sync_debug_mode("default")
        counter.active = False
    assert counter.calls == Counter(), f"host syncs in {STEPS - 1} env steps: {dict(counter.calls)}"


ENVS: dict[str, MjWarpEnv] = {}
"""One cart-pole per device for the planted syncs (building one takes a second or two)."""


def cartpole(device: str) -> MjWarpEnv:
    if device not in ENVS:
        ENVS[device] = make_env("cartpole-balance", device)
    return ENVS[device]


def on_the_gpu(name: str, plant):
    return pytest.param(name, plant, "cuda:0", marks=pytest.mark.gpu, id=name)


def on_the_cpu(name: str, plant):
    return pytest.param(name, plant, "cpu", id=name)


PLANTED = [
    on_the_cpu("item", lambda env: env.qpos.sum().item()),
    on_the_cpu("tolist", lambda env: env.episode_length_buf.tolist()),
    on_the_cpu("__bool__", lambda env: bool(env.terminated[0])),
    on_the_cpu("any", lambda env: env.terminated.any()),
    on_the_cpu("torch.any", lambda env: torch.any(env.terminated)),
    on_the_cpu("torch.all", lambda env: torch.all(env.terminated)),
    on_the_cpu("torch.where", lambda env: torch.where(env.terminated)),
    on_the_cpu("unique", lambda env: env.episode_length_buf.unique()),
    on_the_cpu("torch.unique", lambda env: torch.unique(env.episode_length_buf)),
    on_the_cpu("masked_select", lambda env: env.qpos.masked_select(env.qpos > 0)),
    on_the_cpu("torch.masked_select", lambda env: torch.masked_select(env.qpos, env.qpos > 0)),
    on_the_cpu("nonzero", lambda env: env.terminated.nonzero()),
    on_the_cpu("torch.nonzero", lambda env: torch.nonzero(env.terminated)),
    on_the_cpu("torch.argwhere", lambda env: torch.argwhere(env.terminated)),
    on_the_cpu("cpu", lambda env: env.qpos.cpu()),
    on_the_cpu("to", lambda env: env.qpos.to("cpu")),
    on_the_cpu("numpy", lambda env: env.qpos.numpy()),
    on_the_cpu("__getitem__[Tensor]", lambda env: env.qpos[env.terminated]),
    on_the_cpu("wp.synchronize", lambda env: wp.synchronize()),
    on_the_cpu("wp.synchronize_device", lambda env: wp.synchronize_device(env.wp_data.qpos.device)),
    on_the_cpu("wp.array.numpy", lambda env: env.wp_data.qpos.numpy()),
    on_the_cpu("wp.array.list", lambda env: env.wp_data.time.list()),
    on_the_gpu("to", lambda env: env.qpos.to(torch.device("cpu"))),
    on_the_gpu("wp.copy", lambda env: wp.copy(wp.empty_like(env.wp_data.qpos, device="cpu"), env.wp_data.qpos)),
    on_the_gpu("wp.synchronize_stream", lambda env: wp.synchronize_stream(wp.get_stream(env.wp_data.qpos.device))),
    on_the_gpu("wp.synchronize_event", lambda env: wp.synchronize_event(wp.get_stream().record_event())),
]


@pytest.mark.parametrize(("name", "plant", "device"), PLANTED)
def test_a_sync_planted_in_the_physics_step_is_counted(
    name: str, plant, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One syncing call inside ``simulate()`` (where Warp runs), once per env step, is counted once per step."""
    env = cartpole(device)
    simulate = env.simulate

    def simulate_and_sync() -> None:
        simulate()
        with env._warp_scope():
            plant(env)

    monkeypatch.setattr(env, "simulate", simulate_and_sync)
    counter = SyncCounter(monkeypatch)
    counter.active = True
    for _ in steps(env, make_logger(env)):
        pass
    counter.active = False
    assert counter.calls == Counter({name: STEPS})


def test_device_side_forms_are_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """any/all along a dimension, three-argument where, and copies between arrays on one device stay on it."""
    env = cartpole("cpu")
    counter = SyncCounter(monkeypatch)
    counter.active = True
    torch.any(env.terminated, dim=0)
    env.qpos.all(1)
    torch.where(env.terminated, env.episode_length_buf, 0)
    env.qpos.to(env.device)
    env.qpos.to(torch.float64)
    wp.copy(wp.empty_like(env.wp_data.qpos), env.wp_data.qpos)
    counter.active = False
    assert counter.calls == Counter()


class IndexedResets:
    """Resets as mjdist did them before masks: ``nonzero()`` on the done mask, then writes through the indices
    (the rows of the same full draw, so both ways consume the generator alike)."""

    def _start_episodes(self, starting: torch.Tensor) -> None:
        ids = starting.nonzero().squeeze(-1)
        qpos, qvel = self.initial_state()
        self.qpos[ids] = qpos[ids]
        self.qvel[ids] = qvel[ids]
        self.ctrl[ids] = 0.0
        for state in self._state_to_clear:
            state[ids] = 0.0
        self.episode_length_buf[ids] = 0
        self.actions[ids] = 0.0
        self.prev_actions[ids] = 0.0
        self.episode_sums[ids] = 0.0
        self.reset_task_state(starting)


@pytest.mark.parametrize("task", TASKS)
def test_mask_resets_give_bitwise_the_trajectories_of_index_resets(task: str) -> None:
    masked = make_env(task, "cpu")
    env_class = type(masked)
    indexed_class = type(f"Indexed{env_class.__name__}", (IndexedResets, env_class), {})
    indexed = indexed_class(masked.cfg, device="cpu", seed=0)
    generator = torch.Generator().manual_seed(2)
    resets = 0
    for _ in range(3 * STEPS):
        actions = 4 * torch.rand(N, masked.num_actions, generator=generator) - 2
        obs, reward, terminated, time_outs, extras = masked.step(actions)
        indexed_obs, indexed_reward, indexed_terminated, indexed_time_outs, indexed_extras = indexed.step(actions)
        for got, expected in ((obs["policy"], indexed_obs["policy"]), (obs["critic"], indexed_obs["critic"]),
                              (reward, indexed_reward), (terminated, indexed_terminated),
                              (time_outs, indexed_time_outs), (masked.qpos, indexed.qpos), (masked.qvel, indexed.qvel),
                              (masked.episode_sums, indexed.episode_sums)):  # fmt: skip
            assert torch.equal(got, expected)
        for name, mean in extras["log"].items():  # the same means, summed in another order
            torch.testing.assert_close(mean, indexed_extras["log"][name], equal_nan=True)
        resets += int((terminated | time_outs).sum())
    assert resets >= N, "episodes ended and were reset during the comparison"


def test_logger_fills_rsl_rls_buffers_exactly_as_rsl_rl_does() -> None:
    """The same returns and lengths, in the same order, as rsl_rl's per-step nonzero() bookkeeping; the env's
    per-step means (NaN where no episode ended) become one mean per name over the steps where some did."""
    from rsl_rl.utils.logger import Logger

    env_like = dataclasses.replace(BALANCE.env, num_envs=N)
    ours = make_logger(type("Env", (), {"cfg": env_like, "num_envs": N, "device": torch.device("cpu")})())
    reference = Logger(None, BALANCE.agent.to_rsl_rl(""), env_like, N, False, 1, 0, "cpu")
    reference.writer = object()
    generator = torch.Generator().manual_seed(3)
    ended_means = []
    for step in range(40):
        rewards = torch.rand(N, generator=generator)
        dones = (torch.rand(N, generator=generator) < 0.1).long()
        mean = torch.tensor(float(step)) if dones.any() else torch.tensor(float("nan"))
        if dones.any():
            ended_means.append(float(step))
        ours.process_env_step(rewards, dones, {"log": {"Episode_Reward/x": mean}})
        reference.process_env_step(rewards, dones, {})
    ours._read_episode_statistics()
    assert list(ours.rewbuffer) == list(reference.rewbuffer) and len(ours.rewbuffer) > 0
    assert list(ours.lenbuffer) == list(reference.lenbuffer)
    assert torch.equal(ours.cur_reward_sum, reference.cur_reward_sum)
    assert ours.ep_extras == [{"Episode_Reward/x": pytest.approx(sum(ended_means) / len(ended_means))}]
