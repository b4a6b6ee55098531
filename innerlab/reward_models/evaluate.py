"""How close is a learned reward to the true one, on and off the training distribution?

``evaluate_objective`` scores an ensemble against ``env.true_reward`` on three
separately collected data sets:

* ``train``: what a policy (default: random) visits in the train split;
* ``test``: the same policy in the test split (e.g. Orchard's harmful large
  objects, a feature combination training never shows);
* ``offdist``: ``env.sample_state`` with uniform actions (any valid state).

and reports, for each, the mean absolute error and Pearson correlation of
the aggregated prediction, the EPIC distance (``epic.epic_distance_state_action``,
rewards of ``(s, a)``) and the members' disagreement (``ensemble_std`` and
``max_pairwise_gap`` from ``aggregate``, the library's disagreement measures).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from innerlab.protocols import ActionTableEnsemble, RewardEnsemble, require, satisfies
from innerlab.reward_models.aggregate import aggregate, ensemble_std, max_pairwise_gap
from innerlab.reward_models.data import random_policy, rollout, sample_state_batch
from innerlab.reward_models.epic import epic_distance_state_action, mae, pearson

SPLITS = ("train", "test", "offdist")


def all_actions(model, obs: jax.Array, num_actions: int) -> jax.Array:
    """``[A, K]`` predictions for every action (one encoding when the model offers it)."""
    if satisfies(model, ActionTableEnsemble):
        return model.all_actions(obs)
    return jax.vmap(lambda a: model(obs, a))(jnp.arange(num_actions, dtype=jnp.int32))


@eqx.filter_jit
def _score(model, env, params, states, actions, next_states, can_states, gamma, how, k, disagree):
    num_actions = env.num_actions(params)
    observe = jax.vmap(lambda s: env.observe(s, params))

    def learned_table(s):  # [N, A]
        preds = jax.vmap(lambda o: all_actions(model, o, num_actions))(observe(s))
        return aggregate(preds, how, k)

    def true_table(s):  # [N, A]
        acts = jnp.arange(num_actions, dtype=jnp.int32)
        return jax.vmap(lambda x: jax.vmap(lambda a: env.true_reward(x, a, params))(acts))(s)

    obs = observe(states)
    preds = jax.vmap(model)(obs, actions)  # [N, K]
    pred = aggregate(preds, how, k)
    truth = jax.vmap(lambda s, a: env.true_reward(s, a, params))(states, actions)
    out = {
        "mae": mae(pred, truth),
        "pearson": pearson(pred, truth),
        "epic": epic_distance_state_action(
            learned_table, true_table, states, actions, next_states, can_states, gamma
        ),
        "true_reward_mean": jnp.mean(truth),
    }
    if disagree:
        std, gap = ensemble_std(preds), max_pairwise_gap(preds)
        nonzero = truth != 0
        out.update(
            std_mean=jnp.mean(std),
            gap_mean=jnp.mean(gap),
            gap_max=jnp.max(gap),
            # where something happens (an object is collected), disagreement matters most
            std_mean_rewarding=jnp.sum(jnp.where(nonzero, std, 0)) / jnp.maximum(nonzero.sum(), 1),
        )
    return out


def _flatten(tree):
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def evaluate_objective(
    model,
    env,
    params,
    key: jax.Array,
    n: int = 1024,
    num_envs: int = 16,
    policy_fn=None,
    num_canonical: int = 64,
    gamma: float = 0.99,
    how: str = "mean",
    k: float = 1.0,
    disagreement: bool = True,
) -> dict[str, float]:
    """Score a reward model against the env's true reward on train, test and off-distribution data.

    Args:
        model: anything with ``model(obs, action) -> [K]`` and ``num_members`` (a
            ``RewardModel`` or a ``TorchRewardModel``).
        env, params: the environment; ``params.split`` is replaced by ``"train"`` and
            ``"test"`` for the two rollout sets.
        key: PRNG key.
        n: transitions per data set (rounded down to a multiple of ``num_envs``).
        num_envs: parallel envs for the rollouts.
        policy_fn: ``policy_fn(key, obs) -> action``; default uniform random.
        num_canonical: states drawn for EPIC's ``E_S`` (from each set's next states).
        gamma: EPIC's shaping discount.
        how, k: aggregation of the K predictions (see ``aggregate``).
        disagreement: also report ``std_mean``, ``gap_mean``, ``gap_max`` and
            ``std_mean_rewarding`` (needs K >= 2).

    Returns:
        A flat dict of floats, keys ``"<set>/<metric>"`` with ``<set>`` in
        ``train``, ``test``, ``offdist`` and metrics ``mae``, ``pearson``, ``epic``,
        ``true_reward_mean``, ``n`` and the disagreement measures.
    """
    require(model, RewardEnsemble, consumer="reward_models.evaluate_objective", argument="model")
    if disagreement and model.num_members < 2:
        raise ValueError(
            "argument 'model': disagreement needs an ensemble of at least 2 members, got "
            f"num_members={model.num_members}; pass disagreement=False"
        )
    if n < 2 * num_envs:
        raise ValueError(f"argument 'n' must be >= 2 * num_envs = {2 * num_envs}, got {n}")
    policy_fn = random_policy(env.num_actions(params)) if policy_fn is None else policy_fn
    steps = n // num_envs
    keys = jax.random.split(key, 6)
    results: dict[str, float] = {}
    for i, split in enumerate(SPLITS):
        if split == "offdist":
            trans, states, next_states = sample_state_batch(env, params, keys[i], n)
        else:
            # the params' own replace: wrappers (SideChannelParams) forward the split
            split_params = params.replace(split=split)
            trans, states, next_states = rollout(
                env, split_params, policy_fn, keys[i], num_envs, steps
            )
            trans, states, next_states = trans.flatten(), _flatten(states), _flatten(next_states)
        size = len(trans)
        idx = jax.random.randint(keys[3 + i], (num_canonical,), 0, size)
        can_states = jax.tree.map(lambda x, idx=idx: x[idx], next_states)
        metrics: dict[str, Any] = _score(
            model, env, params, states, trans.action, next_states, can_states,
            float(gamma), how, float(k), bool(disagreement),
        )
        results.update({f"{split}/{name}": float(v) for name, v in metrics.items()})
        results[f"{split}/n"] = float(size)
    return results
