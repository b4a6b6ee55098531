"""TreeLayer: gradients through planning match finite differences; shapes; errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.planners import PlannerOutput, WorldModel
from innerlab.planners.tree import TreeLayer


@pytest.fixture(scope="module")
def setup():
    env, params = envs.make("Orchard-v0", height=5, width=5, n_objects=3)
    obs, _ = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(jax.random.key(0), 3))
    wm = WorldModel.create(
        obs.shape[1:], 4, key=jax.random.key(1), latent_dim=6, width=8, encoder="mlp", num_members=3
    )
    return obs, wm


def test_output_and_soft_backup(setup):
    obs, wm = setup
    out = TreeLayer(wm, depth=2)(obs, jax.random.key(0))
    assert isinstance(out, PlannerOutput)
    assert out.action.shape == (3,) and out.action_weights.shape == (3, 4)
    np.testing.assert_allclose(out.action_weights.sum(-1), 1.0, rtol=1e-5)
    # depth-1 Q-values by hand: aggregated reward plus discounted value of the next latent
    layer = TreeLayer(wm, depth=1, discount=0.9, how="min")
    z = wm.represent(obs[0])
    q = layer(obs, jax.random.key(0)).stats["qvalues"][0]
    for a in range(4):
        want = jnp.min(wm.reward_preds(z, jnp.int32(a))) + 0.9 * wm.value(
            wm.dynamics(z, jnp.int32(a))
        )
        np.testing.assert_allclose(q[a], want, rtol=1e-5, atol=1e-6)


def test_grad_through_planning_matches_finite_differences(setup):
    """Directional derivative of the planned value w.r.t. every model parameter, in float64."""
    obs, wm = setup
    with jax.enable_x64(True):
        wm64 = jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, wm)
        obs64 = obs[:1].astype(jnp.float64)
        params, static = eqx.partition(wm64, eqx.is_inexact_array)

        def f(p):
            layer = TreeLayer(eqx.combine(p, static), depth=2, temperature=0.5)
            out = layer(obs64, jax.random.key(0))
            return jnp.sum(out.value) + jnp.sum(out.action_weights[:, 0])

        f = jax.jit(f)
        grad = jax.jit(jax.grad(f))(params)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(7), len(leaves))
        direction = jax.tree.unflatten(
            treedef,
            [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)],
        )
        analytic = sum(
            jnp.vdot(g, d)
            for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction), strict=True)
        )
        eps = 1e-6
        plus = jax.tree.map(lambda p, d: p + eps * d, params, direction)
        minus = jax.tree.map(lambda p, d: p - eps * d, params, direction)
        numeric = (f(plus) - f(minus)) / (2 * eps)
        assert abs(float(analytic)) > 1e-3  # the gradient is not trivially zero
        np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5)
        # the dynamics network receives gradient only through planning
        assert float(jnp.abs(grad.transition.layers[0].weight).sum()) > 0


def test_bad_inputs(setup):
    obs, wm = setup
    with pytest.raises(ValueError, match="depth"):
        TreeLayer(wm, depth=0)
    with pytest.raises(ValueError, match="'how'"):
        TreeLayer(wm, how="median")
    with pytest.raises(ValueError, match="obs"):
        TreeLayer(wm)(obs[0], jax.random.key(0))
