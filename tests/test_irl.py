"""innerlab.irl: the tabular Orchard MDP, MCE IRL on synthetic experts, coherence and EPIC."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab import irl

OVERRIDES = {"height": 5, "width": 5, "n_objects": 3, "max_steps": 10, "split": "test"}


N = 160


@pytest.fixture(scope="module")
def world():
    env, params = envs.make("Orchard-v0", **OVERRIDES)
    _, starts = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.key(0), N), params)
    layouts = jax.jit(jax.vmap(lambda s: irl.layout_mdp(env, params, s)))
    return env, params, layouts, layouts(starts)


def test_features_and_dynamics_reproduce_the_env(world):
    """From drawn states, the table's successor and features @ true weights are the env's
    own next state and reward (the basis spans Orchard's reward exactly)."""
    env, params, layouts, _ = world
    truth = irl.true_weights(params)
    keys = jax.random.split(jax.random.key(1), N)
    states = jax.vmap(lambda k: env.sample_state(k, params))(keys)
    actions = jax.random.randint(jax.random.key(2), (N,), 0, 4)
    mdps = layouts(states)  # the fixture's compiled function: same shapes
    _, nxt, reward, *_ = jax.vmap(env.step_env, in_axes=(None, 0, 0, None))(
        jax.random.key(3), states, actions, params)
    s = jax.vmap(irl.state_index)(states)
    rows = jnp.arange(N)
    np.testing.assert_array_equal(mdps.next[rows, s, actions], jax.vmap(irl.state_index)(nxt))
    np.testing.assert_allclose(mdps.features[rows, s, actions] @ truth, reward, atol=1e-6)
    assert bool(jnp.all(mdps.valid[rows, s]))
    assert len(irl.feature_names(params)) == truth.shape[0] == mdps.features.shape[-1]


def test_step_weight_minus_log_a_is_the_uniform_policy(world):
    """The chance baseline is in the model: a reward of -log(4) per step gives V = 0 and
    the uniform policy (zero weights do not: they favour not ending the episode)."""
    _, params, _, mdps = world
    one = irl.split_layouts(mdps, 0)
    step = jnp.zeros(mdps.features.shape[-1]).at[-1].set(-math.log(4))
    live = np.asarray(~one.terminal)
    np.testing.assert_allclose(np.exp(irl.soft_policy(one, step))[:, live], 0.25, atol=1e-5)
    zero = np.exp(irl.soft_policy(one, 0 * step))[:, live]
    assert np.abs(zero - 0.25).max() > 0.01


def test_epic_oracles(world):
    """EPIC of a reward to a positive rescaling is 0, to its negation 1, and to a constant
    reward undefined (NaN)."""
    _, params, _, mdps = world
    few = irl.split_layouts(mdps, np.arange(4))
    truth = irl.true_weights(params)
    assert irl.epic_to(few, truth, 3.0 * truth) < 1e-3
    assert irl.epic_to(few, truth, -truth) > 1 - 1e-3
    assert math.isnan(irl.epic_to(few, truth, 0 * truth))


@pytest.mark.slow
def test_mce_irl_recovers_a_soft_optimal_experts_reward(world):
    """Demonstrations of the soft-optimal policy of 3x Orchard's reward: the recovered reward
    is EPIC-close to the truth (measured 0.02-0.05 on 128 layouts, three draws), explains held-out
    behaviour about as well as the truth, far better than chance; uniform random
    demonstrations give no gain over chance."""
    _, params, _, mdps = world
    truth = irl.true_weights(params)
    train, test = np.arange(128), np.arange(128, 160)
    expert = irl.sample_demos(mdps, 3.0 * truth, jax.random.key(4))
    w = irl.fit_reward(irl.split_layouts(mdps, train), irl.split_layouts(expert, train))
    m_te, d_te = irl.split_layouts(mdps, test), irl.split_layouts(expert, test)
    distance = irl.epic_to(irl.split_layouts(m_te, np.arange(8)), w, truth)
    assert distance < 0.15, distance
    per_step = {name: float(irl.log_likelihood(m_te, d_te, v).sum() / d_te.mask.sum())
                for name, v in (("irl", w), ("true", 3.0 * truth))}
    assert per_step["irl"] > per_step["true"] - 0.05
    assert per_step["irl"] > -math.log(4) + 0.2

    step = jnp.zeros_like(truth).at[-1].set(-math.log(4))
    noise = irl.sample_demos(mdps, step, jax.random.key(5))
    w0 = irl.fit_reward(irl.split_layouts(mdps, train), irl.split_layouts(noise, train))
    n_te = irl.split_layouts(noise, test)
    gain = float(irl.log_likelihood(m_te, n_te, w0).sum() / n_te.mask.sum()) + math.log(4)
    assert gain < 0.02


@pytest.mark.slow
def test_behavioural_cloning_fits_an_action_bias(world):
    """An agent that always moves up: BC (it sees the action's identity) explains it almost
    perfectly; the fit is a real maximum-likelihood fit, not a constant."""
    _, _, _, mdps = world
    few = irl.split_layouts(mdps, np.arange(16))
    demos = irl.sample_demos(few, jnp.zeros(mdps.features.shape[-1]), jax.random.key(6))
    demos = irl.Demos(demos.t, demos.s, jnp.zeros_like(demos.a), demos.mask)
    inputs = irl.bc_features(few)
    w = irl.fit_bc(inputs, demos)
    per_step = float(irl.bc_log_likelihood(inputs, demos, w).sum() / demos.mask.sum())
    assert per_step > -0.1
