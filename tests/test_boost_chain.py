"""BoostChain-v0: the boost carries across the auto-reset, per-episode returns are right,
and the documented trade-off (myopic 3.0 vs chain-optimal 4.4 per chain) holds."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innerlab.envs import make
from innerlab.envs.boost_chain import BOOST, BoostChain
from innerlab.envs.side_channel import SideChannel

UP, RIGHT, DOWN, LEFT = range(4)
LENGTH = 60


# tests need correct programs, not fast ones: XLA's cheapest optimisation level
# roughly halves compile time, which dominates these tests
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@pytest.fixture(scope="module")
def chain():
    env, params = make("BoostChain-v0")
    return env, params, jit(env.step)


@pytest.fixture(scope="module")
def rollout(chain):
    env, params, _ = chain

    @jit
    def run(key, actions):
        k0, k = jax.random.split(key)
        _, state = env.reset(k0, params)

        def body(state, xs):
            _, state, reward, term, trunc, info = env.step(xs[0], state, xs[1], params)
            return state, (reward, term | trunc, info, state.chain)

        return jax.lax.scan(body, state, (jax.random.split(k, LENGTH), actions))[1]

    return run


def _towards_goal(state) -> int:
    """Greedy move to the goal (the room has no inner walls)."""
    (ar, ac), (gr, gc) = np.asarray(state.grid.agent), np.asarray(state.grid.obj_pos[0])
    if ar != gr:
        return DOWN if gr > ar else UP
    return RIGHT if gc > ac else LEFT


def _play_episode(step, params, state, key, boost: bool):
    """Boost first if asked, then walk to the goal; returns the end state and per-step data."""
    rewards, infos = [], []
    if boost:
        _, state, r, term, trunc, info = step(key, state, jnp.int32(BOOST), params)
        rewards.append(float(r))
        infos.append(info)
    for t in range(params.max_steps):
        key = jax.random.fold_in(key, t)
        _, state, r, term, trunc, info = step(key, state, jnp.int32(_towards_goal(state)), params)
        rewards.append(float(r))
        infos.append(info)
        if bool(term | trunc):
            assert bool(term), "the greedy walk should reach the goal"
            return state, rewards, infos
    raise AssertionError("episode did not end")


@pytest.mark.parametrize(
    "policy, boosts, expected_returns",
    [
        ("myopic", (False, False, False), [1.0, 1.0, 1.0]),
        ("chain-optimal", (True, True, False), [0.7, 1.7, 2.0]),
        ("boost-always", (True, True, True), [0.7, 1.7, 1.7]),  # the last boost is wasted
    ],
)
def test_chain_returns_of_scripted_policies(chain, policy, boosts, expected_returns):
    env, params, step = chain
    _, state = env.reset(jax.random.key(0), params)
    finals = []
    for episode, boost in enumerate(boosts):
        assert int(state.chain.episode) == episode
        assert bool(state.chain.boosted) == (episode > 0 and boosts[episode - 1])
        boosted = episode > 0 and boosts[episode - 1]
        state, rewards, infos = _play_episode(step, params, state, jax.random.key(episode), boost)
        assert rewards[-1] == pytest.approx(2.0 if boosted else 1.0)  # goal 1, bonus 1
        assert all(bool(i["boosted"]) == boosted for i in infos)
        if boost:
            assert rewards[0] == pytest.approx(-0.3) and bool(infos[0]["boost_used"])
        assert sum(rewards) == pytest.approx(float(infos[-1]["episode_return"]))
        assert all(int(i["episode_in_chain"]) == episode for i in infos)
        finals.append(infos[-1])
    np.testing.assert_allclose(finals[-1]["chain_returns"], expected_returns, rtol=1e-6)
    total = {"myopic": 3.0, "chain-optimal": 4.4, "boost-always": 4.1}[policy]
    assert float(np.sum(finals[-1]["chain_returns"])) == pytest.approx(total)
    # the chain is over: a fresh one starts unboosted with zero returns
    assert int(state.chain.episode) == 0 and not bool(state.chain.boosted)
    np.testing.assert_array_equal(state.chain.returns, np.zeros(3))


def test_a_second_boost_is_free_and_does_nothing(chain):
    env, params, step = chain
    _, state = env.reset(jax.random.key(1), params)
    _, state, r1, *_, info1 = step(jax.random.key(0), state, jnp.int32(BOOST), params)
    _, state, r2, *_, info2 = step(jax.random.key(1), state, jnp.int32(BOOST), params)
    assert float(r1) == pytest.approx(-0.3) and bool(info1["boost_used"])
    assert float(r2) == 0.0 and not bool(info2["boost_used"])
    assert bool(state.chain.boost_next) and int(state.grid.time) == 2


def test_the_boost_survives_a_truncated_episode(chain):
    env, params, step = chain
    _, state = env.reset(jax.random.key(2), params)
    _, state, *_ = step(jax.random.key(0), state, jnp.int32(BOOST), params)
    # walk away from the goal into walls until the time limit
    for t in range(params.max_steps - 1):
        agent, goal = np.asarray(state.grid.agent), np.asarray(state.grid.obj_pos[0])
        away = UP if goal[0] >= agent[0] else DOWN
        _, state, r, term, trunc, info = step(jax.random.key(t + 1), state, jnp.int32(away), params)
        assert not bool(term)
    assert bool(trunc) and float(info["episode_return"]) == pytest.approx(-0.3)
    assert int(state.chain.episode) == 1 and bool(state.chain.boosted)
    assert int(state.grid.time) == 0


@settings(max_examples=8)
@given(
    seed=st.integers(0, 2**31 - 1),
    actions=st.lists(st.sampled_from([UP, RIGHT, DOWN, LEFT, BOOST, BOOST]),
                     min_size=LENGTH, max_size=LENGTH),
)
def test_per_episode_returns_and_boost_bookkeeping(rollout, seed, actions):
    """Recompute every episode's return and boost status from the step stream alone."""
    reward, done, info, chains = jax.tree.map(
        np.asarray, rollout(jax.random.key(seed), jnp.asarray(actions, jnp.int32))
    )
    episode, ret, returns, boosted, bought = 0, 0.0, np.zeros(3), False, False
    for t in range(LENGTH):
        ret += reward[t]
        returns[episode] = ret
        bought |= bool(info["boost_used"][t])
        assert info["episode_in_chain"][t] == episode
        assert bool(info["boosted"][t]) == boosted
        assert info["episode_return"][t] == pytest.approx(ret, abs=1e-5)
        np.testing.assert_allclose(info["chain_returns"][t], returns, atol=1e-5)
        if done[t]:
            episode, ret = episode + 1, 0.0
            boosted, bought = bought and episode < 3, False
            if episode == 3:
                episode, returns = 0, np.zeros(3)
        assert chains.episode[t] == episode and bool(chains.boosted[t]) == boosted
        assert bool(chains.boost_next[t]) == bought


