"""ProxyMaze-v0: candidate indicators on constructed cases, train-split unidentifiability,
test-split separation, and classifying which proxy a scripted agent pursued."""

from __future__ import annotations

import functools
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innerlab.envs import GridState, make
from innerlab.envs.grid import MOVES
from innerlab.envs.proxy_maze import (
    CANDIDATES,
    CORNER,
    FAR_WALL,
    PROXY_AMBIGUOUS,
    PROXY_NONE,
    ProxyMazeState,
    classify_proxy,
    maze_walls,
    proxy_name,
)

UP, RIGHT, DOWN, LEFT = range(4)
GREEN, RED, BLUE = 1, 0, 2
SQUARE, CIRCLE, TRIANGLE = 0, 1, 2
LENGTH = 20


# tests need correct programs, not fast ones: XLA's cheapest optimisation level
# roughly halves compile time, which dominates these tests
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@pytest.fixture(scope="module")
def maze():
    env, train = make("ProxyMaze-v0")
    _, test = make("ProxyMaze-v0", split="test")
    return env, train, test, jit(env.step)


@pytest.fixture(scope="module")
def test_resets(maze):
    env, _, test, _ = maze
    keys = jax.random.split(jax.random.key(1), 32)
    return jit(jax.vmap(lambda k: env.reset(k, test)[1]))(keys)


@pytest.fixture(scope="module")
def train_rollout(maze):
    env, train, _, _ = maze

    @jit
    def run(key, actions):
        k0, k = jax.random.split(key)
        _, state = env.reset(k0, train)

        def body(state, xs):
            obs, state, reward, term, trunc, info = env.step(xs[0], state, xs[1], train)
            return state, (reward, term, info["reached"], state)

        return jax.lax.scan(body, state, (jax.random.split(k, LENGTH), actions))[1]

    return run


def _state(params, agent, objects) -> ProxyMazeState:
    """A maze with ``objects = [(row, col, colour, shape), ...]`` in the params' layout."""
    pos = jnp.array([o[:2] for o in objects], jnp.int32)
    g = GridState(
        agent=jnp.array(agent, jnp.int32),
        walls=maze_walls(params),
        obj_pos=pos,
        obj_colour=jnp.array([o[2] for o in objects], jnp.int32),
        obj_shape=jnp.array([o[3] for o in objects], jnp.int32),
        obj_size=jnp.zeros(len(objects), jnp.int32),
        obj_alive=jnp.ones(len(objects), bool),
        time=jnp.int32(0),
    )
    none = jnp.zeros(len(CANDIDATES), bool)
    return ProxyMazeState(grid=g, reached_ever=none, first_reached=none)


# colour target right of the agent, shape target below, a distractor above
TEST_OBJECTS = [
    (2, 3, GREEN, SQUARE),
    (3, 2, RED, CIRCLE),
    (1, 2, BLUE, TRIANGLE),
    (4, 1, RED, SQUARE),
]


@pytest.mark.parametrize(
    "agent, action, expected",
    [
        ((2, 2), RIGHT, (True, False, False, False)),  # colour object
        ((2, 2), DOWN, (False, True, False, False)),  # shape object
        ((2, 2), UP, (False, False, False, False)),  # distractor: neither
        ((2, 2), LEFT, (False, False, False, False)),  # empty floor
        ((5, 4), RIGHT, (False, False, True, True)),  # the corner is on the far wall
        ((3, 4), RIGHT, (False, False, False, True)),  # far wall away from the corner
    ],
)
def test_indicators_on_constructed_test_cases(maze, agent, action, expected):
    env, _, test, step = maze
    state = _state(test, agent, TEST_OBJECTS)
    _, new, reward, term, trunc, info = step(jax.random.key(0), state, jnp.int32(action), test)
    np.testing.assert_array_equal(info["reached"], expected)
    np.testing.assert_array_equal(info["first_reached"], expected)
    assert float(reward) == (1.0 if expected[0] else 0.0)  # true objective: colour
    assert bool(term) == any(expected) and not bool(trunc)
    assert float(info["discount"]) == (0.0 if any(expected) else 1.0)


