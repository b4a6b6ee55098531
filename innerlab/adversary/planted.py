"""A planted disagreement: two reward members that agree everywhere except one small region.

Used to check that a search works (it must find the region) and to count how
many model evaluations each search needs compared with random search. The
region is "the object one step from the agent in direction ``action`` has
colour ``colour``, shape ``shape`` and size ``size``", and the members only
differ on that action. Under Orchard's ``sample_state`` about 1 state in 75
is in the region.

The disagreement is a polynomial in the observation's channels, so it is
also defined (and differentiable) on the relaxed observations that
``gradient_search`` uses.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from innerlab.protocols import GridEnv, require

_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # as innerlab.envs.grid.MOVES, but static


def _shift(x: Float[Array, "H W"], dr: int, dc: int) -> Float[Array, "H W"]:
    """``out[r, c] = x[r + dr, c + dc]`` (zero outside the grid)."""
    height, width = x.shape
    padded = jnp.pad(x, 1)
    return jax.lax.dynamic_slice(padded, (1 + dr, 1 + dc), (height, width))


class PlantedPair(eqx.Module):
    """A 2-member reward "ensemble": ``[base, base + strength * in_region]``.

    ``base`` is a fixed linear function of the observation shared by both
    members, so they agree exactly outside the region.
    """

    weights: Float[Array, "H W C"]
    channels: tuple[int, int, int] = eqx.field(static=True)  # colour, shape, size channels
    action: int = eqx.field(static=True)
    strength: float = eqx.field(static=True)
    num_actions: int = eqx.field(static=True)
    num_members: int = eqx.field(static=True, default=2)

    def region(self, obs: Float[Array, "H W C"]) -> Float[Array, ""]:
        """1 where the planted object is one step from the agent in direction ``action``."""
        c_colour, c_shape, c_size = self.channels
        target = obs[..., c_colour] * obs[..., c_shape] * obs[..., c_size]
        dr, dc = _MOVES[self.action]
        return jnp.sum(obs[..., 1] * _shift(target, dr, dc))

    def __call__(self, obs: Float[Array, "H W C"], action: Int[Array, ""]) -> Float[Array, " 2"]:
        base = jnp.sum(obs * self.weights)
        bump = self.strength * self.region(obs) * (action == self.action)
        return jnp.stack([base, base + bump])


def planted_pair(
    env: Any,
    params: Any,
    key: Array,
    colour: int = 0,
    shape: int = 0,
    size: int = 1,
    action: int = 0,
    strength: float = 1.0,
) -> PlantedPair:
    """A ``PlantedPair`` for a grid env's observation layout (see module docstring)."""
    require(env, GridEnv, consumer="adversary.planted_pair", argument="env")
    n_colours, n_shapes, n_sizes = env.feature_counts(params)
    for name, value, n in (("colour", colour, n_colours), ("shape", shape, n_shapes),
                           ("size", size, n_sizes), ("action", action, env.num_actions(params))):
        if not 0 <= value < n:
            raise ValueError(f"argument {name!r} must be in [0, {n}), got {value}")
    if action >= len(_MOVES):
        raise ValueError(f"argument 'action' must be a move (0..3), got {action}")
    obs_shape = env.observation_space(params).shape
    channels = (2 + colour, 2 + n_colours + shape, 2 + n_colours + n_shapes + size)
    weights = 0.1 * jax.random.normal(key, obs_shape)
    return PlantedPair(weights, channels, action, float(strength), env.num_actions(params))


def in_planted_region(pair: PlantedPair, env: Any, params: Any, states: Any) -> Bool[Array, " B"]:
    """Ground truth: whether each state (batch, leading axis B) is in the planted region."""
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    return jax.vmap(pair.region)(obs) > 0.5
