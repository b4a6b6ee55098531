"""Each agent kind as a ``Learner``: pure per-seed functions the one training driver runs.

A learner is the algorithm, nothing else: the driver (:mod:`innerlab.agents.driver`)
adds chunked ``jit``, seeds ``vmap``, logging, checkpoints and resume, and
:func:`innerlab.envs.rollout.episode_returns` runs its policy. To add a kind,
write ``init``, ``iteration`` and ``policy`` for it and register it in
``config.KINDS`` and ``LEARNERS`` below.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from innerlab.agents.config import AgentConfig
from innerlab.envs.rollout import Policy, bind
from innerlab.planners import ibp_train, muzero, ppo
from innerlab.planners.ibp import TrueImagination

Array = jax.Array

__all__ = ["Learner", "ibp_policy", "learner"]


@dataclasses.dataclass(frozen=True)
class Learner:
    """The pure functions of one agent kind, for one seed.

    ``init(key) -> state``: a fresh training state (every leaf an array, PRNG
    keys as raw key data, so checkpoints are plain arrays);
    ``iteration(state) -> (state, metrics)``: one act-and-learn step, whose
    metrics include ``episode_return`` (mean return of the episodes that ended
    in it, NaN if none) and ``episodes``; ``policy(state, greedy) -> Policy``:
    the agent acting with what it has learned so far.
    """

    init: Callable[[Array], Any]
    iteration: Callable[[Any], tuple[Any, dict[str, Array]]]
    policy: Callable[[Any, bool], Policy]
    obs_shape: tuple[int, ...]


def _with_nan_return(metrics: dict) -> dict:
    """``episode_return`` is NaN when no episode ended (the same for every kind)."""
    metrics = dict(metrics)
    metrics["episode_return"] = jnp.where(
        metrics["episodes"] > 0, metrics["episode_return"], jnp.nan
    )
    metrics["episodes"] = jnp.asarray(metrics["episodes"], jnp.float32)
    return metrics


def _state_learner(module, config: AgentConfig, env, params, policy) -> Learner:
    """The ``Learner`` of an algorithm module with ``init_state(key, native, env, params)``
    and ``train_iteration(state, native, env, params)`` (PPO's and MuZero's);
    ``policy(native, state, greedy) -> Policy``."""
    native = config.native()
    return Learner(
        init=lambda key: module.init_state(key, native, env, params),
        iteration=lambda s: _map_metrics(module.train_iteration(s, native, env, params)),
        policy=lambda s, greedy: policy(native, s, greedy),
        obs_shape=tuple(env.observation_space(params).shape),
    )


# --------------------------------------------------------------------------- PPO


def _ppo_init_carry(model, num_envs: int):
    return jax.vmap(lambda _: model.initial_carry())(jnp.arange(num_envs))


def _ppo_act(greedy: bool, model, carry, obs, key):
    """One step of the actor-critic in every env; memory resets come from the rollout."""
    reset = jnp.zeros(obs.shape[0], bool)
    carry, logits, _ = jax.vmap(model)(carry, obs, reset)
    action = jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)
    return carry, action.astype(jnp.int32)


def _ppo_learner(config: AgentConfig, env, params) -> Learner:
    return _state_learner(
        ppo, config, env, params,
        lambda native, s, greedy: Policy(
            s.model, bind(_ppo_act, bool(greedy)), _ppo_init_carry, name=config.kind
        ),
    )


# --------------------------------------------------------------------------- MuZero

_GREEDY_SEARCH = dict(gumbel_scale=0.0, dirichlet_fraction=0.0, temperature=0.01)


def _muzero_act(native, greedy: bool, model, carry, obs, key):
    """The search over the learned model; ``greedy``: no root noise, the most-visited action."""
    layer = muzero.make_layer(model, native, **(_GREEDY_SEARCH if greedy else {}))
    return carry, layer(obs, key).action.astype(jnp.int32)


def _muzero_learner(config: AgentConfig, env, params) -> Learner:
    return _state_learner(
        muzero, config, env, params,
        lambda native, s, greedy: Policy(
            s.model, bind(_muzero_act, native, bool(greedy)), name="muzero"
        ),
    )


# --------------------------------------------------------------------------- IBP


def _obs_features(model, obs):
    """The imagination model's features of a real observation ``obs`` (one example).

    ``TrueImagination``'s features are the observation itself (flattened), so no env
    state is needed; every learned model encodes the observation.
    """
    if isinstance(model, TrueImagination):
        return obs.reshape(-1).astype(jnp.float32)
    return model.features(model.initial(obs))


def _ibp_init_carry(obs_shape, ibp, num_envs: int):
    """The IBP's memory per env, plus the plan awaiting its real outcome (``pending``)."""
    feat = _obs_features(ibp.model, jnp.zeros(obs_shape))
    one = {"context": ibp.empty_context(), "pending": ibp.empty_context(),
           "real": jnp.zeros_like(feat)}
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs,) + x.shape), one)


