"""Stepping a batch of envs with auto-reset, paying for resets only where episodes ended.

``jax.vmap(env.step)`` is the gymnax idiom, but under ``vmap`` the auto-reset's
conditional becomes a select: every env computes a fresh episode on every
step and keeps it only if its episode ended. A reset (random layout and
features) costs several transitions, so on a CPU the resets dominate.

``batched_step`` returns exactly what ``jax.vmap(env.step, in_axes=(0, 0, 0, None))``
returns (bit for bit: each env uses the same reset key it would have used),
but gathers the envs whose episode ended, resets only those (at most
``max_resets`` of them; a step where more ended falls back to resetting all),
and scatters the fresh episodes back. Use it in PureJaxRL-style loops over
many envs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from innerlab.envs.core import Environment, EnvParams


def _overrides_step(env: Environment) -> bool:
    return type(env).step is not Environment.step


def batched_step(
    env: Environment,
    keys: jax.Array,
    states: Any,
    actions: jax.Array,
    params: EnvParams | None = None,
    max_resets: int | None = None,
):
    """``vmap(env.step)`` over a batch, resetting only the envs whose episode ended.

    Args:
        env: any innerlab env.
        keys: ``[B]`` PRNG keys, one per env.
        states: a batch of env states (leading axis ``B`` on every leaf).
        actions: ``[B, *action_shape]`` actions.
        params: env params (shared by the batch).
        max_resets: how many resets one step computes on the fast path; default ``B // 8``.
            Steps where more episodes ended reset the whole batch (same result, slower).

    Returns:
        ``obs, states, reward, terminated, truncated, info``, each with leading axis ``B``.
    """
    params = env.resolve_params(params)
    actions = jnp.asarray(actions)
    action_shape = tuple(env.action_space(params).shape)
    batch = actions.shape[0] if actions.ndim else 0
    if actions.ndim != 1 + len(action_shape) or tuple(actions.shape[1:]) != action_shape:
        raise ValueError(
            f"argument 'actions' must have shape [B, *{action_shape}] (one action per env), "
            f"got {actions.shape}"
        )
    if keys.shape[:1] != (batch,):
        raise ValueError(
            f"argument 'keys' must hold one key per env ({batch}), got shape {keys.shape}"
        )
    if _overrides_step(env):  # e.g. BoostChain carries chain state across the reset
        return jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)
    actions = jax.vmap(lambda a: env.check_action(a, params))(actions)
    key_step, key_reset = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    obs, states, reward, terminated, truncated, info = jax.vmap(
        env.step_env, in_axes=(0, 0, 0, None)
    )(key_step, states, actions, params)
    obs, states = reset_where(
        lambda k, s: env.reset_after(k, s, params),
        terminated | truncated,
        key_reset,
        obs,
        states,
        max_resets,
    )
    info = dict(info)
    info["discount"] = 1.0 - terminated.astype(jnp.float32)
    return obs, states, reward, terminated, truncated, info


def reset_where(
    reset_fn: Callable[[jax.Array, Any], tuple[jax.Array, Any]],
    mask: jax.Array,
    keys: jax.Array,
    obs: jax.Array,
    states: Any,
    max_resets: int | None = None,
):
    """Replace ``obs``/``states`` by ``reset_fn(keys[i], states[i])`` where ``mask[i]`` is set.

    ``reset_fn`` is a single-env ``(key, ended_state) -> (obs, state)``, e.g.
    ``lambda k, s: env.reset_after(k, s, params)``. The result equals resetting
    every env and selecting, but only about as many resets as envs are masked
    are computed: one branch per size ``max_resets // 8``, ``// 4``, ``// 2``
    and ``max_resets`` (default ``B // 8``); the smallest that fits is the one
    that runs (``lax.switch``), and all ``B`` when more are masked. The sizes
    change only the work, never the result.
    """
    batch = mask.shape[0]
    limit = max(1, batch // 8) if max_resets is None else int(max_resets)
    if not 1 <= limit <= batch:
        raise ValueError(f"argument 'max_resets' must be in [1, {batch}], got {max_resets}")
    reset = jax.vmap(reset_fn)
    sizes = sorted({max(1, limit // 8), max(1, limit // 4), max(1, limit // 2), limit})

    def reset_some(size, obs_states):
        obs, states = obs_states
        idx = jnp.nonzero(mask, size=size, fill_value=batch)[0]
        safe = jnp.minimum(idx, batch - 1)
        obs_re, states_re = reset(keys[safe], jax.tree.map(lambda x: x[safe], states))

        def put(old, new):
            return old.at[idx].set(new.astype(old.dtype), mode="drop")

        return put(obs, obs_re), jax.tree.map(put, states, states_re)

    def reset_all(obs_states):
        obs, states = obs_states
        obs_re, states_re = reset(keys, states)

        def pick(new, old):
            m = mask.reshape(mask.shape + (1,) * (old.ndim - 1))
            return jnp.where(m, new, old).astype(old.dtype)

        return pick(obs_re, obs), jax.tree.map(pick, states_re, states)

    count = jnp.sum(mask)
    branch = jnp.sum(count > jnp.asarray(sizes))  # the smallest size that fits; len(sizes): all
    branches = [functools.partial(reset_some, size) for size in sizes] + [reset_all]
    return jax.lax.switch(branch, branches, (obs, states))
