"""Egocentric: a gridworld seen from the agent, re-centred on it every step.

A sensor, not a new task: dynamics, rewards, params, states and splits are the
wrapped env's; only ``observe`` changes. The ``H x W`` channel grid becomes a
``(2H-1) x (2W-1)`` grid with the agent always in the centre cell, so every
cell of the room stays in view wherever the agent stands (cells outside the
room are zero in every channel).

Why: "what the agent would collect by moving up" is then the same input
units in every position. A flat (MLP) encoder learns the reward and value of
a gridworld from far less data this way; from the global view it must learn
each (agent cell, object cell) conjunction separately. The MuZero learner
offers it as ``MuZeroConfig.egocentric``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from innerlab.envs.core import Environment, EnvParams
from innerlab.envs.grid import GridEnvironment


def egocentric_view(obs: Float[Array, "H W C"], agent: Array) -> Float[Array, "2H-1 2W-1 C"]:
    """``obs`` shifted so that ``agent`` (row, col) lands on the centre cell ``(H-1, W-1)``."""
    h, w, c = obs.shape
    padded = jnp.pad(obs, ((h - 1, h - 1), (w - 1, w - 1), (0, 0)))
    return jax.lax.dynamic_slice(padded, (agent[0], agent[1], 0), (2 * h - 1, 2 * w - 1, c))


class Egocentric(Environment):
    """Wrap a ``GridEnvironment`` so that its observations are agent-centred."""

    def __init__(self, env: Environment):
        if not isinstance(env, GridEnvironment):
            raise TypeError(
                f"Egocentric wraps gridworlds (GridEnvironment), got {type(env).__name__}"
            )
        self.inner = env
        self.name = f"Egocentric({env.name})"
        self.experiment = env.experiment
        self.SPLIT_STATE_FIELDS = env.SPLIT_STATE_FIELDS

    @property
    def default_params(self) -> EnvParams:
        return self.inner.default_params

    def observe(self, state: Any, params: EnvParams | None = None) -> Array:
        params = self.resolve_params(params)
        return egocentric_view(self.inner.observe(state, params), self.inner.grid_of(state).agent)

    def reset_env(self, key: Array, params: EnvParams):
        _, state = self.inner.reset_env(key, params)
        return self.observe(state, params), state

    def reset_after(self, key: Array, ended_state: Any, params: EnvParams):
        _, state = self.inner.reset_after(key, ended_state, params)
        return self.observe(state, params), state

    def step_env(self, key: Array, state: Any, action: Array, params: EnvParams):
        _, state, reward, terminated, truncated, info = self.inner.step_env(
            key, state, action, params
        )
        return self.observe(state, params), state, reward, terminated, truncated, info

    def __getattr__(self, name: str) -> Any:
        # everything that does not involve the observation is the wrapped env's
        # (sample_state, true_reward, is_valid, renderers, optimal_return_upper_bound, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def sample_state(self, key: Array, params: EnvParams | None = None) -> Any:
        return self.inner.sample_state(key, params)

    def num_actions(self, params: EnvParams | None = None) -> int:
        return self.inner.num_actions(params)

    def check_action(self, action: Array, params: EnvParams) -> Array:
        return self.inner.check_action(action, params)

    def is_valid(self, state: Any, params: EnvParams | None = None):
        return self.inner.is_valid(state, params)

    def render_rgb(self, state: Any, params: EnvParams | None = None, **kwargs: Any) -> Array:
        return self.inner.render_rgb(state, params, **kwargs)

    def render_text(self, state: Any, params: EnvParams | None = None, **kwargs: Any) -> str:
        return self.inner.render_text(state, params, **kwargs)

    def __repr__(self) -> str:
        return f"Egocentric({self.inner!r})"
