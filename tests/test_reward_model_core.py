"""The RewardModel contract that planners, adversary and testing rely on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.reward_models import RewardModel, aggregate, ensemble_std, max_pairwise_gap


@pytest.fixture(scope="module")
def obs():
    env, params = envs.make("Orchard-v0")
    return env.reset(jax.random.key(0), params)[0]


@pytest.mark.parametrize("shared", [True, False])
def test_call_is_heads_of_encode(obs, shared):
    model = RewardModel(obs.shape, 4, num_members=3, latent_dim=16, width=16,
                        shared_encoder=shared, key=jax.random.key(0))
    latent = model.encode(obs)
    assert latent.shape == model.latent_shape
    np.testing.assert_allclose(model(obs, 2), model.heads(latent, 2), rtol=1e-6)
    preds = jax.vmap(model)(jnp.stack([obs, obs]), jnp.array([0, 3]))
    assert preds.shape == (2, 3)
    # members differ at initialisation: an ensemble, not copies
    assert float(ensemble_std(preds[0])) > 0


def test_bad_obs_is_named(obs):
    model = RewardModel(obs.shape, 4, num_members=2, latent_dim=8, width=8, key=jax.random.key(0))
    with pytest.raises(ValueError, match="'obs' must have shape"):
        model(obs[:-1], 0)
    with pytest.raises(TypeError, match="'obs' must be a float"):
        model(obs.astype(jnp.int32), 0)


def test_aggregations():
    p = jnp.array([[1.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(aggregate(p, "mean"), [2.0, 2.0])
    np.testing.assert_allclose(aggregate(p, "min"), [1.0, 2.0])
    np.testing.assert_allclose(aggregate(p, "max"), [3.0, 2.0])
    np.testing.assert_allclose(aggregate(p, "pessimistic", k=2.0), [0.0, 2.0])
    np.testing.assert_allclose(max_pairwise_gap(p), [2.0, 0.0])
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate(p, "median")
    with pytest.raises(ValueError, match="at least 2 members"):
        ensemble_std(jnp.ones((4, 1)))
