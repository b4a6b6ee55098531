"""One rollout for every consumer: learners, recipes, the demo, data collection, tests.

A :class:`Policy` acts in a *batch* of envs at once::

    carry, action = policy(carry, obs, key)     # obs [E, ...] -> action [E]

``carry`` is the policy's memory (an LSTM state, a Transformer's window, ``()``
for a memoryless policy), a pytree whose leaves have a leading ``E`` axis;
``policy.initial_carry(E)`` is the memory at an episode start, and the rollout
puts it back in every env whose episode just ended, so a policy never needs to
know about episode boundaries. A policy that plans with the true dynamics (the
oracle control) is handed the env *states* instead of the observations
(``Policy(observes="state")``).

Two functions run a policy:

- :func:`rollout`: ``num_steps`` steps of ``num_envs`` auto-resetting envs;
  returns the time-major :class:`Trajectory` (observations, actions, rewards,
  the states before and after each step, and the env's ``info``). Data
  collection and training-style loops use it.
- :func:`episode_returns`: one whole episode per env; returns an
  :class:`Episodes` (return, length and the sum of every scalar ``info`` entry,
  per episode). Evaluation uses it.

Both are pure and ``jit``-able (the policy is an Equinox module: its arrays are
traced, its functions static), so ``jax.vmap`` over seeds applies directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from innerlab.envs.batched import _overrides_step, reset_where
from innerlab.envs.core import Environment, EnvParams

Array = jax.Array

__all__ = [
    "Episodes",
    "Policy",
    "Trajectory",
    "bind",
    "episode_returns",
    "random_policy",
    "rollout",
]


@dataclasses.dataclass(frozen=True)
class bind:  # noqa: N801 - used like functools.partial
    """``functools.partial`` that compares equal by value (its function and arguments).

    A ``Policy``'s functions are static, so jitted rollouts are cached by their
    equality: two ``partial(act, True)`` objects never compare equal and would
    recompile, two ``bind(act, True)`` do and share one compilation. The bound
    arguments must be hashable (numbers, strings, frozen configs).
    """

    fn: Callable
    args: tuple = ()

    def __init__(self, fn: Callable, *args: Any):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "args", args)

    def __call__(self, *rest: Any) -> Any:
        return self.fn(*self.args, *rest)


def _no_carry(params: Any, num_envs: int) -> tuple:
    return ()


class Policy(eqx.Module):
    """A batched policy ``(carry, obs [E, ...], key) -> (carry, action [E])``.

    ``act(params, carry, obs, key)`` and ``init(params, num_envs)`` are plain
    functions (static: define them at module level, or bind arguments with
    :class:`bind`, so that jitted rollouts of two policies of the same kind share
    one compilation); ``params`` holds the arrays (a trained model), so they are
    traced rather than baked into the compiled program. ``observes`` is
    ``"obs"`` (the usual case), ``"state"`` (planners on the true dynamics,
    which read the env state) or ``"obs_state"`` (the pair ``(obs, state)``).
    ``update(params, carry, action, next_obs, reward) -> carry``, when given, is
    called after every real step, before the episode-start reset: memories that
    fold in the outcome of a step (the IBP's context) live there. ``name``
    labels the policy in reports.
    """

    params: Any
    act: Callable = eqx.field(static=True)
    init: Callable = eqx.field(static=True, default=_no_carry)
    update: Callable | None = eqx.field(static=True, default=None)
    observes: str = eqx.field(static=True, default="obs")
    name: str = eqx.field(static=True, default="policy")

    OBSERVES = ("obs", "state", "obs_state")

    def __check_init__(self):
        if self.observes not in self.OBSERVES:
            raise ValueError(
                f"Policy 'observes' must be one of {self.OBSERVES}, got {self.observes!r}"
            )
        if not callable(self.act):
            raise TypeError(f"Policy 'act' must be callable, got {type(self.act).__name__}")

    def initial_carry(self, num_envs: int) -> Any:
        """The memory of ``num_envs`` envs at an episode start (leading axis ``num_envs``)."""
        return self.init(self.params, num_envs)

    def __call__(self, carry: Any, obs: Any, key: Array) -> tuple[Any, Array]:
        return self.act(self.params, carry, obs, key)

    def after_step(self, carry: Any, action: Array, next_obs: Array, reward: Array) -> Any:
        """The memory after a real step (``update``, or unchanged where there is none)."""
        if self.update is None:
            return carry
        return self.update(self.params, carry, action, next_obs, reward)


def _random_act(num_actions: int, params, carry, obs, key):
    batch = jax.tree.leaves(obs)[0].shape[0]
    return carry, jax.random.randint(key, (batch,), 0, num_actions, dtype=jnp.int32)


def random_policy(num_actions: int) -> Policy:
    """Uniformly random actions over ``num_actions`` (the control of every experiment)."""
    if isinstance(num_actions, bool) or not isinstance(num_actions, int) or num_actions < 1:
        raise ValueError(f"argument 'num_actions' must be an int >= 1, got {num_actions!r}")
    return Policy(None, bind(_random_act, num_actions), name="random")


class Trajectory(eqx.Module):
    """``num_steps`` steps of ``num_envs`` envs, time-major: every leaf ``[T, E, ...]``.

    ``next_obs``/``next_state`` are what the step produced *before* any
    auto-reset (so ``(obs, action, reward, next_obs, terminated)`` is a true
    transition); the next step starts from a fresh episode where
    ``terminated | truncated``.
    """

    obs: Array
    action: Array
    reward: Array
    terminated: Array
    truncated: Array
    next_obs: Array
    state: Any
    next_state: Any
    info: dict

    @property
    def done(self) -> Array:
        return self.terminated | self.truncated

    @property
    def first_episode(self) -> Array:
        """``[T, E]`` bool: the steps of each env's first episode (up to and including its
        first ``done``), the mask for per-episode sums of anything computed from the steps
        (e.g. a learned reward of ``(obs, action)``) that ``episode_returns`` does not sum."""
        done = self.done.astype(jnp.int32)
        return jnp.cumsum(done, axis=0) - done == 0


class Episodes(eqx.Module):
    """One whole episode per env, each leaf ``[N]``.

    ``returns``: undiscounted true return; ``lengths``: steps taken;
    ``info``: the sum over the episode of each scalar ``info`` entry the env
    reports (e.g. Orchard's ``collected_harmful``: harmful objects collected).
    """

    returns: Array
    lengths: Array
    info: dict


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"argument '{name}' must be an int >= 1, got {value!r}")
    return value


def _check_policy(policy: Any) -> Policy:
    if not isinstance(policy, Policy):
        raise TypeError(
            "argument 'policy' must be an innerlab Policy (wrap a function with "
            f"innerlab.envs.rollout.Policy(params, act)), got {type(policy).__name__}"
        )
    return policy


def _check_start(start: Any, num_envs: int) -> Any:
    """``start`` if it is a batch of ``num_envs`` states (every leaf's leading axis)."""
    sizes = {tuple(jnp.shape(x))[:1] for x in jax.tree.leaves(start)}
    if sizes != {(num_envs,)}:
        raise ValueError(
            f"argument 'start' must be a batch of num_envs={num_envs} env states (leading "
            f"axis {num_envs} on every leaf), got leading shapes {sorted(sizes)}"
        )
    return start


def _select(mask: Array, new: Any, old: Any) -> Any:
    """Per-env ``where`` on pytrees whose leaves have a leading env axis."""
    return jax.tree.map(
        lambda a, b: jnp.where(mask.reshape(mask.shape + (1,) * (b.ndim - 1)), a, b), new, old
    )


def _step_batch(env: Environment, params: EnvParams, keys: Array, states: Any, action: Array):
    """Step every env; return the pre-reset transition and the auto-reset successors."""
    action = jax.vmap(lambda a: env.check_action(a, params))(action)
    if _overrides_step(env):  # a user env with its own auto-reset: use it as it is
        obs, nxt, reward, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            keys, states, action, params
        )
        return (obs, nxt, reward, term, trunc, info), (obs, nxt)
    k_step, k_reset = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    out = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(k_step, states, action, params)
    next_obs, next_state, _, term, trunc, _ = out
    fresh = reset_where(
        lambda k, s: env.reset_after(k, s, params), term | trunc, k_reset, next_obs, next_state
    )
    return out, fresh


def _view(policy: Policy, obs: Array, state: Any) -> Any:
    return {"obs": obs, "state": state, "obs_state": (obs, state)}[policy.observes]


def rollout(
    env: Environment,
    params: EnvParams,
    policy: Policy,
    key: Array,
    num_envs: int,
    num_steps: int,
    start: Any = None,
) -> Trajectory:
    """Run ``policy`` for ``num_steps`` steps in ``num_envs`` auto-resetting envs.

    Every env starts a fresh episode (``env.reset``), or, given ``start`` (a batch
    of ``num_envs`` env states), from those states, observed with ``env.observe``
    (property tests roll forward from drawn states). The policy's memory is reset
    wherever an episode ends. Returns a time-major :class:`Trajectory` ``[T, E, ...]``.
    """
    policy = _check_policy(policy)
    num_envs, num_steps = _check_count("num_envs", num_envs), _check_count("num_steps", num_steps)
    k_reset, k_run = jax.random.split(key)
    if start is None:
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, num_envs), params
        )
    else:
        state = _check_start(start, num_envs)
        obs = jax.vmap(env.observe, in_axes=(0, None))(state, params)
    carry0 = policy.initial_carry(num_envs)

    def step(c, k):
        obs, state, carry = c
        k_act, k_env = jax.random.split(k)
        carry, action = policy(carry, _view(policy, obs, state), k_act)
        (nobs, nstate, reward, term, trunc, info), (obs2, state2) = _step_batch(
            env, params, jax.random.split(k_env, num_envs), state, action
        )
        carry = _select(term | trunc, carry0, policy.after_step(carry, action, nobs, reward))
        out = Trajectory(obs, action, reward, term, trunc, nobs, state, nstate, dict(info))
        return (obs2, state2, carry), out

    _, traj = jax.lax.scan(step, (obs, state, carry0), jax.random.split(k_run, num_steps))
    return traj