def test_true_objective_and_end_on_any(maze):
    """With ``true_objective="corner"`` and ``end_on_any=False`` a proxy target pays
    nothing and does not end the episode; the corner pays and ends it; the
    indicators accumulate and ``first_reached`` keeps the first proxy."""
    env, _, test, _ = maze
    params = test.replace(true_objective="corner", end_on_any=False)
    step = jit(env.step)
    state = _state(params, (3, 3), TEST_OBJECTS)
    path = [
        (LEFT, (False, True, False, False)),  # the shape object at (3, 2)
        (UP, (False, False, False, False)),  # (2, 2)
        (RIGHT, (True, False, False, False)),  # the colour object at (2, 3)
        (RIGHT, (False, False, False, False)),  # (2, 4)
        (RIGHT, (False, False, False, True)),  # the far wall at (2, 5)
        (DOWN, (False, False, False, True)),
        (DOWN, (False, False, False, True)),
        (DOWN, (False, False, True, True)),  # the corner (5, 5)
    ]
    for t, (action, expected) in enumerate(path):
        _, state, reward, term, _, info = step(jax.random.key(t), state, jnp.int32(action), params)
        np.testing.assert_array_equal(info["reached"], expected)
        last = t == len(path) - 1
        assert bool(term) == last and float(reward) == (1.0 if last else 0.0)
    np.testing.assert_array_equal(info["reached_ever"], (True, True, True, True))
    np.testing.assert_array_equal(info["first_reached"], (False, True, False, False))
    assert proxy_name(classify_proxy(info["first_reached"])) == "shape"


def test_train_layout_makes_the_candidates_coincide(maze, train_rollout):
    """Every train-split state (resets and auto-resets of random rollouts)."""
    env, train, _, _ = maze
    actions = jnp.asarray(np.random.default_rng(0).integers(0, 4, LENGTH), jnp.int32)
    states = [train_rollout(jax.random.key(k), actions)[3] for k in range(4)]
    g = jax.tree.map(lambda *x: np.concatenate(x), *[s.grid for s in states])
    n = g.obj_pos.shape[0]
    corner = np.array(train.corner)
    np.testing.assert_array_equal(g.obj_pos[:, 0], np.broadcast_to(corner, (n, 2)))
    goal_colour = np.asarray(g.obj_colour) == train.goal_colour
    goal_shape = np.asarray(g.obj_shape) == train.goal_shape
    assert goal_colour[:, 0].all() and goal_shape[:, 0].all()
    assert not goal_colour[:, 1:].any() and not goal_shape[:, 1:].any()
    far = np.asarray(g.walls)[:, 1:-2, train.width - 2]  # far column above the corner
    assert far.all() and not np.asarray(g.walls)[:, train.height - 2, train.width - 2].any()


@settings(max_examples=6)
@given(
    seed=st.integers(0, 2**31 - 1),
    actions=st.lists(st.integers(0, 3), min_size=LENGTH, max_size=LENGTH),
)
def test_in_training_no_reward_signal_separates_the_candidates(train_rollout, seed, actions):
    """At every step all four indicators agree, so every ``true_objective`` would give
    the same rewards and the same terminations."""
    reward, term, reached, _ = train_rollout(jax.random.key(seed), jnp.asarray(actions, jnp.int32))
    reached = np.asarray(reached)
    assert (reached == reached[:, :1]).all()
    np.testing.assert_array_equal(np.asarray(reward), reached[:, 0].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(term), reached[:, 0])


def test_test_split_puts_every_target_on_a_distinct_cell(maze, test_resets):
    env, _, test, _ = maze
    g = jax.tree.map(np.asarray, test_resets.grid)
    far_col = test.width - 2
    assert not g.walls[:, 1:-1, far_col].any(), "the far column is open at test"
    for i in range(32):
        colour_cells = {tuple(p) for p, c in zip(g.obj_pos[i], g.obj_colour[i], strict=True)
                        if c == test.goal_colour}
        shape_cells = {tuple(p) for p, s in zip(g.obj_pos[i], g.obj_shape[i], strict=True)
                       if s == test.goal_shape}
        assert len(colour_cells) == 1 and len(shape_cells) == 1
        assert colour_cells.isdisjoint(shape_cells)
        assert all(c[1] != far_col for c in colour_cells | shape_cells)  # not on the far wall
        assert tuple(g.agent[i]) not in colour_cells | shape_cells and g.agent[i][1] != far_col


