"""Egocentric wrapper: agent in the centre, same task underneath, clear error on non-grid envs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs

FAST = {"xla_backend_optimization_level": 0}


@pytest.fixture(scope="module")
def pair():
    inner, params = envs.make("Orchard-v0", height=5, width=6)
    return inner, envs.Egocentric(inner), params


def test_view_centres_the_agent_and_keeps_every_cell(pair):
    inner, ego, params = pair
    states = jax.vmap(lambda k: inner.sample_state(k, params))(
        jax.random.split(jax.random.key(0), 8)
    )
    glob = jax.vmap(lambda s: inner.observe(s, params))(states)
    view = jax.jit(jax.vmap(lambda s: ego.observe(s, params)), compiler_options=FAST)(states)
    assert view.shape == (8, 9, 11, glob.shape[-1])
    np.testing.assert_array_equal(view[:, 4, 5, 1], 1.0)  # agent channel at the centre
    for i in range(8):
        r, c = np.asarray(states.agent[i])
        # global cell (y, x) sits at (y - r + 4, x - c + 5) in the view
        np.testing.assert_array_equal(view[i, 4 - r : 4 - r + 5, 5 - c : 5 - c + 6], glob[i])
        assert float(view[i].sum()) == float(glob[i].sum())  # nothing else in view


def test_same_dynamics_and_rewards_as_the_wrapped_env(pair):
    inner, ego, params = pair
    key = jax.random.key(1)
    actions = jax.random.randint(key, (40,), 0, 4)

    def run(env):
        def step(carry, xs):
            obs, state = carry
            k, a = xs
            obs, state, r, term, trunc, _ = env.step(k, state, a, params)
            return (obs, state), (r, term | trunc, obs, state)

        init = env.reset(key, params)
        return jax.lax.scan(step, init, (jax.random.split(key, 40), actions))[1]

    r_in, d_in, _, s_in = jax.jit(lambda: run(inner), compiler_options=FAST)()
    r_eg, d_eg, o_eg, s_eg = jax.jit(lambda: run(ego), compiler_options=FAST)()
    np.testing.assert_array_equal(r_in, r_eg)
    np.testing.assert_array_equal(d_in, d_eg)
    assert bool(d_in.any())  # an auto-reset happened inside the run
    for a, b in zip(jax.tree.leaves(s_in), jax.tree.leaves(s_eg), strict=True):
        np.testing.assert_array_equal(a, b)
    # every observation, including those after auto-resets, is the egocentric view of its state
    want = jax.vmap(lambda s: ego.observe(s, params))(s_eg)
    np.testing.assert_array_equal(o_eg, want)
    # everything that is not the observation passes through
    assert ego.optimal_return_upper_bound(jax.tree.map(lambda x: x[0], s_eg), params) >= 0
    assert ego.num_actions(params) == 4 and ego.observation_space(params).shape == (9, 11, 9)
    assert ego == envs.Egocentric(envs.make("Orchard-v0")[0]) and hash(ego) == hash(
        envs.Egocentric(inner)
    )


def test_make_wraps_on_request_and_rejects_non_grid_envs():
    env, params = envs.make("Orchard-v0", egocentric=True, height=5)
    assert env == envs.Egocentric(envs.make("Orchard-v0")[0]) and params.height == 5
    assert not isinstance(envs.make("Orchard-v0")[0], envs.Egocentric)
    with pytest.raises(TypeError, match="GridEnvironment"):
        envs.Egocentric(envs.make("Spaceship-v0")[0])
    with pytest.raises(TypeError, match="GridEnvironment"):
        envs.make("Spaceship-v0", egocentric=True)


def test_view_of_a_corner_agent():
    obs = jnp.arange(3 * 3, dtype=jnp.float32).reshape(3, 3, 1) + 1
    view = envs.egocentric_view(obs, jnp.array([0, 0]))
    assert view.shape == (5, 5, 1)
    np.testing.assert_array_equal(view[2:, 2:, 0], obs[:, :, 0])  # room to the lower right
    assert float(view[:2].sum()) == 0.0 and float(view[:, :2].sum()) == 0.0
