"""innerlab.irl: the tabular Orchard MDP, MCE IRL on synthetic experts, coherence and EPIC."""

import math

import equinox as eqx
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


# --------------------------------------------------------------------------- neural reward


@pytest.mark.slow  # observes every live tabular state (13 s); the default suite is over budget
def test_neural_reward_tables_observe_the_live_states(world):
    """observe_layouts holds the env's own (egocentric) observation of each live state;
    reward_tables puts the network's outputs on those rows, 0 elsewhere; the fresh network
    is 0 everywhere; log_likelihood_of a linear table is log_likelihood of its weights."""
    env, params, _, mdps = world
    few = irl.split_layouts(mdps, np.arange(3))
    _, starts = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.key(0), N), params)
    starts = jax.tree.map(lambda x: x[:3], starts)
    ego = envs.Egocentric(env)
    lobs = irl.observe_layouts(ego, params, starts, few)
    live = np.asarray(few.valid & ~few.terminal)
    assert lobs.num_states == live.shape[1] and lobs.index.shape[1] == live.sum(1).max()
    assert live[np.arange(3)[:, None], np.asarray(lobs.index)].all()
    layout, row = 1, 5
    state = jax.tree.map(lambda x: x[int(lobs.index[layout, row])],
                         irl.layout_states(jax.tree.map(lambda x: x[layout], starts)))
    np.testing.assert_array_equal(lobs.obs[layout, row], ego.observe(state, params).reshape(-1))

    net = irl.RewardNet(lobs.obs.shape[-1], 4, jax.random.key(1), width=8)
    assert float(jnp.abs(irl.reward_tables(net, lobs)).max()) == 0.0
    net = jax.tree.map(lambda x: x + 0.1 if eqx.is_inexact_array(x) else x, net)
    table = irl.reward_tables(net, lobs)
    assert float(jnp.abs(jnp.where(live[..., None], 0.0, table)).max()) == 0.0
    assert float(jnp.abs(table[0, lobs.index[0, 0]]).min()) > 0
    demos = irl.sample_demos(few, irl.true_weights(params), jax.random.key(2))
    w = irl.true_weights(params)
    np.testing.assert_allclose(irl.log_likelihood_of(few, demos, few.features @ w),
                               irl.log_likelihood(few, demos, w), rtol=1e-6)


def test_neural_reward_bad_arguments_are_named(world):
    env, params, _, mdps = world
    few = irl.split_layouts(mdps, np.arange(2))
    _, starts = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.key(0), 2), params)
    lobs = irl.observe_layouts(env, params, starts, few)
    demos = irl.sample_demos(few, irl.true_weights(params), jax.random.key(2))
    key = jax.random.key(0)
    for kwargs, match in (({"width": 0}, "argument 'width'"), ({"steps": 1.5}, "argument 'steps'"),
                          ({"learning_rate": -1.0}, "argument 'learning_rate'"),
                          ({"l2": float("nan")}, "argument 'l2'")):
        with pytest.raises(ValueError, match=match):
            irl.fit_neural_reward(few, lobs, demos, key, **kwargs)
    with pytest.raises(ValueError, match="argument 'lobs' must observe the layouts"):
        irl.fit_neural_reward(irl.split_layouts(mdps, np.arange(3)), lobs, demos, key)


@pytest.mark.slow
def test_neural_mce_irl_recovers_a_soft_optimal_experts_reward(world):
    """A soft-optimal expert of 3x Orchard's reward (an MLP of the egocentric view can
    represent it: the value of the object one move away), 16 episodes in each of 128
    layouts: the neural reward is EPIC-closer to the truth than chance-level rewards
    (measured 0.27 here; 0.17 with 64 episodes and 1000 steps; the linear fit's 0.03), and
    its soft-optimal policy explains 32 held-out layouts' episodes better than uniform and
    nearly as well as the true reward (measured -1.25 vs -1.17, uniform -1.39)."""
    env, params, _, mdps = world
    truth = irl.true_weights(params)
    _, starts = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.key(0), N), params)
    lobs = irl.observe_layouts(envs.Egocentric(env), params, starts, mdps)
    train, test = np.arange(128), np.arange(128, 160)
    held = irl.sample_demos(mdps, 3.0 * truth, jax.random.key(4))
    many = [irl.sample_demos(mdps, 3.0 * truth, jax.random.key(100 + i)) for i in range(15)]
    demos = jax.tree.map(lambda *x: jnp.concatenate(x, 1), held, *many)
    m_tr, m_te = irl.split_layouts(mdps, train), irl.split_layouts(mdps, test)
    net = irl.fit_neural_reward(m_tr, irl.split_layouts(lobs, train),
                                irl.split_layouts(demos, train), jax.random.key(1), steps=300)
    table = irl.reward_tables(net, irl.split_layouts(lobs, test))
    k = np.arange(8)
    distance = irl.epic_tables(irl.split_layouts(m_te, k), table[k], (m_te.features @ truth)[k])
    assert distance < 0.35, distance
    # a reward that ranks nothing right is far: the negated truth
    assert irl.epic_tables(irl.split_layouts(m_te, k), -table[k], (m_te.features @ truth)[k]) > 0.6
    d_te = irl.split_layouts(held, test)
    steps = float(d_te.mask.sum())
    ll = float(irl.log_likelihood_of(m_te, d_te, table).sum()) / steps
    ll_true = float(irl.log_likelihood(m_te, d_te, 3.0 * truth).sum()) / steps
    assert ll > -math.log(4) + 0.05, ll
    assert ll > ll_true - 0.15, (ll, ll_true)
