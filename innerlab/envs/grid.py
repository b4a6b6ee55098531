"""A small gridworld engine in pure JAX: walls, one agent, objects with features.

Every gridworld in innerlab is built from these pieces, so observations,
movement and rendering mean the same thing in every experiment.

Coordinates are ``(row, col)`` with row 0 at the top. Objects have three
categorical features, ``colour``, ``shape`` and ``size``, and an ``alive``
flag (a collected object is dead and no longer observed). Objects never
block movement; walls do.

Observations are float32 one-hot channel grids ``[H, W, C]`` with channels
``wall, agent, colour_0.., shape_0.., size_0..`` (see ``channel_names``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, UInt8

from innerlab.envs.core import Environment

# up, right, down, left
MOVES = jnp.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=jnp.int32)
MOVE_NAMES = ("up", "right", "down", "left")

COLOUR_NAMES = ("red", "green", "blue", "yellow")
SHAPE_NAMES = ("square", "circle", "triangle")
SIZE_NAMES = ("small", "large")

# RGB of each colour, the walls, the floor and the agent.
COLOUR_RGB = np.array(
    [[220, 50, 47], [60, 180, 75], [38, 110, 220], [240, 200, 40]], dtype=np.uint8
)
WALL_RGB = np.array([90, 90, 90], dtype=np.uint8)
FLOOR_RGB = np.array([20, 20, 24], dtype=np.uint8)
AGENT_RGB = np.array([245, 245, 245], dtype=np.uint8)


class GridState(eqx.Module):
    """The layout every gridworld shares.

    Shapes: ``agent [2]``, ``walls [H, W]``, ``obj_pos [N, 2]``,
    ``obj_colour/obj_shape/obj_size/obj_alive [N]``, ``time []``.
    """

    agent: Int[Array, "2"]
    walls: Bool[Array, "H W"]
    obj_pos: Int[Array, "N 2"]
    obj_colour: Int[Array, " N"]
    obj_shape: Int[Array, " N"]
    obj_size: Int[Array, " N"]
    obj_alive: Bool[Array, " N"]
    time: Int[Array, ""]


def border_walls(height: int, width: int) -> Bool[Array, "H W"]:
    """A room: walls on the border, floor inside."""
    walls = np.zeros((height, width), dtype=bool)
    walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
    return jnp.asarray(walls)


def distinct_free_cells(
    key: Array, walls: Bool[Array, "H W"], n: int, exclude: Bool[Array, "H W"] | None = None
) -> Int[Array, "n 2"]:
    """``n`` distinct uniformly random floor cells (not walls, not ``exclude``)."""
    height, width = walls.shape
    free = ~walls if exclude is None else ~walls & ~exclude
    flat = jax.random.choice(
        key, height * width, shape=(n,), replace=False, p=free.reshape(-1) / free.sum()
    )
    return jnp.stack([flat // width, flat % width], axis=-1).astype(jnp.int32)


def move(agent: Int[Array, "2"], action: Int[Array, ""], walls: Bool[Array, "H W"]):
    """The agent's position after a move; bumping into a wall leaves it in place."""
    target = agent + MOVES[jnp.clip(action, 0, 3)]
    blocked = walls[target[0], target[1]]
    return jnp.where(blocked | (action > 3), agent, target)


def objects_at(state: GridState, pos: Int[Array, "2"]) -> Bool[Array, " N"]:
    """Which alive objects sit at ``pos``."""
    return state.obj_alive & jnp.all(state.obj_pos == pos, axis=-1)


def channel_names(n_colours: int, n_shapes: int, n_sizes: int) -> list[str]:
    """Names of the observation channels, in order."""
    return (
        ["wall", "agent"]
        + [f"colour:{COLOUR_NAMES[i]}" for i in range(n_colours)]
        + [f"shape:{SHAPE_NAMES[i]}" for i in range(n_shapes)]
        + [f"size:{SIZE_NAMES[i]}" for i in range(n_sizes)]
    )


def grid_observation(
    state: GridState, n_colours: int, n_shapes: int, n_sizes: int
) -> Float[Array, "H W C"]:
    """One-hot channel grid of walls, agent and alive objects' features."""
    height, width = state.walls.shape
    n_ch = 2 + n_colours + n_shapes + n_sizes
    obs = jnp.zeros((height, width, n_ch), jnp.float32)
    obs = obs.at[:, :, 0].set(state.walls.astype(jnp.float32))
    obs = obs.at[state.agent[0], state.agent[1], 1].set(1.0)
    alive = state.obj_alive.astype(jnp.float32)
    rows, cols = state.obj_pos[:, 0], state.obj_pos[:, 1]
    for offset, feature in (
        (2, state.obj_colour),
        (2 + n_colours, state.obj_shape),
        (2 + n_colours + n_shapes, state.obj_size),
    ):
        obs = obs.at[rows, cols, offset + feature].add(alive)
    return obs


