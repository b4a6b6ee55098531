"""Recurrent PPO baseline: GAE by hand, memory reset, config checks. Seeds, reproducibility,
resume and learning are the agent contract of tests/test_agents.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.planners.ppo import PPOConfig, RecurrentActorCritic, gae


def test_gae_by_hand():
    reward = jnp.array([[1.0], [0.0], [2.0]])
    value = jnp.array([[0.5], [0.5], [0.5]])
    done = jnp.array([[False], [True], [False]])
    adv, ret = gae(reward, value, done, jnp.array([1.0]), gamma=0.9, lam=0.5)
    d2 = 2.0 + 0.9 * 1.0 - 0.5
    d1 = 0.0 - 0.5  # episode ends: no bootstrap
    d0 = 1.0 + 0.9 * 0.5 - 0.5
    np.testing.assert_allclose(adv[:, 0], [d0 + 0.45 * d1, d1, d2], rtol=1e-6)
    np.testing.assert_allclose(ret, adv + value, rtol=1e-6)


def test_reset_clears_memory():
    model = RecurrentActorCritic(8, 3, 16, key=jax.random.key(0))
    obs = jnp.ones(8)
    carry, _, _ = model(model.initial_carry(), obs, jnp.bool_(True))
    _, logits_mem, _ = model(carry, obs, jnp.bool_(False))
    _, logits_reset, _ = model(carry, obs, jnp.bool_(True))
    _, logits_fresh, _ = model(model.initial_carry(), obs, jnp.bool_(True))
    np.testing.assert_allclose(logits_reset, logits_fresh, rtol=1e-6)
    assert not np.allclose(logits_mem, logits_fresh)


def test_bad_config():
    with pytest.raises(ValueError, match="divisible"):
        PPOConfig(num_envs=6, num_minibatches=4)
