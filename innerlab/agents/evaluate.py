"""One evaluation for trained agents and for the controls every experiment needs.

``evaluate(agent, env, params, episodes)`` runs whole episodes with
:func:`innerlab.envs.rollout.episode_returns` and returns an
:class:`Evaluation`: per seed and episode the return, the episode length and
the sums of the env's scalar ``info`` entries. ``agent`` is a ``TrainResult``
(each trained seed evaluated, vmapped) or any ``Policy``: the random policy
(:func:`random_policy`) and the oracle planner (:func:`oracle_policy`, MCTS
on the true dynamics and the true reward) go through the same code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import equinox as eqx
import jax
import numpy as np

from innerlab.agents.driver import TrainResult
from innerlab.envs.core import Environment, EnvParams
from innerlab.envs.rollout import Policy, episode_returns, random_policy
from innerlab.planners.mcts import MCTSLayer
from innerlab.protocols import ReturnBound

__all__ = ["Evaluation", "bootstrap_ci", "evaluate", "oracle_policy", "random_policy"]


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN for fewer than 2)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = rng.choice(values, (resamples, values.size)).mean(1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Whole-episode results, ``[S, N]`` arrays: ``S`` seeds (agents) x ``N`` episodes.

    ``optimal`` holds, where the env knows one, an upper bound on each
    episode's return (Orchard: the value of every good object), so
    ``fraction_of_optimal`` compares agents across layouts.
    """

    name: str
    seeds: tuple[int, ...]
    returns: np.ndarray
    lengths: np.ndarray
    info: dict[str, np.ndarray]
    optimal: np.ndarray | None = None

    def per_seed(self, metric: str = "return") -> np.ndarray:
        """Mean over episodes of ``metric`` (``"return"``, ``"length"``, an info name): ``[S]``."""
        table = {"return": self.returns, "length": self.lengths, **self.info}
        if metric not in table:
            raise ValueError(f"argument 'metric' must be one of {sorted(table)}, got {metric!r}")
        return table[metric].mean(1)

    @property
    def fraction_of_optimal(self) -> np.ndarray | None:
        """Per seed: mean return over mean optimal bound (``None`` where there is no bound)."""
        if self.optimal is None:
            return None
        return self.returns.mean(1) / self.optimal.mean(1)

    def summary(self) -> dict[str, Any]:
        """Mean over seeds, its 95% bootstrap interval over seeds, and the per-seed means."""
        out: dict[str, Any] = {"name": self.name, "seeds": list(self.seeds),
                               "episodes": int(self.returns.shape[1])}
        metrics = {"return": self.returns.mean(1), "length": self.lengths.mean(1)}
        metrics.update({k: v.mean(1) for k, v in self.info.items()})
        if self.optimal is not None:
            metrics["fraction_of_optimal"] = self.fraction_of_optimal
        for name, per_seed in metrics.items():
            out[name] = {"mean": float(np.mean(per_seed)), "ci95": list(bootstrap_ci(per_seed)),
                         "per_seed": [float(v) for v in per_seed]}
        return out


def _check_obs(policy_obs_shape: tuple[int, ...] | None, env: Environment, params: EnvParams):
    if policy_obs_shape is None:
        return
    shape = tuple(env.observation_space(params).shape)
    if shape != tuple(policy_obs_shape):
        raise ValueError(
            f"the agent was trained on observations of shape {tuple(policy_obs_shape)}, but "
            f"{env.name} with these params observes {shape}; evaluate with the agent's own env "
            "(result.config.make_env(split=...))"
        )


@functools.partial(eqx.filter_jit)
def _episodes_per_seed(env, params, policies, keys, num_episodes: int):
    return eqx.filter_vmap(
        lambda pol, k: episode_returns(env, params, pol, k, num_episodes)
    )(policies, keys)


@functools.partial(eqx.filter_jit)
def _episodes_one_policy(env, params, policy, keys, num_episodes: int):
    return jax.vmap(lambda k: episode_returns(env, params, policy, k, num_episodes))(keys)


def _optimal(env, params, keys, num_episodes: int) -> np.ndarray | None:
    if not isinstance(env, ReturnBound):
        return None
    bound = env.optimal_return_upper_bound

    @jax.jit
    def per_key(k):  # the same reset keys episode_returns draws its episodes from
        k_reset, _ = jax.random.split(k)
        _, states = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, num_episodes), params
        )
        return jax.vmap(lambda s: bound(s, params))(states)

    return np.asarray(jax.vmap(per_key)(keys))


def evaluate(
    agent: TrainResult | Policy,
    env: Environment | None = None,
    params: EnvParams | None = None,
    episodes: int = 64,
    *,
    seed: int = 0,
    seeds: tuple[int, ...] = (0,),
    greedy: bool = True,
) -> Evaluation:
    """Run ``episodes`` whole episodes per seed; return an :class:`Evaluation`.

    Args:
        agent: a ``TrainResult`` (every trained seed is evaluated) or a ``Policy``
            (a control: evaluated once per entry of ``seeds``).
        env, params: where to act; default the agent's own env (train split). Use
            ``result.config.make_env(split="test")`` for the test split.
        episodes: episodes per seed.
        seed: the evaluation's randomness (layouts, action sampling); the same
            ``seed`` gives every agent the same episodes.
        greedy: for a ``TrainResult``, act greedily (see ``TrainResult.policy``).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"argument 'episodes' must be an int >= 1, got {episodes!r}")
    if isinstance(agent, TrainResult):
        if env is None:
            env, params = agent.config.make_env()
        from innerlab.agents.learners import learner

        _check_obs(learner(agent.config).obs_shape, env, params)
        run_seeds = agent.seeds
        keys = _keys(seed, run_seeds)
        out = _episodes_per_seed(env, params, agent.policies(greedy), keys, episodes)
        name = agent.config.kind
    elif isinstance(agent, Policy):
        if env is None:
            raise ValueError("argument 'env' is required to evaluate a Policy")
        run_seeds = tuple(int(s) for s in seeds)
        keys = _keys(seed, run_seeds)
        out = _episodes_one_policy(env, params, agent, keys, episodes)
        name = agent.name
    else:
        raise TypeError(f"argument 'agent' must be a TrainResult or a Policy, got "
                        f"{type(agent).__name__}")
    params = env.default_params if params is None else params
    return Evaluation(
        name=name,
        seeds=run_seeds,
        returns=np.asarray(out.returns),
        lengths=np.asarray(out.lengths),
        info={k: np.asarray(v) for k, v in out.info.items()},
        optimal=_optimal(env, params, keys, episodes),
    )


def _keys(seed: int, seeds: tuple[int, ...]) -> jax.Array:
    """One evaluation key per seed row; every agent of a row sees the same episodes."""
    base = jax.random.key(seed)
    return jax.vmap(lambda s: jax.random.fold_in(base, s))(np.arange(len(seeds)))


def _oracle_act(layer, carry, states, key):
    return carry, layer(states, key).action


def oracle_policy(env: Environment, params: EnvParams, num_simulations: int = 32,
                  discount: float = 0.97) -> Policy:
    """MCTS on the env's true dynamics and true reward: the ceiling of every comparison.

    It reads the env state (``observes="state"``), which no learner can.
    """
    layer = MCTSLayer(None, num_simulations, env=env, env_params=params, reward="env",
                      discount=discount, gumbel_scale=0.0, temperature=0.01)
    return Policy(layer, _oracle_act, observes="state", name="oracle")
