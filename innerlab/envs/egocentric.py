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
from innerlab.envs.wrappers import ObservationWrapper


def egocentric_view(obs: Float[Array, "H W C"], agent: Array) -> Float[Array, "2H-1 2W-1 C"]:
    """``obs`` shifted so that ``agent`` (row, col) lands on the centre cell ``(H-1, W-1)``."""
    h, w, c = obs.shape
    padded = jnp.pad(obs, ((h - 1, h - 1), (w - 1, w - 1), (0, 0)))
    return jax.lax.dynamic_slice(padded, (agent[0], agent[1], 0), (2 * h - 1, 2 * w - 1, c))


class Egocentric(ObservationWrapper):
    """Wrap a ``GridEnvironment`` so that its observations are agent-centred."""

    def __init__(self, env: Environment):
        if not isinstance(env, GridEnvironment):
            raise TypeError(
                f"Egocentric wraps gridworlds (GridEnvironment), got {type(env).__name__}"
            )
        super().__init__(env, f"Egocentric({env.name})")

    def observe(self, state: Any, params: EnvParams | None = None) -> Array:
        params = self.resolve_params(params)
        return egocentric_view(self.inner.observe(state, params), self.inner.grid_of(state).agent)

    def observe_int(self, state: Any, params: EnvParams | None = None) -> Array:
        """The agent-centred view of ``inner.observe_int`` (cells outside the room are 0)."""
        params = self.resolve_params(params)
        return egocentric_view(
            self.inner.observe_int(state, params), self.inner.grid_of(state).agent
        )