INT_OBS_SLOTS = ("tile", "colour", "shape", "size")


def int_observation(
    state: GridState, n_colours: int, n_shapes: int, n_sizes: int
) -> UInt8[Array, "H W 4"]:
    """The same information as ``grid_observation``, as small integers: ``uint8 [H, W, 4]``.

    Each of the four slots (``INT_OBS_SLOTS``) of a cell holds 1 + the index of
    the one-hot channel that is on in that group, or 0 when none is: ``tile``
    (wall or agent), the alive object's ``colour``, ``shape`` and ``size``.
    ``onehot_from_int`` maps it back to the one-hot grid exactly (alive objects
    sit on distinct cells, so each group has at most one channel on per cell).
    Why: no float one-hot is built in the env, and rollouts stored as ``uint8``
    take a fraction of the memory; networks expand it at their input.
    """
    height, width = state.walls.shape
    tile = state.walls.astype(jnp.uint8).at[state.agent[0], state.agent[1]].set(2)
    codes = jnp.stack(
        [
            3 + state.obj_colour,
            3 + n_colours + state.obj_shape,
            3 + n_colours + n_shapes + state.obj_size,
        ],
        axis=-1,
    )
    codes = jnp.where(state.obj_alive[:, None], codes, 0).astype(jnp.uint8)
    # max, not set: a dead object may share a cell with an alive one (its codes are 0)
    rows, cols = state.obj_pos[:, 0], state.obj_pos[:, 1]
    objects = jnp.zeros((height, width, 3), jnp.uint8).at[rows, cols].max(codes)
    return jnp.concatenate([tile[..., None], objects], axis=-1)


def onehot_from_int(
    obs: Int[Array, "*batch H W S"], num_channels: int
) -> Float[Array, "*batch H W C"]:
    """The one-hot channel grid an integer observation stands for (``float32``).

    Slot value ``v > 0`` turns on channel ``v - 1``; 0 turns on nothing. The
    inverse of ``int_observation`` (and of any env's ``observe_int`` that
    follows the same rule), and what a network does first with integer
    observations: one-hot then a linear layer is an embedding.
    """
    onehot = jax.nn.one_hot(obs.astype(jnp.int32) - 1, num_channels, dtype=jnp.float32)
    return jnp.sum(onehot, axis=-2)


def is_valid(state: GridState, n_colours: int, n_shapes: int, n_sizes: int) -> Bool[Array, ""]:
    """Structural invariants every gridworld state satisfies.

    Agent and objects in bounds and off walls, alive objects on distinct
    cells, features in range, time non-negative.
    """
    height, width = state.walls.shape

    def on_floor(p):
        inside = (p[..., 0] >= 0) & (p[..., 0] < height) & (p[..., 1] >= 0) & (p[..., 1] < width)
        r, c = jnp.clip(p[..., 0], 0, height - 1), jnp.clip(p[..., 1], 0, width - 1)
        return inside & ~state.walls[r, c]

    same = jnp.all(state.obj_pos[:, None] == state.obj_pos[None], axis=-1)
    both_alive = state.obj_alive[:, None] & state.obj_alive[None]
    clash = same & both_alive & ~jnp.eye(len(state.obj_alive), dtype=bool)
    return (
        on_floor(state.agent)
        & jnp.all(on_floor(state.obj_pos) | ~state.obj_alive)
        & ~jnp.any(clash)
        & jnp.all((state.obj_colour >= 0) & (state.obj_colour < n_colours))
        & jnp.all((state.obj_shape >= 0) & (state.obj_shape < n_shapes))
        & jnp.all((state.obj_size >= 0) & (state.obj_size < n_sizes))
        & (state.time >= 0)
    )


# --------------------------------------------------------------------------- rendering


def _sprites(cell: int) -> np.ndarray:
    """Boolean sprite masks ``[shape, size, cell, cell]`` for square, circle, triangle."""
    yy, xx = np.mgrid[0:cell, 0:cell] + 0.5
    c = cell / 2
    masks = np.zeros((3, 2, cell, cell), dtype=bool)
    for size, half in enumerate((cell * 0.22, cell * 0.42)):
        masks[0, size] = (np.abs(yy - c) <= half) & (np.abs(xx - c) <= half)
        masks[1, size] = (yy - c) ** 2 + (xx - c) ** 2 <= half**2
        top, bottom = c - half, c + half
        frac = np.clip((yy - top) / (bottom - top), 0, 1)
        masks[2, size] = (yy >= top) & (yy <= bottom) & (np.abs(xx - c) <= frac * half)
    return masks


def _agent_sprite(cell: int) -> np.ndarray:
    yy, xx = np.mgrid[0:cell, 0:cell] + 0.5
    c = cell / 2
    return np.abs(yy - c) + np.abs(xx - c) <= cell * 0.3


