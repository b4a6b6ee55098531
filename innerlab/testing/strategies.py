"""Hypothesis strategies for the states, observations and trajectories of any innerlab env.

Property tests of a reward model need inputs the model has to get right. These
strategies draw them from one of three distributions:

- ``"train"`` / ``"test"``: states the env's train or test split actually
  produces: an episode is reset from a drawn seed and rolled forward by a drawn
  list of actions (never past termination), exactly as an agent would see them;
- ``"any"``: every valid state (``env.sample_state``'s support), including the
  ones training never shows. For gridworlds the fields of the state (agent and
  object cells, each object's colour/shape/size, which objects are still alive,
  the time) are drawn *directly*, so when a test fails hypothesis shrinks the
  state itself: objects move to the top-left, features to index 0, objects die,
  and the minimal failing state is small enough to read in ``env.render_text``.
  Envs whose state is not a grid fall back to ``sample_state`` of a drawn seed.

Every strategy takes ``env`` as a registered name (``"Orchard-v0"``) or an
``Environment`` instance, plus ``params`` (default: the env's defaults; the
distribution's split is applied on top). States come out as the env's own pytree
of JAX arrays, observations as ``[H, W, C]`` float32 arrays, actions as int32
scalars, so drawn values go straight into a reward model or ``env.step``.

``feature_perturbations`` draws a state together with a copy in which one
declared feature (``"colour"``, ``"shape"``, ``"size"``) of one object differs:
the inputs of invariance and monotonicity properties.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

import innerlab.envs as envs
from innerlab.envs.core import Box, Discrete, Environment, EnvParams
from innerlab.envs.grid import MOVE_NAMES, MOVES, GridEnvironment, GridState
from innerlab.envs.rollout import Policy, rollout
from innerlab.protocols import GridEnv, require

DISTRIBUTIONS = ("train", "test", "any")

# Seeds are drawn from a small range: hypothesis shrinks them towards 0 and a
# short seed reads better in a failure report than a 32-bit one.
MAX_SEED = 2**16 - 1


# --------------------------------------------------------------------------- resolving args


def resolve_env(env: str | Environment, params: EnvParams | None = None):
    """``(env, params)`` from a registered name or an instance (default params if ``None``)."""
    if isinstance(env, str):
        env, default = envs.make(env)
        return env, default if params is None else params
    if not isinstance(env, Environment):
        raise TypeError(
            f"argument 'env' must be a registered env name (one of {envs.list_envs()}) or an "
            f"innerlab Environment, got {type(env).__name__}"
        )
    return env, env.default_params if params is None else params


def check_distribution(distribution: str) -> str:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"argument 'distribution' must be one of {DISTRIBUTIONS}, got {distribution!r}"
        )
    return distribution


def split_params(params: EnvParams, distribution: str) -> EnvParams:
    """``params`` with ``split`` set to the distribution's split (``"any"`` keeps it)."""
    check_distribution(distribution)
    if distribution == "any" or params.split == distribution:
        return params
    return envs.replace_params(params, split=distribution)


def is_grid_env(env: Environment, params: EnvParams) -> bool:
    """Whether the state is (or holds as ``.grid``) a ``GridState``, drawable field by field."""
    if not isinstance(env, GridEnvironment):
        return False
    template = jax.eval_shape(lambda k: env.sample_state(k, params), jax.random.key(0))
    return isinstance(template, GridState) or isinstance(getattr(template, "grid", None), GridState)


def _with_grid(state: Any, grid: GridState) -> Any:
    if isinstance(state, GridState):
        return grid
    return eqx.tree_at(lambda s: s.grid, state, grid)


def feature_counts(env: Environment, params: EnvParams) -> dict[str, int]:
    """How many values each object feature (``"colour"``, ``"shape"``, ``"size"``) takes."""
    require(env, GridEnv, consumer="testing.strategies (object features)", argument="env")
    n_colours, n_shapes, n_sizes = env.feature_counts(params)
    return {"colour": n_colours, "shape": n_shapes, "size": n_sizes}


# --------------------------------------------------------------------------- jitted helpers
# Cached per (env, params) so every example after the first reuses one compilation.


@functools.cache
def _sample_state_fn(env: Environment, params: EnvParams):
    return jax.jit(lambda seed: env.sample_state(jax.random.key(seed), params))


@functools.lru_cache(maxsize=4096)
def _host_template(env: Environment, params: EnvParams, seed: int) -> Any:
    """``sample_state`` of ``seed`` on the host (walls and non-grid fields of drawn states)."""
    return jax.device_get(_sample_state_fn(env, params)(seed))


