"""Input-space search: find valid environment states where the reward ensemble disagrees most.

Three searches, all returning a ``SearchResult`` (the top-n distinct states
with their most contested action and score, plus a trace of the best score
against the number of model evaluations spent):

- ``random_search``: score states drawn from ``env.sample_state``. The
  baseline every other method is compared with at an equal number of model
  evaluations.
- ``evolutionary_search``: a population of states improved by mutations that
  keep states valid (step or move the agent, move an object, change one
  feature, collect/restore an object), with tournament selection and
  (mu + lambda) survival. Generic over grid envs.
- ``gradient_search``: gradient ascent on a continuous relaxation of the
  observation (soft agent position, soft object presence and soft
  features), then projection to the nearest valid state (each component
  rounded to its most likely value), which is what gets scored and labelled.

Accounting: one *model evaluation* is scoring one observation (all its
actions from one encoding). A gradient step counts as two evaluations per
population member (forward and backward pass). Every search spends at most
``budget`` evaluations and reports how many it used (``num_evals``).

The score of a state is ``state_disagreement`` (the disagreement at its most
contested action); a state's label is then taken at that action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from innerlab.adversary.objectives import action_disagreement, measure_fn
from innerlab.envs import grid
from innerlab.envs.egocentric import Egocentric, egocentric_view
from innerlab.protocols import GridEnv, GroundTruthEnv, RewardEnsemble, require

METHODS = ("random", "evolution", "gradient")


class SearchResult(NamedTuple):
    """What a search found.

    Attributes:
        states: env states, a pytree with leading axis ``n`` (best first).
        obs: ``[n, H, W, C]`` their observations.
        actions: ``[n]`` each state's most contested action (the one to label).
        scores: ``[n]`` disagreement at that action, descending.
        trace_evals: ``[T]`` cumulative model evaluations at each checkpoint of the trace.
        trace_best: ``[T]`` best score found so far at each checkpoint.
        num_evals: model evaluations spent in total (``== trace_evals[-1]``).
        found_states: every state the search scored, in the order it scored them (a pytree
            with leading axis ``M``), so a benchmark can count evaluations to the first
            state with a property directly (``found_evals[first index with it]``).
        found_evals: ``[M]`` the cumulative model evaluations spent when each was scored.
    """

    states: Any
    obs: Float[Array, "n H W C"]
    actions: Int[Array, " n"]
    scores: Float[Array, " n"]
    trace_evals: Int[Array, " T"]
    trace_best: Float[Array, " T"]
    num_evals: int
    found_states: Any = None
    found_evals: Any = None


# --------------------------------------------------------------------------- checks and scoring


def check_positive(name: str, value: Any) -> int:
    """``value`` as an int, or a ValueError naming the argument when it is not >= 1."""
    if not isinstance(value, int | jnp.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"argument {name!r} must be an int >= 1, got {value!r}")
    return int(value)


def _require(consumer: str, model: Any, env: Any, env_protocol: type) -> None:
    """The contracts of a search: an ensemble to score, an env with ground truth (or a grid)."""
    require(model, RewardEnsemble, consumer=consumer, argument="model")
    require(env, env_protocol, consumer=consumer, argument="env")


def score_obs(model: Callable, obs: Array, num_actions: int, measure: str) -> tuple[Array, Array]:
    """Each observation's score and most contested action: ``([B], [B])``."""
    per_action = action_disagreement(model, obs, num_actions, measure)  # [B, A]
    return jnp.max(per_action, axis=-1), jnp.argmax(per_action, axis=-1).astype(jnp.int32)


def obs_fingerprint(obs: Array) -> Float[Array, " B"]:
    """A scalar per observation, equal for equal observations (used to drop duplicates)."""
    flat = obs.reshape(obs.shape[0], -1)
    weights = jax.random.uniform(jax.random.key(12345), (flat.shape[1],), minval=0.5, maxval=1.5)
    return flat @ (weights * (1.0 + jnp.arange(flat.shape[1], dtype=jnp.float32)))


class _TopN(NamedTuple):
    """The best ``n`` distinct candidates seen so far (internal)."""

    states: Any
    obs: Array
    actions: Array
    scores: Array
    prints: Array


def _dedupe_scores(prints: Array, scores: Array) -> Array:
    """Scores with every repeat of an earlier candidate's observation set to -inf."""
    same = prints[:, None] == prints[None, :]
    earlier = jnp.tril(jnp.ones_like(same), k=-1)
    dup = jnp.any(same & earlier, axis=1)
    return jnp.where(dup, -jnp.inf, scores)


