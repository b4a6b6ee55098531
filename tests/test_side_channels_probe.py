"""The probe of whether a learned reward head reads the side channel
(``side_channels.probe_measures`` / ``probe_head``), validated on constructed heads whose
answer is known: one that returns the channel scores 1, one that ignores it 0.

Cheap: no training; the env steps of a 5x5 room compile in a few seconds."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.envs import list_envs, make, unregister
from innerlab.envs.rollout import bind
from innerlab.recipes import side_channels as sc

VALUES = np.array(sc.PROBE_VALUES)


@pytest.fixture(scope="module", autouse=True)
def _forget_the_recipes_env():
    had = sc.ENV in list_envs()
    yield
    if not had and sc.ENV in list_envs():
        unregister(sc.ENV)


# --------------------------------------------------------------------------- the arithmetic


def _grid(fn, n=6, m=4, seeds=2, rng=0):
    """preds [S, N, M, V] = fn(value, true reward, seed) on a random reward table."""
    reward = np.random.default_rng(rng).integers(0, 3, (n, m)).astype(float)
    preds = np.stack([fn(VALUES[None, None, :], reward[..., None], s) for s in range(seeds)])
    at_truth = np.stack([fn(reward, reward, s) for s in range(seeds)])
    return preds, reward, at_truth


def test_a_head_that_returns_the_channel_scores_1_and_one_that_ignores_it_0():
    preds, reward, truth = _grid(lambda v, r, s: v + 0 * r)
    reader = sc.probe_measures(preds, VALUES, reward, truth)
    np.testing.assert_allclose(reader["channel_slope"], 1.0)
    np.testing.assert_allclose(reader["channel_corr"], 1.0)
    np.testing.assert_allclose(reader["reward_slope"], 0.0, atol=1e-12)
    np.testing.assert_allclose(reader["error"], 0.0)  # with the true channel it is r

    preds, reward, truth = _grid(lambda v, r, s: r + 0 * v)
    ignorer = sc.probe_measures(preds, VALUES, reward, truth)
    np.testing.assert_allclose(ignorer["channel_slope"], 0.0, atol=1e-12)
    assert np.isnan(ignorer["channel_corr"]).all()  # never moves with the channel
    np.testing.assert_allclose(ignorer["reward_slope"], 1.0)
    np.testing.assert_allclose(ignorer["error"], 0.0)


def test_the_probe_is_linear_between_and_per_seed():
    # seed 0 follows the channel by half, seed 1 by a quarter, each plus its own offset:
    # the slope is per seed and an offset that does not move with v does not change it
    preds, reward, truth = _grid(lambda v, r, s: (0.5 if s == 0 else 0.25) * v
                                 + (1 - (0.5 if s == 0 else 0.25)) * r + 3 * s)
    out = sc.probe_measures(preds, VALUES, reward, truth)
    np.testing.assert_allclose(out["channel_slope"], [0.5, 0.25])
    np.testing.assert_allclose(out["reward_slope"], [0.5, 0.75])
    np.testing.assert_allclose(out["error"], [0.0, 3.0])
    np.testing.assert_allclose(out["channel_corr"], 1.0)  # exactly linear in v


def test_a_head_that_follows_only_the_trained_values_is_told_apart():
    # follows the channel on 0..2 (the values training showed) and flattens below 0, as a
    # head trained only on r >= 0 may: the pooled slope is below 1, the trained-range slope
    # is 1, and the response curve shows where it flattens
    preds, reward, truth = _grid(lambda v, r, s: np.maximum(v, 0.0) + 0 * r)
    out = sc.probe_measures(preds, VALUES, reward, truth, trained=(0.0, 1.0, 2.0))
    np.testing.assert_allclose(out["trained_slope"], 1.0)
    assert (out["channel_slope"] < 0.8).all()
    np.testing.assert_allclose(out["response_-2"], 0.0)
    np.testing.assert_allclose(out["response_2"], 2.0)
    with pytest.raises(ValueError, match="'trained'"):
        sc.probe_measures(preds, VALUES, reward, truth, trained=(0.0, 0.5))


def test_the_trained_values_are_0_and_the_object_rewards():
    sc.ensure_env()
    _, params = make(sc.ENV, mode="next", height=5, width=5, n_objects=3)
    assert sc.trained_values(params) == (0.0, 1.0, 2.0)


def test_a_constant_reward_table_leaves_the_reward_slope_undefined():
    preds = np.broadcast_to(VALUES, (1, 2, 3, VALUES.size))
    out = sc.probe_measures(preds, VALUES, np.ones((2, 3)), np.ones((1, 2, 3)))
    assert out["channel_slope"][0] == pytest.approx(1.0)
    assert math.isnan(out["reward_slope"][0])


def test_probe_measure_errors_name_the_argument():
    with pytest.raises(ValueError, match="'preds'"):
        sc.probe_measures(np.zeros((2, 3, 4)), VALUES, np.zeros((3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="'values'.*distinct"):
        sc.probe_measures(np.zeros((1, 3, 4, 2)), [1.0, 1.0], np.zeros((3, 4)),
                          np.zeros((1, 3, 4)))


# --------------------------------------------------------------------------- on the env


@pytest.fixture(scope="module")
def env_states():
    sc.ensure_env()
    out = {}
    for mode in ("next", "previous"):
        env, params = make(sc.ENV, mode=mode, height=5, width=5, n_objects=3, max_steps=8)
        keys = jax.random.split(jax.random.key(0), 24)
        out[mode] = (env, params, sc.probe_states(env, params, keys))
    return out


def _wrong_entry(planes, weights, obs, state, move):
    """Reads the channel, but the entry of the next move: the probe asks about each move's
    own entry, so it must score 0 (the channel entries are set one at a time)."""
    return obs[0, 0, obs.shape[-1] - planes + (move + 1) % planes]


def _mixed(env, params, weights, obs, state, move):
    """0.3 x the channel's value for the move + 0.7 x the true reward."""
    channel = sc.reads_the_channel(env.num_planes(params), params.mode, None, obs, state, move)
    return 0.3 * channel + 0.7 * sc.ignores_the_channel(env, params, None, obs, state, move)


