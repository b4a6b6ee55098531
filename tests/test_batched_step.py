"""batched_step is exactly vmap(env.step), on each of its reset sizes and its fall-back path."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.envs.batched import batched_step

BATCH, MAX_RESETS, STEPS = 16, 8, 8  # reset sizes 1, 2, 4 and 8, then all 16: every branch
# only env steps compile here: XLA's cheapest backend optimisation compiles several times faster
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _rollout(env, params, step_fn):
    """Start from sample_state (staggered episode clocks), step with random actions."""
    states = jax.vmap(env.sample_state, in_axes=(0, None))(
        jax.random.split(jax.random.key(3), BATCH), params
    )
    space = env.action_space(params)

    def body(states, key):
        k_act, k_step = jax.random.split(key)
        actions = jax.vmap(space.sample)(jax.random.split(k_act, BATCH))
        out = step_fn(jax.random.split(k_step, BATCH), states, actions)
        return out[1], out

    return jax.lax.scan(body, states, jax.random.split(jax.random.key(4), STEPS))[1]


@pytest.mark.parametrize("name", envs.list_envs())
def test_batched_step_equals_vmap_step(name):
    env, params = envs.make(name, max_steps=4)
    def reference(k, s, a):
        return jax.vmap(env.step, in_axes=(0, 0, 0, None))(k, s, a, params)

    def fast(k, s, a):
        return batched_step(env, k, s, a, params, max_resets=MAX_RESETS)

    expected = jit(lambda: _rollout(env, params, reference))()
    got = jit(lambda: _rollout(env, params, fast))()
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # episodes did end during the rollout, so resets were exercised
    assert int(jnp.sum(expected[3] | expected[4])) > 0


def test_batched_step_bad_input():
    env, params = envs.make("Orchard-v0")
    keys = jax.random.split(jax.random.key(0), 4)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    with pytest.raises(ValueError, match="'actions' must have shape"):
        batched_step(env, keys, states, jnp.zeros((4, 1), jnp.int32), params)
    with pytest.raises(ValueError, match="'keys' must hold one key per env"):
        batched_step(env, keys[:2], states, jnp.zeros(4, jnp.int32), params)
    with pytest.raises(ValueError, match="'max_resets' must be in"):
        batched_step(env, keys, states, jnp.zeros(4, jnp.int32), params, max_resets=0)