def render_grid_rgb(state: GridState, cell: int = 12) -> UInt8[Array, "H*cell W*cell 3"]:
    """Draw walls, objects (colour, shape, size) and the agent (white diamond); jittable."""
    height, width = state.walls.shape
    sprites = jnp.asarray(_sprites(cell))
    # per-cell base colour
    base = jnp.where(state.walls[..., None], WALL_RGB, FLOOR_RGB).astype(jnp.uint8)
    img = jnp.repeat(jnp.repeat(base, cell, axis=0), cell, axis=1)
    for i in range(state.obj_pos.shape[0]):
        r, c = state.obj_pos[i]
        mask = sprites[state.obj_shape[i] % 3, state.obj_size[i] % 2] & state.obj_alive[i]
        colour = jnp.asarray(COLOUR_RGB)[state.obj_colour[i] % len(COLOUR_RGB)]
        patch = jax.lax.dynamic_slice(img, (r * cell, c * cell, 0), (cell, cell, 3))
        patch = jnp.where(mask[..., None], colour, patch).astype(jnp.uint8)
        img = jax.lax.dynamic_update_slice(img, patch, (r * cell, c * cell, 0))
    agent_mask = jnp.asarray(_agent_sprite(cell))
    ar, ac = state.agent
    patch = jax.lax.dynamic_slice(img, (ar * cell, ac * cell, 0), (cell, cell, 3))
    patch = jnp.where(agent_mask[..., None], AGENT_RGB, patch).astype(jnp.uint8)
    return jax.lax.dynamic_update_slice(img, patch, (ar * cell, ac * cell, 0))


TEXT_LEGEND = (
    "Legend: '#' wall, '.' floor, '@' agent; an object is two letters: colour "
    "(r red, g green, b blue, y yellow; UPPER CASE = large) then shape "
    "(s square, c circle, t triangle)."
)


def render_grid_text(state: GridState, legend: bool = True) -> str:
    """The grid as text, two characters per cell, for language-model agents."""
    walls = np.asarray(state.walls)
    rows = [["##" if w else ". " for w in row] for row in walls]
    pos = np.asarray(state.obj_pos)
    for i in range(pos.shape[0]):
        if not bool(state.obj_alive[i]):
            continue
        letter = "rgby"[int(state.obj_colour[i]) % 4]
        if int(state.obj_size[i]) == 1:
            letter = letter.upper()
        rows[pos[i, 0]][pos[i, 1]] = letter + "sct"[int(state.obj_shape[i]) % 3]
    ar, ac = np.asarray(state.agent)
    rows[ar][ac] = "@ "
    text = "\n".join("".join(r).rstrip() for r in rows)
    return f"{text}\n{TEXT_LEGEND}" if legend else text


# --------------------------------------------------------------------------- base env


class GridEnvironment(Environment):
    """An ``Environment`` whose state is (or contains, as ``.grid``) a ``GridState``.

    Provides ``observe``, ``is_valid`` and both renderers from params fields
    ``n_colours``, ``n_shapes`` and ``n_sizes``.
    """

    @staticmethod
    def grid_of(state) -> GridState:
        return state if isinstance(state, GridState) else state.grid

    def feature_counts(self, params=None) -> tuple[int, int, int]:
        """``(n_colours, n_shapes, n_sizes)`` under ``params``: how many values each object
        feature takes, which fixes the observation's channels (adversaries and property
        tests draw features in these ranges)."""
        params = self.resolve_params(params)
        return params.n_colours, params.n_shapes, params.n_sizes

    def observe(self, state, params=None) -> Float[Array, "H W C"]:
        params = self.resolve_params(params)
        self.check_state(state, params)
        return grid_observation(self.grid_of(state), *self.feature_counts(params))

    def observe_int(self, state, params=None) -> UInt8[Array, "H W S"]:
        """``observe``'s information as ``uint8`` slots (see ``int_observation``).

        An env that adds channels to ``observe`` must add slots here too;
        ``envs.IntegerObs`` refuses an env that overrides one and not the other.
        """
        params = self.resolve_params(params)
        self.check_state(state, params)
        return int_observation(self.grid_of(state), *self.feature_counts(params))

    def channel_names(self, params=None) -> list[str]:
        return channel_names(*self.feature_counts(self.resolve_params(params)))

    def is_valid(self, state, params=None) -> Bool[Array, ""]:
        """Whether ``state`` satisfies the engine's invariants (and ``time <= max_steps``)."""
        params = self.resolve_params(params)
        g = self.grid_of(self.check_state(state, params))
        return is_valid(g, *self.feature_counts(params)) & (g.time <= params.max_steps)

    def render_rgb(self, state, params=None, cell: int = 12) -> UInt8[Array, "h w 3"]:
        return render_grid_rgb(self.grid_of(self.check_state(state, params)), cell)

    def render_text(self, state, params=None, legend: bool = True) -> str:
        return render_grid_text(self.grid_of(self.check_state(state, params)), legend)
