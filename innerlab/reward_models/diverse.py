"""Ensembles built to disagree where the data are silent: randomised priors and a diversity loss.

A bootstrap ensemble (members fit resampled copies of the same data) tends to
extrapolate alike: every member learns "large is good" from Orchard's train
split and they agree on the unseen harmful combination, so disagreement
search has nothing to find. Two remedies, both usable inside any model whose
reward heads are stacked Equinox modules ``head(latent, action) -> []``
(``RewardModel.head``, and so the MuZero agent's reward heads):

- **Randomised prior functions** (Osband, Aslanides & Cassirer 2018): member
  ``k`` predicts ``f_k(z, a) + scale * p_k(z, a)`` where ``p_k`` is a fixed,
  randomly initialised network that is never trained (its parameters are
  behind ``stop_gradient``). On the data, ``f_k`` learns to cancel the prior;
  away from the data nothing cancels it, so members differ by their priors.
  :func:`with_reward_prior` wraps a model's heads.
- **A diversity objective on unlabelled inputs**, in the spirit of DivDis
  (Lee et al. 2022) and D-BAT (Pagliardini et al. 2022): members fit the
  labelled data and are pushed apart on unlabelled inputs (here
  ``env.sample_state`` transitions, which include feature combinations the
  labelled data never show). :func:`diversity_loss` is that push for
  regression members: minus the mean squared pairwise difference of their
  predictions, each pair's term capped at ``cap`` so the push stops once two
  members already differ by ``sqrt(cap)`` (without a cap the loss is unbounded
  below and members would run off to infinity).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

__all__ = ["PriorHead", "diversity_loss", "with_reward_prior"]


class PriorHead(eqx.Module):
    """A reward head plus a frozen random prior: ``trained(z, a) + scale * prior(z, a)``.

    ``prior`` has the same architecture as ``trained`` and its own random
    initialisation; gradients never reach it (``stop_gradient``), so an
    optimiser leaves it as it was built (Adam's update of a zero gradient is 0).
    """

    trained: eqx.Module
    prior: eqx.Module
    scale: float = eqx.field(static=True)

    def __call__(self, latent: Float[Array, " D"], action: Int[Array, ""]) -> Float[Array, ""]:
        arrays, static = eqx.partition(self.prior, eqx.is_array)
        prior = eqx.combine(jax.lax.stop_gradient(arrays), static)
        return self.trained(latent, action) + self.scale * prior(latent, action)


def _prior_like(head: eqx.Module, key: Array) -> eqx.Module:
    """A freshly initialised copy of ``head``: every floating-point array redrawn with the
    same per-array scale (standard deviation of the original's entries), biases included."""
    arrays, static = eqx.partition(head, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(arrays)
    keys = jax.random.split(key, max(1, len(leaves)))
    fresh = [
        jax.random.normal(k, x.shape, x.dtype) * jnp.maximum(jnp.std(x), 1e-2)
        for k, x in zip(keys, leaves, strict=False)
    ]
    return eqx.combine(jax.tree.unflatten(treedef, fresh), static)


def with_reward_prior(model: Any, scale: float, key: Array, where=None) -> Any:
    """``model`` with each stacked reward head wrapped in a :class:`PriorHead` of ``scale``.

    ``where(model)`` selects the stacked heads (default ``model.head``, a
    ``RewardModel``; pass ``lambda m: m.reward_model.head`` for a world model).
    Each member gets its own prior (the stacked arrays are redrawn member by
    member). ``scale`` must be > 0.
    """
    if not scale > 0:
        raise ValueError(f"argument 'scale' must be > 0, got {scale!r}")
    where = (lambda m: m.head) if where is None else where
    heads = where(model)
    arrays = eqx.filter(heads, eqx.is_array)
    k = jax.tree.leaves(arrays)[0].shape[0]  # the member axis
    prior = eqx.filter_vmap(lambda h, kk: _prior_like(h, kk))(heads, jax.random.split(key, k))
    wrapped = eqx.filter_vmap(lambda t, p: PriorHead(t, p, float(scale)))(heads, prior)
    return eqx.tree_at(where, model, wrapped)


def diversity_loss(preds: Float[Array, "B K"], cap: float = 1.0) -> Float[Array, ""]:
    """Minus the mean over inputs and member pairs of ``min((p_i - p_j)^2, cap)``.

    Minimising it pushes members apart on the inputs ``preds`` were made on
    (unlabelled ones), never by more than ``sqrt(cap)`` per pair: it is 0 when
    all members agree and reaches its minimum ``-cap`` once every pair differs
    by at least ``sqrt(cap)``.
    """
    preds = jnp.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] < 2:
        raise ValueError(
            f"argument 'preds' must be [B, K] with K >= 2 members, got shape {preds.shape}"
        )
    if not cap > 0:
        raise ValueError(f"argument 'cap' must be > 0, got {cap!r}")
    k = preds.shape[1]
    diff2 = (preds[:, :, None] - preds[:, None, :]) ** 2  # [B, K, K]
    pairs = jnp.triu(jnp.ones((k, k), bool), 1)
    capped = jnp.minimum(diff2, cap)
    return -jnp.sum(jnp.where(pairs, capped, 0.0)) / (preds.shape[0] * pairs.sum())