def _ibp_plan(ibp, carry, obs, state, key):
    """Plan in every env (``state``: the env states, or ``None`` for a learned model)."""
    n = obs.shape[0]
    trace = jax.vmap(lambda o, s, k, c: ibp.plan(o, k, s, c))(
        obs, state, jax.random.split(key, n), carry["context"]
    )
    action = jax.vmap(ibp.env_action)(trace.action_vec)
    carry = {**carry, "pending": trace.context, "real": trace.real_features}
    return carry, action


def _ibp_act(ibp, carry, obs, key):
    return _ibp_plan(ibp, carry, obs, None, key)


def _ibp_act_on_state(ibp, carry, obs_state, key):
    """``observes="obs_state"``: imagining with the true dynamics starts from the env state."""
    obs, state = obs_state
    return _ibp_plan(ibp, carry, obs, state, key)


def _ibp_update(ibp, carry, action, next_obs, reward):
    """Fold the real step into the IBP's memory, as its training loop does."""
    avec = jax.nn.one_hot(action, ibp.action_size) if ibp.discrete else action
    feat = jax.vmap(lambda o: _obs_features(ibp.model, o))(next_obs)
    ctx = jax.vmap(lambda c, r_f, a, f, r: ibp.remember(c, r_f, a, f, r, 1.0))(
        carry["pending"], carry["real"], avec, feat, reward
    )
    return {**carry, "context": ctx}


def ibp_policy(ibp, obs_shape: tuple[int, ...], on_state: bool = False) -> Policy:
    """An IBP module acting as a ``Policy`` (its memory folds in every real step), as the
    ``"ibp"`` learner acts; ``on_state``: it imagines with the true dynamics, so it is
    handed ``(obs, state)``. Callers may pass a modified trained IBP (another imagination
    budget, ``IBP.with_budget``; another aggregation of its reward heads)."""
    return Policy(ibp, _ibp_act_on_state if on_state else _ibp_act,
                  bind(_ibp_init_carry, tuple(obs_shape)), _ibp_update,
                  observes="obs_state" if on_state else "obs", name="ibp")


def _ibp_learner(config: AgentConfig, env, params) -> Learner:
    native = config.native()
    obs_shape = tuple(env.observation_space(params).shape)
    # imagining with the true dynamics needs the env state, which only a rollout has
    on_state = native.imagination == "true"
    return Learner(
        init=lambda key: ibp_train.init_state(native, key),
        iteration=lambda s: _map_metrics(ibp_train.train_step(native, s)),
        policy=lambda s, greedy: ibp_policy(s.ibp, obs_shape, on_state),
        obs_shape=obs_shape,
    )


def _map_metrics(out):
    state, metrics = out
    return state, _with_nan_return(metrics)


LEARNERS: dict[str, Callable[[AgentConfig, Any, Any], Learner]] = {
    "ppo-lstm": _ppo_learner,
    "ppo-transformer": _ppo_learner,
    "muzero": _muzero_learner,
    "ibp": _ibp_learner,
}


@functools.lru_cache(maxsize=16)
def learner(config: AgentConfig) -> Learner:
    """The ``Learner`` of ``config`` (cached: the same config shares jitted functions)."""
    env, params = config.make_env()
    return LEARNERS[config.kind](config, env, params)


def stacked_policy(config: AgentConfig, states: Any, greedy: bool) -> Policy:
    """The policy of every seed at once: a ``Policy`` whose params have a leading seed axis
    (``eqx.filter_vmap`` over it runs each seed's policy)."""
    return learner(config).policy(states, greedy)