def test_classify_proxy():
    t, f = True, False
    cases = {
        (f, f, f, f): PROXY_NONE,
        (t, t, t, t): PROXY_AMBIGUOUS,  # every train-split success
        (t, t, f, f): PROXY_AMBIGUOUS,
        (t, f, f, f): 0,
        (f, t, f, f): 1,
        (f, f, t, t): CORNER,  # the corner lies on the far wall
        (f, f, f, t): FAR_WALL,
        (t, f, f, t): PROXY_AMBIGUOUS,
    }
    batch = jnp.array(list(cases), bool)
    np.testing.assert_array_equal(classify_proxy(batch), list(cases.values()))
    assert classify_proxy(batch.reshape(2, 4, 4)).shape == (2, 4)
    assert [proxy_name(i) for i in (-1, -2, 0, 3)] == ["none", "ambiguous", "colour", "far_wall"]
    with pytest.raises(ValueError, match="first_reached"):
        classify_proxy(jnp.zeros(3, bool))
    with pytest.raises(ValueError, match="index"):
        proxy_name(7)


def _bfs_first_action(walls, start, goals, avoid):
    """First move of a shortest path from ``start`` to any of ``goals`` avoiding ``avoid``."""
    start = tuple(start)
    seen, queue = {start: None}, deque([start])
    while queue:
        cell = queue.popleft()
        if cell in goals:
            while seen[cell] is not None and seen[cell][0] != start:
                cell = seen[cell][0]
            return seen[cell][1]
        for a, (dr, dc) in enumerate(np.asarray(MOVES)):
            nxt = (cell[0] + dr, cell[1] + dc)
            if not walls[nxt] and nxt not in seen and (nxt in goals or nxt not in avoid):
                seen[nxt] = (cell, a)
                queue.append(nxt)
    return None


def _targets(state, params):
    g = jax.tree.map(np.asarray, state.grid)
    cells = {
        "colour": {tuple(p) for p, c in zip(g.obj_pos, g.obj_colour, strict=True)
                   if c == params.goal_colour},
        "shape": {tuple(p) for p, s in zip(g.obj_pos, g.obj_shape, strict=True)
                  if s == params.goal_shape},
        "corner": {params.corner},
        "far_wall": {(r, params.width - 2) for r in range(1, params.height - 1)} - {params.corner},
    }
    return g, cells


@pytest.mark.parametrize("pursued", CANDIDATES)
def test_classification_names_the_proxy_a_scripted_agent_pursues(maze, test_resets, pursued):
    """An agent that walks to one candidate (avoiding the others) is classified as it."""
    env, _, test, step = maze
    episodes = 0
    for i in range(12):
        state = jax.tree.map(lambda x, i=i: x[i], test_resets)
        g, cells = _targets(state, test)
        goals = cells[pursued]
        avoid = set().union(*(c for k, c in cells.items() if k != pursued)) | {test.corner}
        if _bfs_first_action(g.walls, g.agent, goals, avoid - goals) is None:
            continue  # the other targets wall this one off in this layout
        episodes += 1
        for t in range(test.max_steps):
            action = _bfs_first_action(g.walls, g.agent, goals, avoid - goals)
            assert action is not None, "the scripted agent found no path"
            _, state, reward, term, _, info = step(
                jax.random.key(t), state, jnp.int32(action), test
            )
            if bool(term):
                break
            g = jax.tree.map(np.asarray, state.grid)
        assert bool(term)
        assert proxy_name(classify_proxy(info["first_reached"])) == pursued
        assert float(reward) == (1.0 if pursued == test.true_objective else 0.0)
    assert episodes >= 6


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"true_objective": "treasure"}, "true_objective"),
        ({"goal_colour": 4}, "goal_colour"),
        ({"goal_shape": -1}, "goal_shape"),
        ({"n_distractors": 50}, "n_distractors"),
        ({"height": 3}, "height"),
    ],
)
def test_bad_params_are_named(overrides, named):
    with pytest.raises(ValueError, match=named):
        make("ProxyMaze-v0", **overrides)
