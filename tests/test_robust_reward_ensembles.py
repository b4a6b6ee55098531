"""Ensembles that disagree where the data are silent, and the MuZero agent's label buffer."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from innerlab.planners import muzero
from innerlab.reward_models import RewardModel
from innerlab.reward_models.diverse import PriorHead, diversity_loss, with_reward_prior


@pytest.fixture(scope="module")
def small_model():
    return RewardModel((3, 3, 2), 4, num_members=3, latent_dim=4, encoder="mlp", width=8,
                       key=jax.random.key(0))


def test_diversity_loss_known_answers():
    agree = jnp.ones((5, 3))
    assert float(diversity_loss(agree)) == 0.0
    apart = jnp.array([[0.0, 2.0, 4.0]] * 4)  # every pair >= 2 apart: each term capped
    assert float(diversity_loss(apart, cap=1.0)) == pytest.approx(-1.0)
    half = jnp.array([[0.0, 0.5]])  # one pair, 0.25 < cap
    assert float(diversity_loss(half, cap=1.0)) == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="K >= 2"):
        diversity_loss(jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="'cap' must be > 0"):
        diversity_loss(agree, cap=0.0)


def test_randomised_priors_are_frozen_and_make_members_differ(small_model):
    obs = jax.random.uniform(jax.random.key(1), (16, 3, 3, 2))
    act = jnp.arange(16) % 4
    # members with identical trained heads still differ by their priors
    same = eqx.tree_at(lambda m: m.head, small_model,
                       jax.tree.map(lambda x: jnp.broadcast_to(x[:1], x.shape)
                                    if eqx.is_array(x) else x, small_model.head))
    predict = eqx.filter_jit(lambda m: jax.vmap(m)(obs, act))
    base = predict(same)
    assert float(jnp.max(jnp.std(base, axis=1))) < 1e-6
    prior = with_reward_prior(same, 1.0, jax.random.key(2))
    assert isinstance(prior.head, PriorHead)
    preds = predict(prior)
    assert float(jnp.min(jnp.std(preds, axis=1))) > 1e-3

    def loss(m):
        return jnp.mean(jax.vmap(m)(obs, act) ** 2)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(prior)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0
               for g in jax.tree.leaves(eqx.filter(grads.head.prior, eqx.is_array)))
    assert any(float(jnp.max(jnp.abs(g))) > 0.0
               for g in jax.tree.leaves(eqx.filter(grads.head.trained, eqx.is_array)))
    opt = optax.adam(1e-2)
    step = eqx.filter_jit(lambda g, p: eqx.apply_updates(p, opt.update(
        eqx.filter(g, eqx.is_inexact_array), opt.init(eqx.filter(p, eqx.is_inexact_array)))[0]))
    stepped = step(grads, prior)
    for a, b in zip(jax.tree.leaves(eqx.filter(stepped.head.prior, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(prior.head.prior, eqx.is_array)), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'scale' must be > 0"):
        with_reward_prior(small_model, 0.0, jax.random.key(0))


def test_muzero_config_checks_the_new_options():
    with pytest.raises(ValueError, match="label_capacity must be an int >= 0"):
        muzero.MuZeroConfig(label_capacity=-1)
    with pytest.raises(ValueError, match="diversity_coef must be >= 0"):
        muzero.MuZeroConfig(diversity_coef=-0.1)
    with pytest.raises(ValueError, match="num_members >= 2"):
        muzero.MuZeroConfig(diversity_coef=0.1, num_members=1)


class _Labels(eqx.Module):
    labels: dict


def test_add_labels_fills_the_buffer_in_order_and_drops_overflow():
    cap = 5
    state = _Labels({"obs": jnp.zeros((cap, 2, 2, 1)), "action": jnp.zeros(cap, jnp.int32),
                     "reward": jnp.zeros(cap), "count": jnp.int32(0)})
    obs = jnp.arange(3 * 4, dtype=jnp.float32).reshape(3, 2, 2, 1)
    s1 = muzero.add_labels(state, obs, jnp.array([1, 2, 3]), jnp.array([-2.0, 1.0, 0.0]))
    assert int(s1.labels["count"]) == 3
    np.testing.assert_array_equal(s1.labels["action"], [1, 2, 3, 0, 0])
    s2 = muzero.add_labels(s1, obs, jnp.array([0, 1, 2]), jnp.array([5.0, 6.0, 7.0]))
    assert int(s2.labels["count"]) == cap  # the third row did not fit
    np.testing.assert_array_equal(s2.labels["reward"], [-2.0, 1.0, 0.0, 5.0, 6.0])
    with pytest.raises(ValueError, match="no label buffer"):
        muzero.add_labels(_Labels({}), obs, jnp.zeros(3, jnp.int32), jnp.zeros(3))
    with pytest.raises(ValueError, match="expected obs"):
        muzero.add_labels(state, obs[:, :1], jnp.zeros(3, jnp.int32), jnp.zeros(3))


class _WM(eqx.Module):
    reward_model: RewardModel


def test_label_and_diversity_losses_are_what_they_say(small_model):
    config = dataclasses.replace(muzero.MuZeroConfig(), label_coef=2.0, diversity_coef=0.5,
                                 diversity_cap=1.0, num_members=3)
    obs = jax.random.uniform(jax.random.key(3), (6, 3, 3, 2))
    act = jnp.arange(6) % 4
    reward = jnp.linspace(-2, 2, 6)
    preds = jax.vmap(small_model)(obs, act)
    extra = {"labels": {"obs": obs, "action": act, "reward": reward, "valid": jnp.bool_(True)},
             "unlabelled": {"obs": obs, "action": act}}
    total, parts = muzero.extra_losses(_WM(small_model), extra, config)
    want_labels = float(jnp.mean((preds - reward[:, None]) ** 2))
    assert float(parts["loss_labels"]) == pytest.approx(want_labels, rel=1e-5)
    assert float(parts["loss_diversity"]) == pytest.approx(float(diversity_loss(preds)), rel=1e-5)
    assert float(total) == pytest.approx(2.0 * want_labels + 0.5 * float(diversity_loss(preds)),
                                         rel=1e-5)
    empty = {**extra, "labels": {**extra["labels"], "valid": jnp.bool_(False)}}
    assert float(muzero.extra_losses(_WM(small_model), empty, config)[1]["loss_labels"]) == 0.0
    assert muzero.extra_losses(_WM(small_model), {}, config) == (0.0, {})