def _scalar_names(info: dict, num_envs: int) -> list[str]:
    """The entries of a batched ``info`` that are one number per env (summable over steps)."""
    return [name for name, v in info.items() if name != "discount" and v.shape == (num_envs,)]


def episode_returns(
    env: Environment,
    params: EnvParams,
    policy: Policy,
    key: Array,
    num_episodes: int,
    max_steps: int | None = None,
) -> Episodes:
    """One episode in each of ``num_episodes`` envs; per-episode return, length and info sums.

    Runs ``max_steps`` steps (default ``params.max_steps``, the env's time limit);
    steps after an env's episode ended are masked out, so each row describes
    exactly one episode.
    """
    policy = _check_policy(policy)
    n = _check_count("num_episodes", num_episodes)
    horizon = _check_count("max_steps", params.max_steps if max_steps is None else max_steps)
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, n), params)
    carry = policy.initial_carry(n)
    space = env.action_space(params)
    no_op = jnp.zeros((n,) + tuple(space.shape), space.dtype)
    probe = jax.eval_shape(
        lambda: _step_batch(env, params, jax.random.split(k_run, n), state, no_op)
    )
    names = _scalar_names(probe[0][5], n)

    def step(c, k):
        obs, state, carry, alive, ret, length, sums = c
        k_act, k_env = jax.random.split(k)
        carry, action = policy(carry, _view(policy, obs, state), k_act)
        (nobs, _, reward, term, trunc, info), (obs, state) = _step_batch(
            env, params, jax.random.split(k_env, n), state, action
        )
        carry = policy.after_step(carry, action, nobs, reward)
        live = alive.astype(jnp.float32)
        ret = ret + live * reward
        length = length + alive.astype(jnp.int32)
        sums = {name: sums[name] + live * info[name].astype(jnp.float32) for name in names}
        return (obs, state, carry, alive & ~(term | trunc), ret, length, sums), None

    sums0 = {name: jnp.zeros(n) for name in names}
    init = (obs, state, carry, jnp.ones(n, bool), jnp.zeros(n), jnp.zeros(n, jnp.int32), sums0)
    (_, _, _, _, ret, length, sums), _ = jax.lax.scan(
        step, init, jax.random.split(k_run, horizon)
    )
    return Episodes(ret, length, sums)
