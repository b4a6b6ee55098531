"""An exact reward model built from an env's ``true_reward``: the "known good" model.

A property test is only trustworthy if it passes on a model that is right and
fails on one that is wrong. ``OracleRewardModel`` is the model that is right by
construction: it reads the observation back into a state and asks the env for
the true reward, so it has the reward-model interface (``model(obs, action) ->
[K]``) with K identical members. The planted faulty models in
``innerlab.testing.planted`` are built on it.

Decoding works for gridworlds whose state is a ``GridState``: the observation
holds walls, the agent and every alive object's colour, shape and size, which
is all their rewards depend on. Dead objects and the time step are not in the
observation; the decoded state has ``time = 0`` and pads with dead objects,
which a ``true_reward`` that does not depend on the time cannot tell apart.
Other envs can pass ``decode(obs) -> state`` themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from innerlab.envs.core import Environment, EnvParams
from innerlab.envs.grid import GridEnvironment, GridState
from innerlab.protocols import GroundTruthEnv, require


def decode_grid_observation(
    obs: Float[Array, "H W C"], n_objects: int, n_colours: int, n_shapes: int, n_sizes: int
) -> GridState:
    """The ``GridState`` an observation shows (alive objects first, in row-major order).

    Inverse of ``grid_observation`` up to dead objects and time. ``obs`` must
    hold at most ``n_objects`` objects.
    """
    height, width, channels = obs.shape
    expected = 2 + n_colours + n_shapes + n_sizes
    if channels != expected:
        raise ValueError(
            f"argument 'obs' must have {expected} channels (wall, agent, {n_colours} colours, "
            f"{n_shapes} shapes, {n_sizes} sizes), got {channels}"
        )
    walls = obs[:, :, 0] > 0.5
    agent_flat = jnp.argmax(obs[:, :, 1].reshape(-1))
    colour_ch = obs[:, :, 2 : 2 + n_colours]
    shape_ch = obs[:, :, 2 + n_colours : 2 + n_colours + n_shapes]
    size_ch = obs[:, :, 2 + n_colours + n_shapes :]
    present = (jnp.sum(colour_ch, axis=-1) > 0.5).reshape(-1)
    # stable sort puts occupied cells first, in row-major order
    cells = jnp.argsort(~present, stable=True)[:n_objects]
    rows, cols = cells // width, cells % width

    def feature(ch):
        return jnp.argmax(ch.reshape(height * width, -1)[cells], axis=-1).astype(jnp.int32)

    return GridState(
        agent=jnp.stack([agent_flat // width, agent_flat % width]).astype(jnp.int32),
        walls=walls,
        obj_pos=jnp.stack([rows, cols], axis=-1).astype(jnp.int32),
        obj_colour=feature(colour_ch),
        obj_shape=feature(shape_ch),
        obj_size=feature(size_ch),
        obj_alive=present[cells],
        time=jnp.int32(0),
    )


@functools.cache
def grid_decoder(env: Environment, params: EnvParams) -> Callable[[Array], GridState]:
    """``decode(obs) -> GridState`` for a grid env whose state is a ``GridState``."""
    template = jax.eval_shape(lambda k: env.sample_state(k, params), jax.random.key(0))
    if not isinstance(env, GridEnvironment) or not isinstance(template, GridState):
        raise ValueError(
            f"cannot decode observations of {env.name} into states (its state is "
            f"{type(template).__name__}, not a GridState); pass decode=... to OracleRewardModel"
        )
    n_objects = template.obj_pos.shape[0]
    counts = env.feature_counts(params)
    return lambda obs: decode_grid_observation(obs, n_objects, *counts)


class OracleRewardModel(eqx.Module):
    """``model(obs, action) -> [K]``: the env's true reward, repeated for K members.

    Args:
        env: the environment (its ``true_reward`` is the answer).
        params: its params (default: the env's defaults).
        num_members: ensemble size K (identical members; >= 2 lets disagreement
            measures run on it).
        decode: ``obs -> state``; default decodes ``GridState`` observations.
    """

    env: Environment = eqx.field(static=True)
    params: EnvParams = eqx.field(static=True)
    decode: Callable[[Array], Any] = eqx.field(static=True)
    num_members: int = eqx.field(static=True)
    num_actions: int = eqx.field(static=True)
    obs_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        env: Environment,
        params: EnvParams | None = None,
        num_members: int = 2,
        decode: Callable[[Array], Any] | None = None,
    ):
        require(env, GroundTruthEnv, consumer="testing.OracleRewardModel", argument="env")
        if num_members < 1:
            raise ValueError(f"argument 'num_members' must be >= 1, got {num_members}")
        params = env.default_params if params is None else params
        self.env = env
        self.params = params
        self.decode = grid_decoder(env, params) if decode is None else decode
        self.num_members = num_members
        self.num_actions = env.num_actions(params)
        self.obs_shape = tuple(env.observation_space(params).shape)

    def true_reward(self, obs: Float[Array, "H W C"], action: Int[Array, ""]) -> Float[Array, ""]:
        """The env's reward for ``(obs, action)`` as one scalar."""
        return self.env.true_reward(self.decode(obs), jnp.asarray(action), self.params)

    def __call__(self, obs: Float[Array, "H W C"], action: Int[Array, ""]) -> Float[Array, " K"]:
        return jnp.full((self.num_members,), self.true_reward(obs, action), jnp.float32)