def _merge(top: _TopN, states, obs, actions, scores) -> _TopN:
    prints = obs_fingerprint(obs)
    cat = lambda a, b: jnp.concatenate([a, b], axis=0)
    all_states = jax.tree.map(cat, top.states, states)
    all_obs, all_actions = cat(top.obs, obs), cat(top.actions, actions)
    all_scores, all_prints = cat(top.scores, scores), cat(top.prints, prints)
    ranked = _dedupe_scores(all_prints, all_scores)
    _, idx = jax.lax.top_k(ranked, top.scores.shape[0])
    take = lambda x: x[idx]
    return _TopN(
        jax.tree.map(take, all_states), all_obs[idx], all_actions[idx], ranked[idx],
        all_prints[idx],
    )


def _empty_top(env, params, key, n: int) -> _TopN:
    states = jax.vmap(lambda k: env.sample_state(k, params))(jax.random.split(key, n))
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    return _TopN(
        states, obs, jnp.zeros(n, jnp.int32), jnp.full(n, -jnp.inf), jnp.full(n, jnp.nan)
    )


def _result(top: _TopN, trace_evals: np.ndarray, trace_best: Array, found: Any = None,
            found_evals: np.ndarray | None = None) -> SearchResult:
    return SearchResult(
        top.states, top.obs, top.actions, top.scores, jnp.asarray(trace_evals), trace_best,
        int(trace_evals[-1]), found, None if found_evals is None else jnp.asarray(found_evals),
    )


def _flat_steps(tree: Any) -> Any:
    """``[T, B, ...] -> [T*B, ...]`` on every leaf (states scored step by step, in order)."""
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), tree)


def _with_grid(state: Any, g: grid.GridState) -> Any:
    return g if isinstance(state, grid.GridState) else eqx.tree_at(lambda s: s.grid, state, g)


def _sample(env, params, key, n):
    states = jax.vmap(lambda k: env.sample_state(k, params))(jax.random.split(key, n))
    return states, jax.vmap(lambda s: env.observe(s, params))(states)


def _check_common(budget, top_n, measure, **sizes) -> tuple[int, int]:
    budget = check_positive("budget", budget)
    top_n = check_positive("top_n", top_n)
    measure_fn(measure)
    for name, value in sizes.items():
        check_positive(name, value)
    return budget, top_n


# --------------------------------------------------------------------------- random search


def random_search(
    model: Callable,
    env: Any,
    params: Any,
    key: Array,
    *,
    budget: int,
    top_n: int = 16,
    batch_size: int = 64,
    measure: str = "std",
) -> SearchResult:
    """Score ``budget`` states from ``env.sample_state``; keep the ``top_n`` most contested.

    The baseline. Batches have ``min(batch_size, budget)`` states and the
    budget is rounded down to a whole number of batches (at least one).
    """
    _require("adversary.random_search", model, env, GroundTruthEnv)
    budget, top_n = _check_common(budget, top_n, measure, batch_size=batch_size)
    batch = min(batch_size, budget)
    num_batches = budget // batch
    top, (best, found) = _random_search(model, env, params, key, num_batches, batch, top_n,
                                        measure)
    return _result(top, batch * np.arange(1, num_batches + 1), best, _flat_steps(found),
                   np.arange(1, batch * num_batches + 1))


@eqx.filter_jit
def _random_search(model, env, params, key, num_batches, batch, top_n, measure):
    num_actions = env.num_actions(params)
    k_init, k_scan = jax.random.split(key)

    def body(top, k):
        states, obs = _sample(env, params, k, batch)
        scores, actions = score_obs(model, obs, num_actions, measure)
        top = _merge(top, states, obs, actions, scores)
        return top, (top.scores[0], states)

    return jax.lax.scan(body, _empty_top(env, params, k_init, top_n),
                        jax.random.split(k_scan, num_batches))


# --------------------------------------------------------------------------- mutations


def _free_cell(key, g: grid.GridState, extra_exclude: Array | None = None) -> Array:
    """A random floor cell not holding the agent or an alive object: ``[2]``."""
    height, width = g.walls.shape
    occ = jnp.zeros((height, width), bool).at[g.agent[0], g.agent[1]].set(True)
    rows, cols = g.obj_pos[:, 0], g.obj_pos[:, 1]
    occ = occ.at[rows, cols].max(g.obj_alive)
    if extra_exclude is not None:
        occ = occ | extra_exclude
    return grid.distinct_free_cells(key, g.walls, 1, exclude=occ)[0]