def _replay(actions: jax.Array, t: jax.Array, obs: Any, key: jax.Array):
    """``Policy.act`` replaying ``actions [T, ...]`` open loop: step ``t`` plays ``actions[t]``."""
    return t + 1, actions[t]


def _replay_init(actions: jax.Array, num_envs: int) -> jax.Array:
    return jnp.zeros(num_envs, jnp.int32)


def _replay_policy(actions: Any) -> Policy:
    """A ``Policy`` for one env that plays the drawn ``actions [T, ...]`` in order.

    Its memory is the step count, so the rollout's episode-start reset replays
    from ``actions[0]`` again; the strategies only read the first episode.
    """
    return Policy(jnp.asarray(actions), _replay, _replay_init, name="replay")


@functools.cache
def _rollout_fn(env: Environment, params: EnvParams):
    """``(seed, actions [T], n) -> state``: ``n`` steps from a reset, never into termination.

    One rollout of ``T`` steps (``envs.rollout.rollout``, one env); the state kept
    is the one before step ``min(n, first step that ends the episode)``.
    """

    def run(seed, actions, n):
        traj = rollout(env, params, _replay_policy(actions), jax.random.key(seed), 1, len(actions))
        done = traj.done[:, 0]
        stop = jnp.where(jnp.any(done), jnp.argmax(done), len(actions))
        states = jax.tree.map(
            lambda s, last: jnp.concatenate([s[:, 0], last[-1:, 0]]), traj.state, traj.next_state
        )  # [T + 1]: before each step, then after the last one
        return jax.tree.map(lambda x: x[jnp.minimum(n, stop)], states)

    return jax.jit(run)


@functools.cache
def _trajectory_fn(env: Environment, params: EnvParams):
    """``(seed, start_state, actions [T]) -> Trajectory`` with auto-reset (``envs.rollout``)."""

    def run(seed, start, actions):
        # one step more than drawn, so the state after the last drawn action (a fresh
        # episode where it ended one) is the rollout's last pre-step state
        padded = jnp.concatenate([actions, jnp.zeros_like(actions[:1])])
        first = jax.tree.map(lambda x: x[None], start)
        traj = rollout(env, params, _replay_policy(padded), jax.random.key(seed), 1,
                       len(padded), start=first)
        one = jax.tree.map(lambda x: x[:, 0], traj)
        t = len(actions)
        return Trajectory(
            states=one.state,
            obs=one.obs,
            actions=actions,
            rewards=one.reward[:t],
            dones=one.done[:t],
        )

    return jax.jit(run)


# --------------------------------------------------------------------------- actions


def _action_space(env: Environment, params: EnvParams):
    space = env.action_space(params)
    if not isinstance(space, Discrete | Box):
        raise TypeError(f"{env.name}: unsupported action space {space!r}")
    return space


def _action_strategy(env: Environment, params: EnvParams) -> st.SearchStrategy:
    """One action as a host array: int32 scalar (discrete) or float32 vector (box)."""
    space = _action_space(env, params)
    if isinstance(space, Discrete):
        return st.integers(0, space.n - 1).map(np.int32)
    size = int(np.prod(space.shape))
    element = st.floats(
        float(space.low), float(space.high), allow_nan=False, allow_infinity=False, width=32
    )
    return st.lists(element, min_size=size, max_size=size).map(
        lambda xs: np.asarray(xs, np.float32).reshape(space.shape)
    )


def _action_batch(draw, env: Environment, params: EnvParams, n: int, length: int) -> np.ndarray:
    """``n`` drawn actions padded (with the space's zero action) to ``[length, *action_shape]``."""
    space = _action_space(env, params)
    drawn = draw(st.lists(_action_strategy(env, params), min_size=n, max_size=n))
    out = np.zeros((length, *space.shape), np.int32 if isinstance(space, Discrete) else np.float32)
    if n:
        out[:n] = np.stack(drawn)
    return out


# --------------------------------------------------------------------------- states


def _rollout_length(params: EnvParams, max_rollout: int | None) -> int:
    limit = params.max_steps - 1
    return max(0, min(limit, 16 if max_rollout is None else max_rollout))


