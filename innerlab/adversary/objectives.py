"""Disagreement objectives: what the adversary maximises and what the reports measure.

The adversary looks for inputs where the reward ensemble's members disagree,
because disagreement marks where the training data left the reward
unidentified (Orchard's "large is good" vs "large and not red is good").
These functions turn a reward model and a batch of inputs into one score per
example; the searches, the retraining loop, the reports and
``innerlab.testing`` all call them, so a score means the same thing
everywhere.

A "reward model" here is anything with ``__call__(obs, action) -> [K]`` on a
single example (``RewardModel``, ``TorchRewardModel``, a planted test model).
All functions are pure and jittable; batches are ``vmap``ped.

``true_gap`` uses the environment's ground truth and is for evaluation only:
a search that maximised it would be cheating (it could not run on a real
task, where the true reward is what we are trying to learn).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from innerlab.reward_models.aggregate import aggregate, ensemble_std, max_pairwise_gap

MEASURES = ("std", "gap")

RewardFn = Callable[[Array, Array], Array]


def measure_fn(measure: str) -> Callable[[Array], Array]:
    """The member-axis reduction named ``measure``: ``"std"`` or ``"gap"`` (max - min)."""
    if measure == "std":
        return ensemble_std
    if measure == "gap":
        return max_pairwise_gap
    raise ValueError(f"argument 'measure' must be one of {MEASURES}, got {measure!r}")


def _check_batch(obs: Array, action: Array) -> None:
    if obs.ndim < 1 or action.ndim != 1 or obs.shape[0] != action.shape[0]:
        raise ValueError(
            "arguments 'obs' [B, ...] and 'action' [B] must share the batch size B, got obs "
            f"shape {tuple(obs.shape)} and action shape {tuple(action.shape)}"
        )


def member_predictions(model: RewardFn, obs: Array, action: Array) -> Float[Array, "B K"]:
    """Every member's prediction for each ``(obs[i], action[i])``: ``[B, K]``."""
    obs, action = jnp.asarray(obs), jnp.asarray(action)
    _check_batch(obs, action)
    return jax.vmap(model)(obs, action)


def disagreement(
    model: RewardFn,
    obs: Float[Array, "B ..."],
    action: Int[Array, " B"],
    measure: str = "std",
) -> Float[Array, " B"]:
    """How much the ensemble disagrees on each ``(obs[i], action[i])``.

    ``measure="std"`` is the members' standard deviation, ``"gap"`` the largest
    difference between two members (``max_pairwise_gap``). Zero means the
    members agree; larger means the data did not pin the reward down there.
    """
    reduce = measure_fn(measure)
    return reduce(member_predictions(model, obs, action))


def state_disagreement(
    model: RewardFn, obs: Float[Array, "B ..."], num_actions: int, measure: str = "std"
) -> Float[Array, " B"]:
    """Disagreement of each observation at its most contested action: ``max_a disagreement``.

    Searches over states score a state by this, since a state is worth
    labelling if any of its actions is contested.
    """
    return jnp.max(action_disagreement(model, obs, num_actions, measure), axis=-1)


def action_disagreement(
    model: RewardFn, obs: Float[Array, "B ..."], num_actions: int, measure: str = "std"
) -> Float[Array, "B A"]:
    """Disagreement for every action of each observation: ``[B, A]``."""
    reduce = measure_fn(measure)
    obs = jnp.asarray(obs)
    if num_actions < 1:
        raise ValueError(f"argument 'num_actions' must be >= 1, got {num_actions}")
    actions = jnp.arange(num_actions, dtype=jnp.int32)
    preds = jax.vmap(lambda o: jax.vmap(lambda a: model(o, a))(actions))(obs)  # [B, A, K]
    return reduce(preds)


def true_gap(
    model: RewardFn,
    env: Any,
    params: Any,
    states: Any,
    actions: Int[Array, " B"],
    how: str = "mean",
    k: float = 1.0,
) -> Float[Array, " B"]:
    """``|aggregate(model) - true_reward|`` for each ``(states[i], actions[i])`` (evaluation only).

    ``states`` is a batch of env states (a pytree with leading axis B);
    ``how``/``k`` choose the aggregation the agent plans with. Uses ground
    truth, so never use it as a search objective.
    """
    actions = jnp.asarray(actions)
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    preds = member_predictions(model, obs, actions)
    truth = jax.vmap(lambda s, a: env.true_reward(s, a, params))(states, actions)
    return jnp.abs(aggregate(preds, how, k) - truth)
