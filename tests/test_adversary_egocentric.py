"""The gradient search's relaxation on the egocentric view (the robust-reward agent's input)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.adversary import gradient_search, relax
from innerlab.adversary.search import grid_state_ok, soft_view
from innerlab.reward_models import RewardModel


@pytest.fixture(scope="module")
def ego():
    return envs.make("Orchard-v0", egocentric=True, height=5, width=5, n_objects=3)


def test_soft_view_of_a_sharp_relaxation_is_the_observation(ego):
    env, params = ego
    plain, plain_params = envs.make("Orchard-v0", height=5, width=5, n_objects=3)
    counts = env.feature_counts(params)

    @jax.jit
    def views(key):
        state = env.sample_state(key, params)
        g = env.grid_of(state)
        r = relax(g, counts, scale=30.0)
        return (soft_view(env, r, g.walls), env.observe(state, params),
                soft_view(plain, r, g.walls), plain.observe(state, plain_params))

    for key in jax.random.split(jax.random.key(0), 4):
        ego_soft, ego_obs, soft, obs = views(key)
        np.testing.assert_allclose(ego_soft, ego_obs, atol=1e-6)
        np.testing.assert_allclose(soft, obs, atol=1e-6)


def test_soft_view_is_differentiable_in_the_agent_position(ego):
    env, params = ego
    g = env.grid_of(env.sample_state(jax.random.key(0), params))
    r = relax(g, env.feature_counts(params), scale=1.0)
    weights = jax.random.normal(jax.random.key(1), env.observation_space(params).shape)
    moved = lambda a: eqx.tree_at(lambda x: x.agent, r, a)  # noqa: E731
    grad = jax.jit(jax.grad(lambda a: jnp.sum(weights * soft_view(env, moved(a), g.walls))))(
        r.agent)
    assert float(jnp.max(jnp.abs(grad))) > 0.0 and bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.slow  # compiles a gradient search: about 10 s on the idle 2 cores
def test_gradient_search_runs_on_the_egocentric_view_and_returns_valid_states(ego):
    env, params = ego
    model = RewardModel(env.observation_space(params).shape, 4, num_members=3, latent_dim=8,
                        encoder="mlp", width=8, key=jax.random.key(0))
    res = gradient_search(model, env, params, jax.random.key(1), budget=40, top_n=3,
                          population=4)
    assert res.obs.shape == (3, *env.observation_space(params).shape)
    for i in range(3):
        s = jax.tree.map(lambda x, i=i: x[i], res.states)
        assert bool(grid_state_ok(env, params, env.grid_of(s)))
        np.testing.assert_allclose(env.observe(s, params), res.obs[i])
    assert res.num_evals <= 40 and bool(jnp.all(res.scores >= res.scores[-1]))