@st.composite
def _rollout_states(draw, env, params, max_rollout):
    """A state an agent meets in ``params.split``: reset, then up to ``T`` drawn actions."""
    length = _rollout_length(params, max_rollout)
    seed = draw(st.integers(0, MAX_SEED))
    n = draw(st.integers(0, length))
    padded = _action_batch(draw, env, params, n, max(length, 1))
    return jax.device_get(_rollout_fn(env, params)(seed, padded, n))


@st.composite
def _grid_states(draw, env, params):
    """Any valid grid state, drawn field by field so shrinking simplifies the state itself."""
    template = _host_template(env, params, draw(st.integers(0, MAX_SEED)))
    grid = GridEnvironment.grid_of(template)
    walls = np.asarray(grid.walls)
    free = np.argwhere(~walls)
    n = grid.obj_pos.shape[0]
    if len(free) < n + 1:
        raise ValueError(
            f"{env.name}: cannot place the agent and {n} objects on {len(free)} floor cells"
        )
    cells = draw(
        st.lists(st.integers(0, len(free) - 1), min_size=n + 1, max_size=n + 1, unique=True)
    )
    counts = feature_counts(env, params)
    feats = {
        name: draw(st.lists(st.integers(0, counts[name] - 1), min_size=n, max_size=n))
        for name in ("colour", "shape", "size")
    }
    # "alive" shrinks to False, so a shrunk state keeps only the objects the failure needs;
    # at least one object stays alive (sample_state's states are non-terminal).
    alive = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    if not alive.any():
        alive[0] = True
    time = draw(st.integers(0, params.max_steps - 1))
    pos = free[np.asarray(cells)]
    new = GridState(
        agent=pos[0].astype(np.int32),
        walls=np.asarray(grid.walls),
        obj_pos=pos[1:].astype(np.int32),
        obj_colour=np.asarray(feats["colour"], np.int32),
        obj_shape=np.asarray(feats["shape"], np.int32),
        obj_size=np.asarray(feats["size"], np.int32),
        obj_alive=alive,
        time=np.asarray(time, np.int32),
    )
    return _with_grid(template, new)


def states(
    env: str | Environment,
    params: EnvParams | None = None,
    distribution: str = "any",
    max_rollout: int | None = None,
) -> st.SearchStrategy:
    """Valid states of ``env`` from ``distribution`` (``"train"``, ``"test"`` or ``"any"``).

    ``"train"``/``"test"`` roll an episode of the split forward by up to
    ``max_rollout`` (default ``min(16, max_steps - 1)``) drawn actions;
    ``"any"`` draws every field of a grid state directly (see module docs).
    """
    return _host_states(env, params, distribution, max_rollout).map(to_device)


def to_device(tree: Any) -> Any:
    """A pytree of host (NumPy) arrays as JAX arrays, in one transfer."""
    return jax.device_put(tree)


def _host_states(env, params, distribution, max_rollout=None) -> st.SearchStrategy:
    """``states`` with NumPy leaves (cheap to edit on the host before one transfer)."""
    env, params = resolve_env(env, params)
    params = split_params(params, distribution)
    if distribution != "any":
        return _rollout_states(env, params, max_rollout)
    if is_grid_env(env, params):
        return _grid_states(env, params)
    sample = _sample_state_fn(env, params)
    return st.integers(0, MAX_SEED).map(lambda seed: jax.device_get(sample(seed)))


def actions(env: str | Environment, params: EnvParams | None = None) -> st.SearchStrategy:
    """Valid actions: int32 scalars for discrete envs (shrink towards action 0), float32
    vectors in the box for continuous ones (shrink towards 0)."""
    env, params = resolve_env(env, params)
    return _action_strategy(env, params).map(to_device)


def observations(
    env: str | Environment, params: EnvParams | None = None, distribution: str = "any", **kw
) -> st.SearchStrategy:
    """Observations ``[H, W, C]`` of states drawn by ``states``."""
    env, params = resolve_env(env, params)
    return states(env, params, distribution, **kw).map(lambda s: env.observe(s, params))


def collect_actions(env: Environment, params: EnvParams, state: Any) -> list[int]:
    """Actions that move the agent of a grid state onto an alive object."""
    grid = GridEnvironment.grid_of(state)
    agent, walls = np.asarray(grid.agent), np.asarray(grid.walls)
    pos, alive = np.asarray(grid.obj_pos), np.asarray(grid.obj_alive)
    out = []
    for a in range(min(env.num_actions(params), len(MOVE_NAMES))):
        r, c = agent + np.asarray(MOVES[a])
        if not walls[r, c] and np.any(alive & np.all(pos == (r, c), axis=-1)):
            out.append(a)
    return out


