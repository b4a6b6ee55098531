"""The fused LSTM recurrence: same values and gradients as stepping equinox's LSTMCell."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.planners.lstm import lstm_scan, lstm_step
from innerlab.planners.ppo import RecurrentActorCritic

T, B, H, IN = 7, 3, 8, 5  # input and hidden sizes differ, so a transposed weight fails


@pytest.fixture(scope="module")
def problem():
    keys = jax.random.split(jax.random.key(0), 5)
    cell = eqx.nn.LSTMCell(IN, H, key=keys[0])
    x = jax.random.normal(keys[1], (T, B, IN))
    reset = jax.random.bernoulli(keys[2], 0.3, (T, B)).at[0, 0].set(True)
    carry = (jax.random.normal(keys[3], (B, H)), jax.random.normal(keys[4], (B, H)))
    return cell, x, reset, carry


def reference(cell, x, carry, reset):
    """Step equinox's LSTMCell, clearing memory where ``reset``; a scalar of every output."""

    def step(hc, inp):
        xt, r = inp
        hc = jax.tree.map(lambda a: jnp.where(r[:, None], 0.0, a), hc)
        hc = jax.vmap(cell)(xt, hc)
        return hc, hc[0]

    (h, c), hs = jax.lax.scan(step, carry, (x, reset))
    return jnp.sum(jnp.sin(hs)) + jnp.sum(h * c)


def fused(cell, x, carry, reset):
    (h, c), hs = lstm_scan(cell, carry, x, reset)
    return jnp.sum(jnp.sin(hs)) + jnp.sum(h * c)


def test_values_match_equinox_cell(problem):
    cell, x, reset, carry = problem
    np.testing.assert_allclose(
        fused(cell, x, carry, reset), reference(cell, x, carry, reset), rtol=1e-5
    )


def test_gradients_match_autodiff_of_equinox_cell(problem):
    """The hand-written VJP against JAX's own reverse mode through the reference."""
    cell, x, reset, carry = problem
    ours = eqx.filter_grad(fused)(cell, x, carry, reset)
    ref = eqx.filter_grad(reference)(cell, x, carry, reset)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    wrt_inputs = jax.grad(fused, argnums=(1, 2))(cell, x, carry, reset)
    wrt_inputs_ref = jax.grad(reference, argnums=(1, 2))(cell, x, carry, reset)
    for a, b in zip(jax.tree.leaves(wrt_inputs), jax.tree.leaves(wrt_inputs_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_cell_without_bias(problem):
    _, x, reset, carry = problem
    cell = eqx.nn.LSTMCell(IN, H, use_bias=False, key=jax.random.key(7))
    np.testing.assert_allclose(
        fused(cell, x, carry, reset), reference(cell, x, carry, reset), rtol=1e-5
    )
    ours = eqx.filter_grad(fused)(cell, x, carry, reset)
    ref = eqx.filter_grad(reference)(cell, x, carry, reset)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_reset_cuts_the_gradient_to_earlier_steps(problem):
    """Where every env resets at step t, nothing before t can influence anything after it."""
    cell, x, _, carry = problem
    reset = jnp.zeros((T, B), bool).at[4].set(True)

    def late(inputs):
        return jnp.sum(lstm_scan(cell, carry, inputs, reset)[1][4:])

    grad = jax.grad(late)(x)
    assert np.all(np.asarray(grad[:4]) == 0.0)
    assert np.any(np.asarray(grad[4:]) != 0.0)


def test_bad_shapes_give_a_clear_error(problem):
    cell, x, reset, carry = problem
    with pytest.raises(ValueError, match=r"x of shape \[T, B, 5\]"):
        lstm_scan(cell, carry, x[..., :4], reset)
    with pytest.raises(ValueError, match="reset of shape"):
        lstm_scan(cell, carry, x, reset[:, :2])


def test_step_works_unbatched_and_matches_scan(problem):
    cell, x, reset, carry = problem
    _, hs = lstm_scan(cell, carry, x, reset)
    h, c = lstm_step(cell, (carry[0][1], carry[1][1]), x[0, 1], reset[0, 1])
    np.testing.assert_allclose(h, hs[0, 1], rtol=1e-6)
    assert c.shape == (H,)


def test_actor_critic_unroll_equals_stepping():
    """PPO's update (``unroll``) and its rollout (``__call__``) compute the same function."""
    model = RecurrentActorCritic(10, 3, H, key=jax.random.key(1))
    obs = jax.random.normal(jax.random.key(2), (T, B, 2, 5))
    reset = jax.random.bernoulli(jax.random.key(3), 0.3, (T, B))
    carry0 = jax.vmap(lambda _: model.initial_carry())(jnp.arange(B))

    def step(carry, inp):
        carry, logits, value = jax.vmap(model)(carry, *inp)
        return carry, (logits, value)

    carry_s, (logits_s, value_s) = jax.lax.scan(step, carry0, (obs, reset))
    carry_u, logits_u, value_u = model.unroll(carry0, obs, reset)
    np.testing.assert_allclose(logits_u, logits_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value_u, value_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry_u[0], carry_s[0], rtol=1e-5, atol=1e-6)
