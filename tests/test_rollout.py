"""The one rollout: shapes, episode masking, memory resets, info sums, the update hook."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.envs.rollout import Policy, episode_returns, random_policy, rollout

SMALL = dict(height=5, width=5, n_objects=3, max_steps=6)


@pytest.fixture(scope="module")
def orchard():
    return envs.make("Orchard-v0", **SMALL)


def _count_act(num_actions, params, carry, obs, key):
    """Counts steps since the episode start in its carry and acts ``count % num_actions``."""
    return carry + 1, (carry % num_actions).astype(jnp.int32)


def _count_init(params, n):
    return jnp.zeros(n, jnp.int32)


def test_rollout_shapes_and_transitions(orchard):
    env, params = orchard
    traj = eqx.filter_jit(rollout)(env, params, random_policy(4), jax.random.key(0), 3, 20)
    assert traj.obs.shape == (20, 3, 5, 5, 9)
    assert traj.action.shape == traj.reward.shape == traj.done.shape == (20, 3)
    # next_obs is the pre-reset observation of the state the step produced
    again = jax.vmap(jax.vmap(lambda s: env.observe(s, params)))(traj.next_state)
    np.testing.assert_array_equal(again, traj.next_obs)
    # the true reward of (state, action) is the reward the rollout recorded
    true = jax.vmap(jax.vmap(lambda s, a: env.true_reward(s, a, params)))(traj.state, traj.action)
    np.testing.assert_allclose(true, traj.reward)
    # after a step that ended an episode the next step starts at time 0; otherwise it continues
    time = traj.state.time
    np.testing.assert_array_equal(np.where(traj.done[:-1], 0, time[:-1] + 1), time[1:])


def test_memory_resets_at_episode_starts(orchard):
    env, params = orchard
    policy = Policy(None, functools.partial(_count_act, 4), _count_init)
    traj = rollout(env, params, policy, jax.random.key(1), 4, 20)
    # the counter restarts with every episode, so it equals the env's time at each step
    assert traj.done.any()
    np.testing.assert_array_equal(traj.action, traj.state.time % 4)


def test_episode_returns_masks_after_the_end(orchard):
    env, params = orchard
    key = jax.random.key(3)
    ep = eqx.filter_jit(episode_returns)(env, params, random_policy(4), key, 16)
    # by hand: one env at a time, stop at the first done
    _, k_run = jax.random.split(key)
    traj = rollout(env, params, random_policy(4), key, 16, params.max_steps)
    first_done = np.argmax(np.asarray(traj.done), axis=0)
    ended = np.asarray(traj.done).any(0)
    lengths = np.where(ended, first_done + 1, params.max_steps)
    returns = [np.asarray(traj.reward)[: lengths[i], i].sum() for i in range(16)]
    np.testing.assert_array_equal(ep.lengths, lengths)
    np.testing.assert_allclose(ep.returns, returns, rtol=1e-6)
    harmful = [np.asarray(traj.info["collected_harmful"])[: lengths[i], i].sum() for i in range(16)]
    np.testing.assert_allclose(ep.info["collected_harmful"], harmful)
    assert "discount" not in ep.info and "collected" not in ep.info  # only scalar entries
    # Trajectory.first_episode is the same mask, for sums episode_returns does not make
    mask = np.asarray(traj.first_episode)
    np.testing.assert_array_equal(mask.sum(0), lengths)
    np.testing.assert_allclose((mask * np.asarray(traj.reward)).sum(0), ep.returns, rtol=1e-6)


def _last_reward_update(params, carry, action, next_obs, reward):
    return reward


def _act_on_last_reward(params, carry, obs, key):
    """Action 0 at an episode start (carry -99), 1 after a positive reward, else 2."""
    return carry, jnp.where(carry == -99.0, 0, jnp.where(carry > 0, 1, 2)).astype(jnp.int32)


def test_update_hook_sees_each_real_step(orchard):
    env, params = orchard
    policy = Policy(None, _act_on_last_reward, lambda p, n: jnp.full(n, -99.0),
                    _last_reward_update)
    traj = rollout(env, params, policy, jax.random.key(4), 3, 12)
    reward, done = np.asarray(traj.reward), np.asarray(traj.done)
    expected = np.where(done[:-1], 0, np.where(reward[:-1] > 0, 1, 2))
    np.testing.assert_array_equal(traj.action[0], 0)
    np.testing.assert_array_equal(traj.action[1:], expected)


def test_bad_input_is_named(orchard):
    env, params = orchard
    with pytest.raises(ValueError, match="num_envs"):
        rollout(env, params, random_policy(4), jax.random.key(0), 0, 5)
    with pytest.raises(ValueError, match="num_episodes"):
        episode_returns(env, params, random_policy(4), jax.random.key(0), 2.5)
    with pytest.raises(TypeError, match="Policy"):
        rollout(env, params, lambda c, o, k: (c, o), jax.random.key(0), 2, 5)
    with pytest.raises(ValueError, match="observes"):
        Policy(None, _act_on_last_reward, observes="pixels")
    with pytest.raises(ValueError, match="num_actions"):
        random_policy(0)


def test_rollout_can_start_from_given_states(orchard):
    """``start``: the first observations are ``env.observe`` of the given states."""
    env, params = orchard
    keys = jax.random.split(jax.random.key(7), 3)
    start = jax.vmap(lambda k: env.sample_state(k, params))(keys)
    traj = rollout(env, params, random_policy(4), jax.random.key(1), 3, 4, start=start)
    np.testing.assert_array_equal(traj.state.agent[0], start.agent)
    np.testing.assert_array_equal(traj.obs[0], jax.vmap(env.observe, (0, None))(start, params))
    with pytest.raises(ValueError, match="'start' must be a batch of num_envs=2"):
        rollout(env, params, random_policy(4), jax.random.key(1), 2, 4, start=start)