@st.composite
def _collecting(draw, env, params, base):
    """``(state, action)`` where ``action`` steps onto an alive object.

    If no alive object is next to the agent, a drawn alive object is moved
    onto the cell a drawn (unblocked) move leads to.
    """
    state = draw(base)
    good = collect_actions(env, params, state)
    if good:
        return state, np.int32(draw(st.sampled_from(good)))
    grid = GridEnvironment.grid_of(state)
    agent, walls = np.asarray(grid.agent), np.asarray(grid.walls)
    moves = [
        a for a in range(len(MOVE_NAMES)) if not walls[tuple(agent + np.asarray(MOVES[a]))]
    ]
    alive = np.flatnonzero(np.asarray(grid.obj_alive))
    if not moves or alive.size == 0:
        return state, np.int32(draw(st.integers(0, env.num_actions(params) - 1)))
    action = draw(st.sampled_from(moves))
    index = int(draw(st.sampled_from(alive.tolist())))
    pos = np.array(grid.obj_pos)
    pos[index] = agent + np.asarray(MOVES[action])
    grid = eqx.tree_at(lambda g: g.obj_pos, grid, pos)
    return _with_grid(state, grid), np.int32(action)


def state_actions(
    env: str | Environment,
    params: EnvParams | None = None,
    distribution: str = "any",
    collect: bool = False,
    **kw,
) -> st.SearchStrategy:
    """``(state, action)`` pairs; ``collect=True`` makes the action step onto an object (grid envs).

    Rewards in object-collecting gridworlds are zero unless the agent steps onto
    something, so ``collect=True`` puts most of the examples where a reward
    model can be wrong.
    """
    return _host_state_actions(env, params, distribution, collect, **kw).map(to_device)


def _host_state_actions(env, params, distribution, collect, **kw) -> st.SearchStrategy:
    env, params = resolve_env(env, params)
    base = _host_states(env, params, distribution, **kw)
    if collect:
        if not is_grid_env(env, params):
            raise ValueError(f"argument 'collect=True' needs a grid env, got {env.name}")
        return _collecting(env, split_params(params, distribution), base)
    return st.tuples(base, _action_strategy(env, params))


def obs_actions(
    env: str | Environment, params: EnvParams | None = None, distribution: str = "any", **kw
) -> st.SearchStrategy:
    """``(obs, action)`` pairs: what a reward model reads."""
    env, params = resolve_env(env, params)
    return state_actions(env, params, distribution, **kw).map(
        lambda sa: (env.observe(sa[0], params), sa[1])
    )


# --------------------------------------------------------------------------- trajectories


class Trajectory(NamedTuple):
    """``length`` steps of ``env.step`` (auto-reset) from a drawn state.

    Shapes: ``states`` the env's state pytree with leading axis ``T+1``,
    ``obs [T+1, H, W, C]``, ``actions [T]``, ``rewards [T]`` (true rewards),
    ``dones [T]`` (terminated or truncated: the next state is a fresh episode).
    """

    states: Any
    obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    dones: jax.Array


@st.composite
def _trajectories(draw, env, params, start, length):
    state = draw(start)
    acts = _action_batch(draw, env, params, length, length)
    seed = draw(st.integers(0, MAX_SEED))
    return _trajectory_fn(env, params)(seed, state, acts)


def trajectories(
    env: str | Environment,
    params: EnvParams | None = None,
    distribution: str = "train",
    length: int = 8,
    **kw,
) -> st.SearchStrategy:
    """``Trajectory`` of ``length`` drawn actions from a state of ``distribution``."""
    if length < 1:
        raise ValueError(f"argument 'length' must be >= 1, got {length}")
    env, params = resolve_env(env, params)
    run_params = split_params(params, distribution)
    return _trajectories(env, run_params, states(env, params, distribution, **kw), length)


@st.composite
def _pairs(draw, env, params, start, length, same_start):
    first = draw(start)
    second = first if same_start else draw(start)
    return (
        draw(_trajectories(env, params, st.just(first), length)),
        draw(_trajectories(env, params, st.just(second), length)),
    )


def trajectory_pairs(
    env: str | Environment,
    params: EnvParams | None = None,
    distribution: str = "train",
    length: int = 8,
    same_start: bool = True,
    **kw,
) -> st.SearchStrategy:
    """Two ``Trajectory`` s to compare (preference learning); by default from one start state."""
    if length < 1:
        raise ValueError(f"argument 'length' must be >= 1, got {length}")
    env, params = resolve_env(env, params)
    run_params = split_params(params, distribution)
    start = states(env, params, distribution, **kw)
    return _pairs(env, run_params, start, length, same_start)


