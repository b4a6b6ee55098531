"""innerlab envs through gymnasium: check_env, make with params, make_vec, bad actions."""

import functools
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from doc_examples import run_python_blocks
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import innerlab
from innerlab.envs import list_envs, make
from innerlab.envs.gymnasium_adapter import (
    GymnasiumEnv,
    GymnasiumVectorEnv,
    _to_numpy,
    gymnasium_id,
    register_gymnasium_envs,
    split_key,
)

ENV_NAMES = list_envs()


def close(actual, expected):
    """Equal up to float32 rounding: differently compiled XLA programs may fuse float
    arithmetic differently (a last-bit difference), never more. Integers and bools exact."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(actual, expected)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _observe(env, params, state):
    return env.observe(state, params)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _step_env(env, params, key, state, action):
    """The reference: the functional env's own step, compiled once per env for all tests."""
    return env.step_env(key, state, action, params)
NUM_ENVS = 6


def test_every_env_is_registered_on_import():
    assert innerlab.envs.list_envs() == ENV_NAMES
    for name in ENV_NAMES:
        spec = gymnasium.spec(f"innerlab/{name}")
        assert spec.kwargs == {"env": name}
        assert spec.vector_entry_point is not None
    assert register_gymnasium_envs() == []  # idempotent


@pytest.mark.parametrize("name", ENV_NAMES)
def test_check_env_passes(name):
    env = gymnasium.make(gymnasium_id(name), render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # gymnasium's advice that an unbounded Box is "probably too low/high" is not a
        # defect for envs with continuous observations; every other warning fails.
        warnings.filterwarnings("default", message=".*infinity.*probably too")
        check_env(env.unwrapped)
    frame = env.unwrapped.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3


@pytest.mark.parametrize("name", ENV_NAMES)
def test_episode_matches_the_functional_env(name):
    """Every step returns exactly what ``step_env`` returns for the adapter's state and key."""
    env = GymnasiumEnv(name, render_mode="ansi")
    func, params = env.func_env, env.params
    observe = lambda s: _observe(func, params, s)
    step_env = lambda k, s, a: _step_env(func, params, k, s, a)
    obs, info = env.reset(seed=3)
    close(obs, np.asarray(observe(env.state)))
    assert isinstance(env.render(), str) and env.render()
    env.action_space.seed(0)
    for _ in range(params.max_steps):
        action = env.action_space.sample()
        _, step_key, _ = split_key(env.key)
        expected = _to_numpy(step_env(step_key, env.state, jnp.asarray(action)))
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs in env.observation_space
        close(obs, expected[0])
        close(obs, np.asarray(observe(env.state)))
        assert isinstance(reward, float)
        close(reward, expected[2])
        assert (terminated, truncated) == (bool(expected[3]), bool(expected[4]))
        assert info.keys() == expected[5].keys()
        for k in info:
            close(info[k], expected[5][k])
        if terminated or truncated:
            break
    assert terminated or truncated, "no episode ended within params.max_steps steps"
    with pytest.raises(gymnasium.error.ResetNeeded, match="call reset"):
        env.step(env.action_space.sample())


def test_make_passes_params_through():
    env = gymnasium.make("innerlab/Orchard-v0", split="test", n_objects=3, height=6)
    assert env.unwrapped.params.split == "test"
    assert env.unwrapped.params.n_objects == 3
    assert env.observation_space.shape[:2] == (6, 7)
    with pytest.raises(TypeError, match="unknown param.*'colour_count'"):
        gymnasium.make("innerlab/Orchard-v0", colour_count=3)
    with pytest.raises(ValueError, match="param 'split'"):
        gymnasium.make("innerlab/Orchard-v0", split="validation")


def test_same_seed_same_episode_different_seed_differs():
    env = GymnasiumEnv("Orchard-v0")

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for action in [0, 1, 2, 3, 1, 2]:
            trace.append(env.step(action)[0])
        return np.stack(trace)

    np.testing.assert_array_equal(episode(7), episode(7))
    assert not np.array_equal(episode(7), episode(8))


@pytest.mark.parametrize("bad", [4, -1, 1.0, np.array([0, 1]), "up"])
def test_out_of_space_action_is_a_clear_error(bad):
    env = gymnasium.make("innerlab/Orchard-v0")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"argument 'action' must be an integer in \[0, 4\)"):
        env.step(bad)


# --------------------------------------------------------------------------- vector env


# Compiling each env's batched step costs seconds; the default suite checks the
# vector adapter on Orchard-v0 and `make test-slow` on every other env.
VECTOR_ENV_CASES = [
    name if name == "Orchard-v0" else pytest.param(name, marks=pytest.mark.slow)
    for name in ENV_NAMES
]