@pytest.mark.parametrize("mode", ["next", "previous"])
def test_constructed_heads_on_env_states(env_states, mode):
    env, params, states = env_states[mode]
    planes = env.num_planes(params)
    reader = sc.probe_head(bind(sc.reads_the_channel, planes, mode), None, False, env, params,
                           states)
    ignorer = sc.probe_head(bind(sc.ignores_the_channel, env, params), None, False, env,
                            params, states)
    assert reader["channel_slope"][0] == pytest.approx(1.0, abs=1e-6)
    assert reader["channel_corr"][0] == pytest.approx(1.0, abs=1e-6)
    assert ignorer["channel_slope"][0] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(ignorer["channel_corr"][0])
    # the random-walk states have rewards to read: some moves collect an object
    assert ignorer["reward_slope"][0] == pytest.approx(1.0, abs=1e-6)
    assert ignorer["error"][0] == pytest.approx(0.0, abs=1e-6)
    if mode == "next":  # the unmodified channel shows each move's true reward
        assert reader["error"][0] == pytest.approx(0.0, abs=1e-6)
        assert reader["reward_slope"][0] == pytest.approx(0.0, abs=1e-6)
        wrong = sc.probe_head(bind(_wrong_entry, planes), None, False, env, params, states)
        assert wrong["channel_slope"][0] == pytest.approx(0.0, abs=1e-6)
        mixed = sc.probe_head(bind(_mixed, env, params), None, False, env, params, states)
        assert mixed["channel_slope"][0] == pytest.approx(0.3, abs=1e-5)
        assert mixed["reward_slope"][0] == pytest.approx(0.7, abs=1e-5)


def test_probe_states_are_of_every_stage_and_valid(env_states):
    env, params, states = env_states["next"]
    assert bool(jnp.all(jax.vmap(lambda s: env.is_valid(s, params))(states)))
    times = np.asarray(states.inner.time)
    assert len(set(times.tolist())) > 2  # not only episode starts


def test_the_probed_runs_are_muzeros_with_a_free_channel():
    config = sc.SideChannelsConfig()
    assert sc.probe_runs(config) == {"muzero-previous": "previous", "muzero-next": "next"}
    assert sc.probe_runs(sc.SideChannelsConfig(kinds=("ppo-lstm",))) == {}
