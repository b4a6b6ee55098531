"""The tabular form of an Orchard room: every state of one layout, its dynamics and features.

An Orchard episode's layout (walls, object places and features) is fixed at
reset; what changes is the agent's cell and which objects are still there.
So one layout is a small deterministic MDP with ``S = H * W * 2**N`` states,
state ``s = cell * 2**N + alive_mask`` (``cell = row * W + col``; bit ``i`` of
the mask is object ``i``), built by stepping the env's own ``step_env`` from
every state with every action (no second copy of the rules).

The reward basis (``F`` features of a step ``(s, a)``):
``collected <size> <colour>`` (``2 * n_colours``), ``collected <shape>``
(``n_shapes``), ``bumped`` (moved into a wall) and ``step`` (1 every step).
Orchard's true reward is linear in it (:func:`true_weights`), and so is any
reward that values objects by their features or dislikes wasted moves.

Shapes: ``next [M, S, A]``, ``features [M, S, A, F]``, ``valid``/``terminal
[M, S]`` for ``M`` layouts stacked (``jax.vmap`` of :func:`layout_mdp`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from innerlab.envs import grid
from innerlab.envs.core import Environment
from innerlab.envs.egocentric import Egocentric
from innerlab.envs.orchard import Orchard, OrchardParams

__all__ = [
    "Demos",
    "TabularMDP",
    "demos_from_trajectory",
    "feature_names",
    "layout_mdp",
    "layout_states",
    "split_layouts",
    "state_index",
    "trajectory_layouts",
    "true_weights",
]


class TabularMDP(eqx.Module):
    """Layouts as tabular MDPs (leading axis ``M`` when stacked).

    ``next [S, A]`` successor index; ``features [S, A, F]``; ``valid [S]`` the agent
    stands on floor and not on an uncollected object; ``terminal [S]`` nothing is left
    (absorbing, value 0); ``start []`` the layout's first state; ``horizon`` the
    episode's time limit.
    """

    next: jax.Array
    features: jax.Array
    valid: jax.Array
    terminal: jax.Array
    start: jax.Array
    horizon: int = eqx.field(static=True)


class Demos(eqx.Module):
    """Demonstrations in ``M`` layouts, ``L`` steps each (``[M, L]``): time step ``t``,
    state ``s``, action ``a``, and ``mask`` (the step belongs to the layout's episode)."""

    t: jax.Array
    s: jax.Array
    a: jax.Array
    mask: jax.Array


def _orchard(env: Environment) -> Orchard:
    inner = env.inner if isinstance(env, Egocentric) else env
    if not isinstance(inner, Orchard):
        raise TypeError(f"the tabular MDP is built for Orchard rooms, got {env.name}")
    return inner


def feature_names(params: OrchardParams) -> list[str]:
    """Names of the ``F`` reward features, in order."""
    sizes = [f"{grid.SIZE_NAMES[z]} {grid.COLOUR_NAMES[c]}"
             for z in range(2) for c in range(params.n_colours)]
    shapes = [grid.SHAPE_NAMES[k] for k in range(params.n_shapes)]
    return [f"collected {n}" for n in sizes + shapes] + ["bumped", "step"]


def true_weights(params: OrchardParams) -> jax.Array:
    """``[F]`` weights under which the features give Orchard's own reward."""
    nc = params.n_colours
    colour = jnp.arange(nc)
    large = jnp.where(colour == params.harmful_colour, params.harmful_reward, params.reward_large)
    small = jnp.full(nc, params.reward_small)
    rest = jnp.array([0.0] * params.n_shapes + [0.0, -params.step_cost])
    return jnp.concatenate([small, large, rest]).astype(jnp.float32)


def state_index(g: grid.GridState) -> jax.Array:
    """The tabular index of a grid state (its agent cell and alive mask)."""
    width = g.walls.shape[1]
    bits = jnp.sum(g.obj_alive.astype(jnp.int32) << jnp.arange(g.obj_alive.shape[0]))
    return (g.agent[0] * width + g.agent[1]) * (1 << g.obj_alive.shape[0]) + bits


def _features(g: grid.GridState, nxt: grid.GridState, hit: jax.Array,
              params: OrchardParams) -> jax.Array:
    nc, ns = params.n_colours, params.n_shapes
    kind = jax.nn.one_hot(g.obj_size * nc + g.obj_colour, 2 * nc)
    shape = jax.nn.one_hot(g.obj_shape, ns)
    got = hit.astype(jnp.float32)
    bumped = jnp.all(nxt.agent == g.agent).astype(jnp.float32)
    return jnp.concatenate([got @ kind, got @ shape, jnp.stack([bumped, 1.0])])


def layout_states(start: grid.GridState) -> grid.GridState:
    """Every state of ``start``'s layout, batched ``[S]`` in index order (time 0)."""
    h, w = start.walls.shape
    n = start.obj_alive.shape[0]
    masks = 1 << n
    cells = jnp.arange(h * w * masks)
    cell, mask = cells // masks, cells % masks
    alive = ((mask[:, None] >> jnp.arange(n)) & 1).astype(bool)
    agent = jnp.stack([cell // w, cell % w], -1).astype(jnp.int32)
    return jax.vmap(lambda a, m: eqx.tree_at(lambda s: (s.agent, s.obj_alive, s.time), start,
                                             (a, m, jnp.int32(0))))(agent, alive)


def layout_mdp(env: Environment, params: OrchardParams, start: grid.GridState) -> TabularMDP:
    """The tabular MDP of the layout of ``start`` (one Orchard state, no batch axis)."""
    orchard = _orchard(env)
    states = layout_states(start)

    def step(g, a):
        _, nxt, _, _, _, info = orchard.step_env(jax.random.key(0), g, a, params)
        return state_index(nxt), _features(g, nxt, info["collected"], params)

    actions = jnp.arange(orchard.num_actions(params))
    nxt, feats = jax.vmap(lambda g: jax.vmap(lambda a: step(g, a))(actions))(states)
    agent, alive = states.agent, states.obj_alive
    on_object = jnp.any(alive & jnp.all(start.obj_pos[None] == agent[:, None], -1), -1)
    valid = ~start.walls[agent[:, 0], agent[:, 1]] & ~on_object
    terminal = ~jnp.any(alive, -1)
    return TabularMDP(nxt, feats, valid, terminal, state_index(start), params.max_steps)


def trajectory_layouts(env: Environment, traj) -> grid.GridState:
    """``[E]`` grid states at a rollout's first step (``[T, E]``): each env's layout, the
    ``start`` of :func:`layout_mdp` and :func:`innerlab.irl.observe_layouts`."""
    return _orchard(env).grid_of(jax.tree.map(lambda x: x[0], traj.state))


def demos_from_trajectory(env: Environment, params: OrchardParams,
                          traj) -> tuple[TabularMDP, Demos]:
    """Each env's first episode of a rollout (``[T, E]``) as ``E`` layouts and demos.

    The layout is the env's state at the rollout's first step (a fresh reset), so run
    the rollout from resets (``rollout(..., start=None)``).
    """
    g0 = trajectory_layouts(env, traj)
    mdps = jax.vmap(lambda s: layout_mdp(env, params, s))(g0)
    g = _orchard(env).grid_of(traj.state)
    s = jax.vmap(jax.vmap(state_index))(g)  # [T, E]
    demos = Demos(t=g.time.T, s=s.T, a=traj.action.T.astype(jnp.int32),
                  mask=traj.first_episode.T)
    return mdps, demos


def split_layouts(tree, index: np.ndarray):
    """Rows ``index`` of every leaf (layouts of a stacked ``TabularMDP`` or ``Demos``)."""
    return jax.tree.map(lambda x: x[index] if eqx.is_array(x) else x, tree)