def mutate_grid(
    key: Array, g: grid.GridState, feature_counts: tuple[int, int, int]
) -> grid.GridState:
    """One random edit of a grid state (may be invalid; ``mutate_state`` checks).

    Edits: step the agent one cell, teleport the agent, move an object to a free
    cell, redraw one feature (colour, shape or size) of an object, flip whether an
    object is alive (collected).
    """
    n_colours, n_shapes, n_sizes = feature_counts
    k_op, k_i, k_a, k_b = jax.random.split(key, 4)
    n = g.obj_pos.shape[0]
    i = jax.random.randint(k_i, (), 0, n)

    def step_agent(_):
        direction = jax.random.randint(k_a, (), 0, 4)
        return eqx.tree_at(lambda s: s.agent, g, grid.move(g.agent, direction, g.walls))

    def teleport_agent(_):
        return eqx.tree_at(lambda s: s.agent, g, _free_cell(k_a, g))

    def move_object(_):
        return eqx.tree_at(lambda s: s.obj_pos, g, g.obj_pos.at[i].set(_free_cell(k_a, g)))

    def change_feature(_):
        which = jax.random.randint(k_a, (), 0, 3)
        counts = jnp.array([n_colours, n_shapes, n_sizes])
        value = jax.random.randint(k_b, (), 0, counts[which])
        return eqx.tree_at(
            lambda s: (s.obj_colour, s.obj_shape, s.obj_size),
            g,
            (
                jnp.where(which == 0, g.obj_colour.at[i].set(value), g.obj_colour),
                jnp.where(which == 1, g.obj_shape.at[i].set(value), g.obj_shape),
                jnp.where(which == 2, g.obj_size.at[i].set(value), g.obj_size),
            ),
        )

    def flip_alive(_):
        return eqx.tree_at(lambda s: s.obj_alive, g, g.obj_alive.at[i].set(~g.obj_alive[i]))

    op = jax.random.randint(k_op, (), 0, 5)
    edits = [step_agent, teleport_agent, move_object, change_feature, flip_alive]
    return jax.lax.switch(op, edits, None)


def grid_state_ok(env, params, g: grid.GridState) -> Array:
    """``env.is_valid``, and as in reachable states: an object alive, none under the agent."""
    return env.is_valid(g, params) & jnp.any(g.obj_alive) & ~jnp.any(grid.objects_at(g, g.agent))


def mutate_state(env: Any, params: Any, key: Array, state: Any, num_edits: int = 1) -> Any:
    """``state`` after ``num_edits`` random valid edits; an edit that breaks validity is undone.

    Works for any ``GridEnvironment`` whose state is, or holds as ``.grid``, a ``GridState``.
    """
    require(env, GridEnv, consumer="adversary.mutate_state", argument="env")
    counts = env.feature_counts(params)
    g0 = env.grid_of(state)

    def one(g, k):
        new = mutate_grid(k, g, counts)
        ok = grid_state_ok(env, params, new)
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, g), None

    g, _ = jax.lax.scan(one, g0, jax.random.split(key, num_edits))
    return _with_grid(state, g)


# --------------------------------------------------------------------------- evolutionary search


def evolutionary_search(
    model: Callable,
    env: Any,
    params: Any,
    key: Array,
    *,
    budget: int,
    top_n: int = 16,
    population: int = 64,
    num_edits: int = 2,
    measure: str = "std",
) -> SearchResult:
    """Evolve a population of valid states towards maximal disagreement.

    Starts from ``population`` sampled states; each generation picks parents by
    binary tournament, applies up to ``num_edits`` validity-preserving edits,
    scores the children and keeps the best ``population`` distinct states of
    parents and children. Spends ``population`` evaluations per generation.
    """
    _require("adversary.evolutionary_search", model, env, GridEnv)
    budget, top_n = _check_common(budget, top_n, measure, population=population,
                                  num_edits=num_edits)
    pop = min(population, budget)
    generations = budget // pop - 1
    top, best, found = _evolutionary_search(model, env, params, key, generations, pop, top_n,
                                            num_edits, measure)
    return _result(top, pop * np.arange(1, generations + 2), best, found,
                   np.arange(1, pop * (generations + 1) + 1))