@pytest.mark.parametrize("name", VECTOR_ENV_CASES)
def test_make_vec_is_batched_and_matches_functional_env(name):
    """Batched arrays, exactly ``vmap(step_env)`` on the adapter's states and keys, auto-reset."""
    venv = gymnasium.make_vec(gymnasium_id(name), num_envs=NUM_ENVS)
    assert isinstance(venv, GymnasiumVectorEnv)
    assert venv.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    func, params = venv.func_env, venv.params
    # the reference: the single-env step_env and observe, one sub-env at a time
    # (a loop on purpose: it checks the vmap, and reuses kernels compiled above)
    row = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
    stack = lambda rows: jax.tree.map(lambda *xs: np.stack(xs), *rows)

    def step_env(keys, states, actions):
        states = jax.device_get(states)
        return stack(
            [
                _to_numpy(_step_env(func, params, keys[i], row(states, i), actions[i]))
                for i in range(NUM_ENVS)
            ]
        )

    def observe(states):
        states = jax.device_get(states)
        return np.stack([_observe(func, params, row(states, i)) for i in range(NUM_ENVS)])
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (NUM_ENVS, *venv.single_observation_space.shape)
    assert obs in venv.observation_space
    close(obs, observe(venv.state))
    venv.action_space.seed(0)
    ended = np.zeros(NUM_ENVS, bool)
    for _ in range(params.max_steps):
        actions = venv.action_space.sample()
        _, step_keys, _ = split_key(venv.key, NUM_ENVS)
        expected = _to_numpy(step_env(step_keys, venv.state, jnp.asarray(actions)))
        obs, reward, terminated, truncated, info = venv.step(actions)
        assert obs.shape == (NUM_ENVS, *venv.single_observation_space.shape)
        assert reward.shape == terminated.shape == truncated.shape == (NUM_ENVS,)
        assert terminated.dtype == truncated.dtype == np.bool_
        close(reward, expected[2])
        np.testing.assert_array_equal(terminated, expected[3])
        np.testing.assert_array_equal(truncated, expected[4])
        for k, v in expected[5].items():
            close(info[k], v)
        # observations of the new state: the next step's for running envs, a fresh
        # episode's for finished ones (whose last observation is in final_obs)
        close(obs, observe(venv.state))
        done = terminated | truncated
        close(obs[~done], expected[0][~done])
        if done.any():
            np.testing.assert_array_equal(info["_final_obs"], done)
            close(info["final_obs"][done], expected[0][done])
        else:
            assert "final_obs" not in info
        ended |= done
    assert ended.all(), "every sub-env must end an episode within params.max_steps steps"


def test_make_vec_passes_params_through():
    venv = gymnasium.make_vec("innerlab/Orchard-v0", num_envs=4, split="test", n_objects=2)
    assert venv.params.split == "test" and venv.params.n_objects == 2
    assert venv.num_envs == 4 and venv.observation_space.shape == (4, 7, 7, 9)


def test_make_vec_seeding_and_bad_actions():
    venv = gymnasium.make_vec("innerlab/Orchard-v0", num_envs=NUM_ENVS)
    first, _ = venv.reset(seed=5)
    again, _ = venv.reset(seed=5)
    np.testing.assert_array_equal(first, again)
    other, _ = venv.reset(seed=6)
    assert not np.array_equal(first, other)
    assert not all(np.array_equal(first[0], first[i]) for i in range(1, NUM_ENVS))
    with pytest.raises(ValueError, match=r"'actions' must be .* in \[0, 4\).*got 7 for sub-env 2"):
        venv.step(np.array([0, 1, 7, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"shape \(6,\) .*got int64 array of shape \(3,\)"):
        venv.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"'actions' must be an integer array"):
        venv.step(np.zeros(NUM_ENVS, np.float32))
    with pytest.raises(ValueError, match="'num_envs' must be an int >= 1"):
        GymnasiumVectorEnv("Orchard-v0", num_envs=0)


def test_make_vec_partial_reset_keeps_other_envs():
    venv = GymnasiumVectorEnv("Orchard-v0", num_envs=NUM_ENVS)
    venv.reset(seed=1)
    obs, *_ = venv.step(np.arange(NUM_ENVS) % 4)
    mask = np.arange(NUM_ENVS) == 0
    reset_obs, _ = venv.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(reset_obs[1:], obs[1:])
    assert int(np.asarray(venv.state.time)[0]) == 0


def test_adapter_accepts_env_instance_and_params():
    func, params = make("Orchard-v0", split="test")
    env = GymnasiumEnv(func, params, max_steps=5)
    assert env.params.split == "test" and env.params.max_steps == 5
    with pytest.raises(TypeError, match="argument 'env' must be an innerlab env name"):
        GymnasiumEnv(42)
    with pytest.raises(KeyError, match="unknown environment 'Nope-v0'"):
        GymnasiumEnv("Nope-v0")


@pytest.mark.slow
def test_docs_gymnasium_examples_run():
    """Every python block of docs/gymnasium.md runs (it trains SB3 briefly, so it is slow)."""
    run_python_blocks("gymnasium.md", min_blocks=4)
