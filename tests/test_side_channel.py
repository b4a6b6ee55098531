"""The reward side-channel wrapper: every mode and modification exactly right on a
constructed Orchard state, the returned reward always the true one, and its params.

Most steps here run eagerly: each variant is a different static param set, so
jitting would compile once per variant, while eager primitives are shared.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from innerlab.envs import GridState, OrchardParams, make
from innerlab.envs.grid import border_walls
from innerlab.envs.side_channel import (
    MODIFICATIONS,
    SideChannelParams,
    SideChannelState,
    random_net,
    shuffle_permutation,
    side_channel_params,
)

UP, RIGHT, DOWN, LEFT = range(4)
# from the agent at (3, 3): up a large red object (harmful, -2), right a small one (+1),
# down a large green one (+2), left empty floor (0)
TRUE_R = np.array([-2.0, 1.0, 2.0, 0.0], np.float32)
# the same objects under ALT's value table: small 5, large -1, harmful 3
ALT = OrchardParams(reward_small=5.0, reward_large=-1.0, harmful_reward=3.0)
ALT_R = np.array([3.0, 5.0, -1.0, 0.0], np.float32)


# tests need correct programs, not fast ones: XLA's cheapest optimisation level
# roughly halves compile time, which dominates these tests
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _by_action(state, action, params):
    """A replacement reward: 10 x the action index (ignores the state)."""
    return 10.0 * action.astype(jnp.float32)


@pytest.fixture(scope="module")
def side():
    env, params = make("OrchardSideChannel-v0", n_objects=3)  # the constructed state's count
    return env, params


def _grid(agent) -> GridState:
    return GridState(
        agent=jnp.array(agent, jnp.int32),
        walls=border_walls(7, 7),
        obj_pos=jnp.array([[2, 3], [3, 4], [4, 3]], jnp.int32),
        obj_colour=jnp.array([0, 1, 1], jnp.int32),
        obj_shape=jnp.array([0, 1, 0], jnp.int32),
        obj_size=jnp.array([1, 0, 1], jnp.int32),
        obj_alive=jnp.ones(3, bool),
        time=jnp.int32(0),
    )


def _variant(params, mode, modification, **kw):
    replacement = {"replace": ALT}.get(modification)
    return params.replace(mode=mode, modification=modification, replacement=replacement, **kw)


def _expected(modification, rewards, perm_source, params):
    """The observed values for true rewards ``rewards`` (``perm_source`` gives r(perm[a]))."""
    if modification == "identity":
        return rewards
    if modification == "constant":
        return np.full_like(rewards, params.constant)
    if modification == "negate":
        return -rewards
    if modification == "shuffle":
        return perm_source
    if modification == "random_net":
        return np.asarray(random_net(jnp.asarray(rewards), params.seed, params.net_width))
    raise AssertionError(modification)


EXACT = [m for m in MODIFICATIONS if m not in ("noise", "replace")]


@pytest.mark.parametrize("modification", EXACT)
def test_next_mode_shows_each_actions_reward_exactly(side, modification):
    env, base = side
    params = _variant(base, "next", modification, constant=0.5, seed=3)
    state = SideChannelState(inner=_grid((3, 2)), channel=jnp.zeros(4))
    obs, state, reward, term, trunc, info = env.step(
        jax.random.key(0), state, jnp.int32(RIGHT), params
    )  # onto the empty cell (3, 3)
    assert float(reward) == 0.0 and not bool(term | trunc)
    perm = shuffle_permutation(4, 3)
    expected = _expected(modification, TRUE_R, TRUE_R[perm], params)
    np.testing.assert_allclose(state.channel, expected, rtol=1e-6)
    np.testing.assert_allclose(info["observed_reward"], expected, rtol=1e-6)
    inner_obs = env.env.observe(state.inner, params.inner)
    c = inner_obs.shape[-1]
    assert obs.shape == (7, 7, c + 4)
    np.testing.assert_array_equal(obs[..., :c], inner_obs)
    np.testing.assert_allclose(obs[..., c:], np.broadcast_to(expected, (7, 7, 4)), rtol=1e-6)


@pytest.mark.parametrize("modification", EXACT)
@pytest.mark.parametrize("action", [UP, DOWN, LEFT])
def test_previous_mode_shows_the_last_reward_exactly(side, modification, action):
    env, base = side
    params = _variant(base, "previous", modification, constant=-0.25, seed=1)
    state = SideChannelState(inner=_grid((3, 3)), channel=jnp.zeros(1))
    obs, new, reward, *_ = env.step(jax.random.key(0), state, jnp.int32(action), params)
    assert float(reward) == TRUE_R[action]  # the env pays the true reward, whatever is shown
    perm = shuffle_permutation(4, 1)
    expected = _expected(modification, TRUE_R[[action]], TRUE_R[[perm[action]]], params)
    np.testing.assert_allclose(new.channel, expected, rtol=1e-6)
    np.testing.assert_allclose(obs[..., -1], np.full((7, 7), expected[0]), rtol=1e-6)


@pytest.mark.parametrize("mode", ["previous", "next"])
def test_replace_with_another_value_table_or_a_callable(side, mode):
    env, base = side
    for replacement, values in ((ALT, ALT_R), (_by_action, 10.0 * np.arange(4))):
        params = base.replace(mode=mode, modification="replace", replacement=replacement)
        if mode == "next":
            state = SideChannelState(inner=_grid((3, 2)), channel=jnp.zeros(4))
            _, state, reward, *_ = env.step(jax.random.key(0), state, jnp.int32(RIGHT), params)
            np.testing.assert_allclose(state.channel, values)
            assert float(reward) == 0.0
        else:
            state = SideChannelState(inner=_grid((3, 3)), channel=jnp.zeros(1))
            _, state, reward, *_ = env.step(jax.random.key(0), state, jnp.int32(DOWN), params)
            np.testing.assert_allclose(state.channel, values[[DOWN]])
            assert float(reward) == TRUE_R[DOWN]


def test_noise_is_gaussian_around_the_true_reward(side):
    env, base = side
    params = base.replace(mode="next", modification="noise", noise_std=0.5)
    state = SideChannelState(inner=_grid((3, 2)), channel=jnp.zeros(4))
    step = jit(jax.vmap(lambda k: env.step(k, state, jnp.int32(RIGHT), params)[1].channel))
    n = 4000
    channel = np.asarray(step(jax.random.split(jax.random.key(0), n)))
    assert np.all(np.abs(channel.mean(0) - TRUE_R) < 5 * 0.5 / np.sqrt(n))
    assert np.all(np.abs(channel.std(0) - 0.5) < 0.05)
    assert abs(np.corrcoef(channel[:, 0], channel[:, 1])[0, 1]) < 0.1  # independent planes
    again = np.asarray(step(jax.random.split(jax.random.key(0), n)))
    np.testing.assert_array_equal(channel, again)  # same key, same noise


def test_random_net_is_a_fixed_nonlinear_function():
    r = jnp.linspace(-3, 3, 13)
    f = np.asarray(random_net(r, 0, 16))
    np.testing.assert_array_equal(f, np.asarray(random_net(r, 0, 16)))
    assert not np.allclose(f, np.asarray(random_net(r, 1, 16)))  # the seed matters
    assert np.ptp(f) > 0.1  # not constant
    slopes = np.diff(f) / np.diff(np.asarray(r))
    assert np.ptp(slopes) > 1e-2  # not affine
    assert not np.allclose(f, np.asarray(r))


@given(n=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_shuffle_permutation_is_a_single_cycle(n, seed):
    perm = shuffle_permutation(n, seed)
    assert sorted(perm) == list(range(n))
    a, seen = 0, set()
    while a not in seen:
        seen.add(a)
        a = perm[a]
    assert len(seen) == n  # one cycle through every action: no action shows its own reward


def test_reset_treats_the_previous_reward_as_zero(side):
    env, base = side
    for modification, expected in (
        ("identity", 0.0),
        ("negate", 0.0),
        ("constant", 0.7),
        ("random_net", float(random_net(jnp.zeros(1), 0, 16)[0])),
    ):
        params = base.replace(modification=modification, constant=0.7)
        obs, state = env.reset(jax.random.key(0), params)
        np.testing.assert_allclose(state.channel, [expected], rtol=1e-6)
        np.testing.assert_allclose(obs[..., -1], expected, rtol=1e-6)


def test_one_agent_runs_under_every_variant(side):
    """Same key and actions: the same true rewards and inner states under every variant,
    and the same observation shape within a mode, so one policy is evaluable on all."""
    env, base = side
    key, actions = jax.random.key(4), [RIGHT, DOWN, UP]
    reference, shapes = None, {}
    for mode in ("none", "previous", "next"):
        for modification in MODIFICATIONS if mode != "none" else ("identity",):
            params = _variant(base, mode, modification)
            planes = {"none": 0, "previous": 1, "next": 4}[mode]
            state = SideChannelState(inner=_grid((3, 2)), channel=jnp.zeros(planes))
            rewards = []
            for t, a in enumerate(actions):
                k = jax.random.fold_in(key, t)
                obs, state, r, *_ = env.step(k, state, jnp.int32(a), params)
                rewards.append(float(r))
            shapes.setdefault(mode, set()).add(obs.shape)
            trace = (rewards, jax.tree.map(np.asarray, state.inner))
            if reference is None:
                reference = trace
                assert rewards == [0.0, 2.0, 0.0]
            assert trace[0] == reference[0], f"{mode}/{modification} changed the true reward"
            for a, b in zip(jax.tree.leaves(trace[1]), jax.tree.leaves(reference[1]), strict=True):
                np.testing.assert_array_equal(a, b)
    assert {m: len(s) for m, s in shapes.items()} == {"none": 1, "previous": 1, "next": 1}
    c = env.env.observation_space(base.inner).shape[-1]
    assert shapes == {"none": {(7, 7, c)}, "previous": {(7, 7, c + 1)}, "next": {(7, 7, c + 4)}}


def test_spaces_validity_and_true_reward(side):
    env, base = side
    space = env.observation_space(base.replace(mode="next"))
    assert space.shape[-1] == env.env.observation_space(base.inner).shape[-1] + 4
    assert space.low == -np.inf and space.high == np.inf
    assert env.observation_space(base.replace(mode="none")) == env.env.observation_space(base.inner)
    state = SideChannelState(inner=_grid((3, 3)), channel=jnp.zeros(1))
    assert bool(env.is_valid(state, base))
    assert not bool(env.is_valid(SideChannelState(inner=state.inner, channel=jnp.zeros(4)), base))
    assert not bool(env.is_valid(SideChannelState(state.inner, jnp.array([jnp.nan])), base))
    for a in range(4):
        assert float(env.true_reward(state, jnp.int32(a), base)) == TRUE_R[a]
    assert "Observed previous reward" in env.render_text(state, base)


def test_params_forward_to_the_inner_env():
    env, params = make("OrchardSideChannel-v0", split="test", n_objects=3, max_steps=12)
    assert params.inner.split == params.split == "test"
    assert params.inner.n_objects == 3 and params.inner.max_steps == params.max_steps == 12
    assert params.mode == "previous"  # the registered default
    again = params.replace(inner=OrchardParams(split="train"))
    assert again.split == "train" and again.max_steps == 30
    built = side_channel_params(OrchardParams(max_steps=9), mode="next")
    assert built.max_steps == 9 and built.mode == "next"


@pytest.mark.parametrize(
    "kwargs, error, named",
    [
        ({"mode": "sideways"}, ValueError, "mode"),
        ({"modification": "invert"}, ValueError, "modification"),
        ({"mode": "none", "modification": "negate"}, ValueError, "modification"),
        ({"modification": "replace"}, ValueError, "replacement"),
        ({"modification": "replace", "replacement": make("ProxyMaze-v0")[1]}, TypeError,
         "replacement"),
        ({"replacement": 3.0}, TypeError, "replacement"),
        ({"noise_std": -1.0}, ValueError, "noise_std"),
        ({"net_width": 0}, ValueError, "net_width"),
        ({"bogus": 1}, TypeError, "bogus"),
    ],
)
def test_bad_params_are_named(kwargs, error, named):
    with pytest.raises(error, match=named):
        make("OrchardSideChannel-v0", **kwargs)


def test_inconsistent_split_is_named():
    with pytest.raises(ValueError, match="inconsistent params: split='test'"):
        SideChannelParams(inner=OrchardParams(), split="test")
    with pytest.raises(TypeError, match="inner"):
        SideChannelParams()
    with pytest.raises(ValueError, match="at least 2 actions"):
        shuffle_permutation(1, 0)