@eqx.filter_jit
def _evolutionary_search(model, env, params, key, generations, pop, top_n, num_edits, measure):
    num_actions = env.num_actions(params)
    k_init, k_pop, k_gen = jax.random.split(key, 3)
    states, obs = _sample(env, params, k_pop, pop)
    scores, actions = score_obs(model, obs, num_actions, measure)
    top = _merge(_empty_top(env, params, k_init, top_n), states, obs, actions, scores)
    popu = _TopN(states, obs, actions, _dedupe_scores(obs_fingerprint(obs), scores),
                 obs_fingerprint(obs))

    def body(carry, k):
        popu, top = carry
        k_a, k_b, k_m = jax.random.split(k, 3)
        a = jax.random.randint(k_a, (pop,), 0, pop)
        b = jax.random.randint(k_b, (pop,), 0, pop)
        parent = jnp.where(popu.scores[a] >= popu.scores[b], a, b)
        parents = jax.tree.map(lambda x: x[parent], popu.states)
        children = jax.vmap(lambda kk, s: mutate_state(env, params, kk, s, num_edits))(
            jax.random.split(k_m, pop), parents
        )
        c_obs = jax.vmap(lambda s: env.observe(s, params))(children)
        c_scores, c_actions = score_obs(model, c_obs, num_actions, measure)
        popu = _merge(popu, children, c_obs, c_actions, c_scores)
        top = _merge(top, children, c_obs, c_actions, c_scores)
        return (popu, top), (top.scores[0], children)

    (_, top), (best, kids) = jax.lax.scan(body, (popu, top), jax.random.split(k_gen, generations))
    found = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), states, _flat_steps(kids))
    return top, jnp.concatenate([jnp.max(scores)[None], best]), found


# --------------------------------------------------------------------------- gradient search


def smooth_measure(measure: str) -> Callable[[Array], Array]:
    """``measure_fn(measure)`` with a finite gradient where all members agree.

    ``sqrt`` has an infinite derivative at 0, so the std of an agreeing
    ensemble would give NaN gradients; ``sqrt(var + 1e-12)`` does not.
    """
    if measure == "std":
        return lambda p: jnp.sqrt(jnp.var(p, axis=-1) + 1e-12)
    return measure_fn(measure)


class Relaxation(eqx.Module):
    """Logits of a soft grid observation: agent position, object presence, and features.

    Shapes: ``agent [H, W]``, ``presence [H, W]``, ``colour [H, W, n_colours]``,
    ``shape [H, W, n_shapes]``, ``size [H, W, n_sizes]``.
    """

    agent: Array
    presence: Array
    colour: Array
    shape: Array
    size: Array


def relax(
    g: grid.GridState, feature_counts: tuple[int, int, int], scale: float = 3.0
) -> Relaxation:
    """Logits whose soft observation is close to ``g``'s observation (``scale`` sets how close)."""
    n_colours, n_shapes, n_sizes = feature_counts
    height, width = g.walls.shape
    sign = lambda x: scale * (2.0 * x.astype(jnp.float32) - 1.0)
    agent = jnp.zeros((height, width), bool).at[g.agent[0], g.agent[1]].set(True)
    rows, cols = g.obj_pos[:, 0], g.obj_pos[:, 1]
    alive = g.obj_alive.astype(jnp.float32)
    presence = jnp.zeros((height, width)).at[rows, cols].max(alive)

    def feature(values, n):
        onehot = jax.nn.one_hot(values, n) * alive[:, None]
        return scale * jnp.zeros((height, width, n)).at[rows, cols].add(onehot)

    return Relaxation(
        sign(agent), sign(presence), feature(g.obj_colour, n_colours),
        feature(g.obj_shape, n_shapes), feature(g.obj_size, n_sizes),
    )


def soft_observation(r: Relaxation, walls: Array) -> Float[Array, "H W C"]:
    """The relaxed observation: same channels as ``grid_observation``, values in [0, 1]."""
    floor = ~walls
    agent_logits = jnp.where(floor, r.agent, -1e9)
    agent = jax.nn.softmax(agent_logits.reshape(-1)).reshape(walls.shape)
    presence = jax.nn.sigmoid(r.presence) * floor
    feats = [presence[..., None] * jax.nn.softmax(x, axis=-1) for x in (r.colour, r.shape, r.size)]
    return jnp.concatenate(
        [walls[..., None].astype(jnp.float32), agent[..., None], *feats], axis=-1
    )