# --------------------------------------------------------------------------- perturbations

FEATURES = ("colour", "shape", "size")
_FIELDS = {"colour": "obj_colour", "shape": "obj_shape", "size": "obj_size"}


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """A state, an action, and the same state with one feature of one object changed."""

    state: Any
    action: jax.Array
    perturbed: Any
    feature: str
    index: int
    old: int
    new: int


def check_feature(env: Environment, params: EnvParams, feature: str) -> str:
    if feature not in FEATURES:
        raise ValueError(f"argument 'feature' must be one of {FEATURES}, got {feature!r}")
    if not is_grid_env(env, params):
        raise ValueError(f"argument 'feature={feature!r}' needs a grid env, got {env.name}")
    if feature_counts(env, params)[feature] < 2:
        raise ValueError(
            f"argument 'feature={feature!r}': {env.name} has only one {feature} with these params"
        )
    return feature


def set_feature(state: Any, feature: str, index: int, value: int) -> Any:
    """``state`` with object ``index``'s ``feature`` set to ``value``."""
    grid = GridEnvironment.grid_of(state)
    field = _FIELDS[feature]
    values = np.array(getattr(grid, field))
    values[index] = value
    return _with_grid(state, eqx.tree_at(lambda g: getattr(g, field), grid, values))


def target_object(state: Any, action: Any) -> int | None:
    """Index of the alive object the agent's move ``action`` lands on, if any."""
    grid = GridEnvironment.grid_of(state)
    a = int(action)
    if a >= len(MOVE_NAMES):
        return None
    target = np.asarray(grid.agent) + np.asarray(MOVES[a])
    if np.asarray(grid.walls)[tuple(target)]:
        return None
    hit = np.flatnonzero(
        np.asarray(grid.obj_alive) & np.all(np.asarray(grid.obj_pos) == target, axis=-1)
    )
    return int(hit[0]) if hit.size else None


@st.composite
def _perturbations(draw, env, params, base, feature, direction):
    state, action = draw(base)
    grid = GridEnvironment.grid_of(state)
    index = target_object(state, action)
    if index is None:
        alive = np.flatnonzero(np.asarray(grid.obj_alive)).tolist()
        index = int(draw(st.sampled_from(alive)))
    old = int(getattr(grid, _FIELDS[feature])[index])
    count = feature_counts(env, params)[feature]
    if direction == "up":
        choices = list(range(old + 1, count))
    else:
        choices = [v for v in range(count) if v != old]
    if not choices:  # already the largest value: perturb downwards and swap roles
        new = int(draw(st.integers(0, old - 1)))
        low = set_feature(state, feature, index, new)
        return Perturbation(low, action, state, feature, index, new, old)
    new = int(draw(st.sampled_from(choices)))
    perturbed = set_feature(state, feature, index, new)
    return Perturbation(state, action, perturbed, feature, index, old, new)


def feature_perturbations(
    env: str | Environment,
    params: EnvParams | None = None,
    feature: str = "shape",
    distribution: str = "any",
    collect: bool = True,
    increase: bool = False,
    **kw,
) -> st.SearchStrategy:
    """``Perturbation`` s changing ``feature`` of one object (by default the one being collected).

    With ``collect=True`` the action steps onto an object and that object is
    the one perturbed, so the change can matter to the reward. With
    ``increase=True`` the perturbed value is always larger than the original
    (``perturbed`` is the "more" state), as monotonicity properties need.
    Note that the perturbed state may lie outside ``distribution`` (that is
    the point: e.g. a large object of the harmful colour in Orchard's train split).
    """
    env, params = resolve_env(env, params)
    check_feature(env, params, feature)
    base = _host_state_actions(env, params, distribution, collect, **kw)
    return _perturbations(
        env, split_params(params, distribution), base, feature, "up" if increase else "any"
    ).map(lambda p: dataclasses.replace(
        p, state=to_device(p.state), perturbed=to_device(p.perturbed), action=to_device(p.action)
    ))


def describe_action(env: Environment, params: EnvParams, action: Any) -> str:
    """``"1 (right)"`` for grid moves, the number otherwise."""
    a = int(action)
    if isinstance(env, GridEnvironment) and a < len(MOVE_NAMES):
        return f"{a} ({MOVE_NAMES[a]})"
    return str(a)