def test_visibility_flags_control_the_observation(chain):
    env, params, step = chain
    _, state = env.reset(jax.random.key(3), params)
    _, boosted_state, *_ = step(jax.random.key(0), state, jnp.int32(BOOST), params)
    grid_channels = len(env.channel_names(params.replace(boost_visible=False, chain_visible=False)))
    obs = env.observe(boosted_state, params)
    assert obs.shape[-1] == grid_channels + 2 + 3
    names = env.channel_names(params)
    assert obs[0, 0, names.index("boost_next")] == 1.0 and obs[0, 0, names.index("boosted")] == 0
    assert obs[0, 0, names.index("chain_episode:0")] == 1.0
    hidden = params.replace(boost_visible=False, chain_visible=False)
    # with the side channel hidden, a bought boost is invisible
    hidden_obs = env.observe(boosted_state, hidden)
    assert hidden_obs.shape[-1] == grid_channels
    np.testing.assert_array_equal(hidden_obs[..., 2:], env.observe(state, hidden)[..., 2:])
    assert env.render_rgb(boosted_state, params).shape == (7 * 12, 6 * 12, 3)
    assert "next episode boosted: True" in env.render_text(boosted_state, params)


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"chain_length": 0}, "chain_length"),
        ({"boost_cost": -1.0}, "boost_cost"),
        ({"boost_bonus": float("nan")}, "boost_bonus"),
        ({"height": 2}, "height"),
    ],
)
def test_bad_params_are_named(overrides, named):
    with pytest.raises(ValueError, match=named):
        make("BoostChain-v0", **overrides)


def test_a_wrapper_keeps_the_chain_across_resets():
    """``SideChannel`` auto-resets through the inner ``reset_after``, so a boost bought
    inside the wrapper still reaches the next episode."""
    env = SideChannel(BoostChain())
    params = env.default_params
    _, state = env.reset(jax.random.key(0), params)
    _, state, reward, *_ = env.step(jax.random.key(1), state, jnp.int32(BOOST), params)
    assert float(reward) == pytest.approx(-0.3) and float(state.channel[0]) == pytest.approx(-0.3)
    for t in range(params.max_steps):
        action = jnp.int32(_towards_goal(state.inner))
        _, state, reward, term, *_ = env.step(jax.random.key(2 + t), state, action, params)
        if bool(term):
            break
    assert bool(term) and float(reward) == pytest.approx(1.0)
    assert int(state.inner.chain.episode) == 1 and bool(state.inner.chain.boosted)
    assert float(state.channel[0]) == 0.0  # a new episode: no previous reward yet