def project(r: Relaxation, g: grid.GridState) -> grid.GridState:
    """The nearest valid state to a relaxation: round each component to its most likely value.

    Agent: most likely floor cell. Objects: the ``N`` floor cells (not the
    agent's) with highest presence, alive where presence > 1/2 (at least one),
    features by argmax. Walls and time come from ``g``.
    """
    height, width = g.walls.shape
    n = g.obj_pos.shape[0]
    floor = ~g.walls
    flat_agent = jnp.argmax(jnp.where(floor, r.agent, -jnp.inf).reshape(-1))
    agent = jnp.stack([flat_agent // width, flat_agent % width]).astype(jnp.int32)
    not_agent = jnp.ones((height, width), bool).at[agent[0], agent[1]].set(False)
    pres = jnp.where(floor & not_agent, r.presence, -jnp.inf).reshape(-1)
    top_val, flat = jax.lax.top_k(pres, n)
    pos = jnp.stack([flat // width, flat % width], axis=-1).astype(jnp.int32)
    alive = top_val > 0.0
    alive = alive.at[0].set(True)
    pick = lambda x: jnp.argmax(x[pos[:, 0], pos[:, 1]], axis=-1).astype(g.obj_colour.dtype)
    return grid.GridState(
        agent=agent, walls=g.walls, obj_pos=pos, obj_colour=pick(r.colour),
        obj_shape=pick(r.shape), obj_size=pick(r.size), obj_alive=alive, time=g.time,
    )


def soft_view(env: Any, r: Relaxation, walls: Array) -> Float[Array, "..."]:
    """The relaxed observation as ``env`` observes it: ``soft_observation`` for a plain grid
    env; for ``envs.Egocentric`` the agent-centred view, averaged over the soft agent position.

    Egocentric: the view centred on cell ``c`` of the object channels, weighted by the
    agent's probability of standing at ``c``, plus the agent itself, always in the centre
    cell. At a one-hot agent position this is exactly ``env.observe`` of the hard state,
    and it is differentiable in every logit.
    """
    soft = soft_observation(r, walls)
    if not isinstance(env, Egocentric):
        return soft
    h, w = walls.shape
    agent = soft[..., 1].reshape(-1)  # [H*W] where the agent stands
    objects = soft.at[..., 1].set(0.0)
    rows, cols = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    cells = jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1)
    views = jax.vmap(lambda c: egocentric_view(objects, c))(cells)  # [H*W, 2H-1, 2W-1, C]
    return jnp.tensordot(agent, views, axes=1).at[h - 1, w - 1, 1].set(1.0)


def _check_relaxable(env: Any, params: Any) -> None:
    """A ValueError unless ``env.observe`` is an observation that ``soft_view`` relaxes
    (the plain grid observation or its egocentric view, same shape): not, e.g., extra planes."""
    state = jax.eval_shape(lambda k: env.sample_state(k, params), jax.random.key(0))
    obs = jax.eval_shape(lambda s: env.observe(s, params), state)
    g = jax.eval_shape(env.grid_of, state)
    r = jax.eval_shape(lambda x: relax(x, env.feature_counts(params)), g)
    want = jax.eval_shape(lambda rr, walls: soft_view(env, rr, walls), r, g.walls).shape
    if tuple(obs.shape) != tuple(want):
        raise ValueError(
            f"adversary.gradient_search relaxes the grid observation (walls, agent and feature "
            f"channels, or their egocentric view: shape {tuple(want)}); argument 'env' "
            f"({type(env).__name__}) observes shape {tuple(obs.shape)}, so use "
            "evolutionary_search or random_search on it"
        )


def gradient_search(
    model: Callable,
    env: Any,
    params: Any,
    key: Array,
    *,
    budget: int,
    top_n: int = 16,
    population: int = 1,
    learning_rate: float = 1.0,
    init_scale: float = 1.0,
    restart_every: int = 8,
    measure: str = "std",
) -> SearchResult:
    """Gradient ascent on the relaxed observation, projecting to valid states as it goes.

    ``population`` starts from sampled states; every step takes one Adam step on
    the disagreement of the soft observation (2 evaluations each) then projects
    and scores the projected state (1 evaluation each), so a step costs
    ``3 * population`` evaluations. Only projected (valid) states are returned.
    ``restart_every`` > 0 replaces the population by freshly sampled states (relaxed,
    not scored: no evaluations) every that many steps: small populations restarted
    often reach a rare region in fewer evaluations than one large population, and
    still visit many distinct starting points. The defaults (one point, a fresh one every
    8 steps) find a planted 1%-of-states region in 7 evaluations where random search
    needs about 100 (``benchmarks/adversary.py``).
    """
    _require("adversary.gradient_search", model, env, GridEnv)
    _check_relaxable(env, params)
    budget, top_n = _check_common(budget, top_n, measure, population=population)
    if not learning_rate > 0:
        raise ValueError(f"argument 'learning_rate' must be > 0, got {learning_rate!r}")
    if isinstance(restart_every, bool) or not isinstance(restart_every, int) or restart_every < 0:
        raise ValueError(f"argument 'restart_every' must be an int >= 0, got {restart_every!r}")
    pop = min(population, budget)
    steps = (budget - pop) // (3 * pop)
    top, best, found = _gradient_search(model, env, params, key, steps, pop, top_n,
                                        float(learning_rate), float(init_scale),
                                        int(restart_every), measure)
    # the start is scored first (1 each), then per step 2 per point for the gradient and
    # 1 per projected point, scored in order
    step_evals = pop + 3 * pop * np.arange(steps)[:, None] + 2 * pop + np.arange(1, pop + 1)
    found_evals = np.concatenate([np.arange(1, pop + 1), step_evals.reshape(-1)])
    return _result(top, pop + 3 * pop * np.arange(0, steps + 1), best, found, found_evals)


@eqx.filter_jit
def _gradient_search(model, env, params, key, steps, pop, top_n, lr, init_scale, restart,
                     measure):
    num_actions = env.num_actions(params)
    counts = env.feature_counts(params)
    differentiable = smooth_measure(measure)
    k_init, k_pop, k_restart = jax.random.split(key, 3)
    states, obs = _sample(env, params, k_pop, pop)
    grids = jax.vmap(env.grid_of)(states)
    scores, actions = score_obs(model, obs, num_actions, measure)
    top = _merge(_empty_top(env, params, k_init, top_n), states, obs, actions, scores)
    relaxed = jax.vmap(lambda g: relax(g, counts, init_scale))(grids)
    opt = optax.adam(lr)
    opt_state = jax.vmap(opt.init)(relaxed)

    def objective(r, g):
        soft = soft_view(env, r, g.walls)
        preds = jax.vmap(lambda a: model(soft, a))(jnp.arange(num_actions))  # [A, K]
        return jnp.max(differentiable(preds))

    def fresh(k):
        new_states, _ = _sample(env, params, k, pop)
        new_grids = jax.vmap(env.grid_of)(new_states)
        new_relaxed = jax.vmap(lambda g: relax(g, counts, init_scale))(new_grids)
        return new_states, new_grids, new_relaxed, jax.vmap(opt.init)(new_relaxed)

    def body(carry, t):
        states, grids, relaxed, opt_state, top = carry
        if restart:  # a static choice: without restarts the program is the plain ascent
            again = (t > 0) & (t % restart == 0)
            new = fresh(jax.random.fold_in(k_restart, t))
            states, grids, relaxed, opt_state = jax.tree.map(
                lambda a, b: jnp.where(again, a, b), new, (states, grids, relaxed, opt_state))
        grads = jax.vmap(jax.grad(objective))(relaxed, grids)
        grads = jax.tree.map(jnp.negative, grads)  # ascent
        updates, opt_state = jax.vmap(opt.update)(grads, opt_state)
        relaxed = optax.apply_updates(relaxed, updates)
        proj = jax.vmap(lambda r, g, s: _with_grid(s, project(r, g)))(relaxed, grids, states)
        p_obs = jax.vmap(lambda s: env.observe(s, params))(proj)
        p_scores, p_actions = score_obs(model, p_obs, num_actions, measure)
        top = _merge(top, proj, p_obs, p_actions, p_scores)
        return (states, grids, relaxed, opt_state, top), (top.scores[0], proj)

    carry = (states, grids, relaxed, opt_state, top)
    (*_, top), (best, projected) = jax.lax.scan(body, carry, jnp.arange(steps))
    found = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), states, _flat_steps(projected))
    return top, jnp.concatenate([jnp.max(scores)[None], best]), found


# --------------------------------------------------------------------------- by name


def search(
    method: str, model: Callable, env: Any, params: Any, key: Array, **kwargs: Any
) -> SearchResult:
    """Run the search named ``method`` (one of ``METHODS``) with its keyword arguments."""
    fns = {"random": random_search, "evolution": evolutionary_search, "gradient": gradient_search}
    if method not in fns:
        raise ValueError(f"argument 'method' must be one of {METHODS}, got {method!r}")
    return fns[method](model, env, params, key, **kwargs)
