r"""Comparing reward functions: EPIC (Gleave et al. 2020), Pearson correlation, mean absolute error.

Two rewards that differ by potential shaping, ``R'(s, a, s') = R(s, a, s') +
gamma * phi(s') - phi(s)``, or by a positive scale and an offset, induce the
same optimal policies; MAE and Pearson on raw rewards would still call them
different. EPIC ("Equivalent-Policy Invariant Comparison") removes both:

1. **Canonicalise** each reward with respect to a state distribution
   ``D_S`` and an action distribution ``D_A`` (``S, S' ~ D_S`` and
   ``A ~ D_A`` independent)::

       C(R)(s, a, s') = R(s, a, s')
                        + gamma * E[R(s', A, S')]
                        -         E[R(s,  A, S')]
                        - gamma * E[R(S,  A, S')]

   Any potential shaping term cancels exactly, so ``C(R') = C(R)``.
2. **Compare** the canonical rewards on a coverage distribution ``D`` of
   transitions ``(s, a, s')`` with the Pearson distance::

       D_EPIC(R_A, R_B) = sqrt((1 - rho(C(R_A), C(R_B))) / 2)

   which lies in ``[0, 1]``: 0 for equivalent rewards, 1 for ``R`` against
   ``-R``. It is a pseudometric (symmetric, triangle inequality).

``epic_distance`` is the sampled version: expectations are means over the
``M`` canonicalisation samples in ``EpicSamples`` and rho is taken over the
``B`` coverage transitions. The same samples serve every reward compared, so
the invariances above hold exactly, not just in expectation (the shaping
terms cancel sample by sample). ``epic_distance_tabular`` is the exact value
for a finite MDP with reward tables ``[S, A, S]``.

Reward functions are callables on batches, ``reward_fn(state [B, ...],
action [B], next_state [B, ...]) -> [B]``, where a "state" is any pytree
with a leading batch axis (env states, observations or table indices).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

RewardFn = Callable[[Any, Array, Any], Array]


# --------------------------------------------------------------------------- simple measures


def _check_same_shape(x, y, names=("x", "y")) -> None:
    if jnp.shape(x) != jnp.shape(y):
        raise ValueError(
            f"arguments '{names[0]}' and '{names[1]}' must have the same shape, got "
            f"{jnp.shape(x)} and {jnp.shape(y)}"
        )
    if jnp.size(x) == 0:
        raise ValueError(f"arguments '{names[0]}'/'{names[1]}' are empty")


def compute_dtype(*arrays: Any) -> jnp.dtype:
    """The float dtype to compute in: the inputs' own, at least float32.

    float64 inputs (with ``jax_enable_x64``) stay float64, so equivalent rewards
    come out at distance ~1e-16 rather than float32's ~1e-4; integer and
    half-precision inputs are computed in float32.
    """
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def _standardized(
    x: Float[Array, " N"], y: Float[Array, " N"], weights: Float[Array, " N"] | None
) -> tuple[Float[Array, " N"], Float[Array, " N"], Float[Array, " N"]]:
    """Normalised weights and the weighted z-scores of ``x`` and ``y`` (flattened), in the
    inputs' precision; a constant input raises at run time."""
    _check_same_shape(x, y)
    arrays = (x, y) if weights is None else (x, y, weights)
    dtype = compute_dtype(*arrays)
    x, y = jnp.ravel(x).astype(dtype), jnp.ravel(y).astype(dtype)
    w = jnp.ones_like(x) if weights is None else jnp.ravel(weights).astype(dtype)
    if w.shape != x.shape:
        raise ValueError(f"argument 'weights' must have {x.shape[0]} entries, got {w.shape}")
    w = w / jnp.sum(w)
    dx, dy = x - jnp.sum(w * x), y - jnp.sum(w * y)
    vx, vy = jnp.sum(w * dx * dx), jnp.sum(w * dy * dy)
    tiny = 1e-12
    vx = eqx.error_if(vx, vx <= tiny, "pearson: argument 'x' is constant (zero variance)")
    vy = eqx.error_if(vy, vy <= tiny, "pearson: argument 'y' is constant (zero variance)")
    return w, dx / jnp.sqrt(vx), dy / jnp.sqrt(vy)


def pearson(
    x: Float[Array, " N"], y: Float[Array, " N"], weights: Float[Array, " N"] | None = None
) -> Float[Array, ""]:
    """(Weighted) Pearson correlation of two equally shaped arrays (flattened).

    Computed in the inputs' precision (float64 stays float64). A constant input
    has no correlation; that raises at run time instead of returning NaN.
    """
    w, zx, zy = _standardized(x, y, weights)
    return jnp.sum(w * zx * zy)


def pearson_distance(rho: Float[Array, "..."]) -> Float[Array, "..."]:
    """``sqrt((1 - rho) / 2)``; rounding that pushes ``1 - rho`` below 0 is read as 0."""
    return jnp.sqrt(jnp.maximum(1.0 - rho, 0.0) / 2.0)


def pearson_distance_of(
    x: Float[Array, " N"], y: Float[Array, " N"], weights: Float[Array, " N"] | None = None
) -> Float[Array, ""]:
    """``pearson_distance(pearson(x, y, weights))``, computed without cancellation.

    With z-scores ``zx``, ``zy`` (unit weighted variance), ``1 - rho =
    sum(w (zx - zy)^2) / 2``, so the distance is ``sqrt(sum(w (zx - zy)^2)) / 2``.
    Near ``rho = 1`` this keeps full relative precision, where ``1 - rho`` would
    lose it: in float64 ``1 - rho`` is only known to ~1e-16, i.e. a distance of
    ~1e-8, while equivalent rewards here come out at ~1e-16.
    """
    w, zx, zy = _standardized(x, y, weights)
    return jnp.sqrt(jnp.sum(w * (zx - zy) ** 2)) / 2.0


def mae(x: Float[Array, "..."], y: Float[Array, "..."]) -> Float[Array, ""]:
    """Mean absolute error, in the inputs' precision (at least float32)."""
    _check_same_shape(x, y)
    dtype = compute_dtype(x, y)
    return jnp.mean(jnp.abs(jnp.asarray(x, dtype) - jnp.asarray(y, dtype)))


# --------------------------------------------------------------------------- sampled EPIC


class EpicSamples(eqx.Module):
    """The samples a sampled EPIC estimate uses (share them across the rewards compared).

    Fields:
        state, action, next_state: coverage transitions ``(s, a, s')``, ``B`` rows
            (``state``/``next_state`` pytrees with leading axis ``B``).
        can_state: ``M`` states from ``D_S`` for the canonicalisation expectations.
        can_action: ``M`` actions from ``D_A``.
    """

    state: Any
    action: Int[Array, " B"]
    next_state: Any
    can_state: Any
    can_action: Int[Array, " M"]

    @property
    def num_coverage(self) -> int:
        return int(self.action.shape[0])

    @property
    def num_canonical(self) -> int:
        return int(self.can_action.shape[0])


def make_samples(
    key: Array,
    state: Any,
    action: Int[Array, " B"],
    next_state: Any,
    num_actions: int,
    num_canonical: int = 64,
    can_state: Any = None,
) -> EpicSamples:
    """``EpicSamples`` whose coverage is the given transitions.

    ``D_S`` is a uniform draw (with replacement) of ``num_canonical`` of the
    given next states unless ``can_state`` is passed, and ``D_A`` is uniform
    over ``num_actions``.
    """
    b = int(jnp.shape(action)[0])
    if b < 2:
        raise ValueError(f"argument 'action': EPIC needs at least 2 transitions, got {b}")
    if num_canonical < 1:
        raise ValueError(f"argument 'num_canonical' must be >= 1, got {num_canonical}")
    k_s, k_a = jax.random.split(key)
    if can_state is None:
        idx = jax.random.randint(k_s, (num_canonical,), 0, b)
        can_state = jax.tree.map(lambda x: x[idx], next_state)
    else:
        num_canonical = int(jax.tree.leaves(can_state)[0].shape[0])
    can_action = jax.random.randint(k_a, (num_canonical,), 0, num_actions, dtype=jnp.int32)
    return EpicSamples(state, jnp.asarray(action, jnp.int32), next_state, can_state, can_action)


def _check_rewards(r: Array, b: int, what: str) -> Array:
    if r.shape != (b,):
        raise ValueError(f"reward function '{what}' must return shape ({b},), got {r.shape}")
    return eqx.error_if(r, ~jnp.all(jnp.isfinite(r)), f"reward function '{what}' returned NaN/inf")


def canonicalize(
    reward_fn: RewardFn, samples: EpicSamples, gamma: float = 0.99, name: str = "reward_fn"
) -> Float[Array, " B"]:
    """Canonical reward ``C(R)(s, a, s')`` at the ``B`` coverage transitions (see module doc).

    The expectations over ``(A, S')`` are means over the ``M`` canonicalisation
    samples; ``reward_fn`` is always called on batches of ``B`` (or ``M``) rows.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"argument 'gamma' must be in [0, 1], got {gamma}")
    b = samples.num_coverage
    r = _check_rewards(reward_fn(samples.state, samples.action, samples.next_state), b, name)

    def expected_from(states):  # E_{A, S'}[R(x, A, S')] for every x in `states`, [B]
        def one(sample):
            action, nxt = sample
            actions = jnp.full((b,), action, jnp.int32)
            nxts = jax.tree.map(lambda v: jnp.broadcast_to(v, (b,) + v.shape), nxt)
            return reward_fn(states, actions, nxts)

        return jnp.mean(jax.lax.map(one, (samples.can_action, samples.can_state)), axis=0)

    m = samples.num_canonical
    rolled = jax.tree.map(lambda v: jnp.roll(v, 1, axis=0), samples.can_state)
    const = jnp.mean(
        _check_rewards(reward_fn(samples.can_state, samples.can_action, rolled), m, name)
    )
    return r + gamma * expected_from(samples.next_state) - expected_from(samples.state) - (
        gamma * const
    )


def epic_distance(
    reward_a: RewardFn,
    reward_b: RewardFn,
    samples: EpicSamples,
    gamma: float = 0.99,
) -> Float[Array, ""]:
    """Sampled EPIC distance in ``[0, 1]`` between two reward functions.

    ``D = sqrt((1 - rho(C(R_A), C(R_B))) / 2)`` with ``C`` the canonicalisation
    of the module docstring, expectations estimated on ``samples.can_*`` and
    rho on the coverage transitions ``samples.state/action/next_state``.

    Args:
        reward_a, reward_b: ``fn(state [B, ...], action [B], next_state [B, ...]) -> [B]``.
        samples: ``EpicSamples`` (reuse the same for every pair you compare).
        gamma: discount of the shaping potential.
    """
    ca = canonicalize(reward_a, samples, gamma, "reward_a")
    cb = canonicalize(reward_b, samples, gamma, "reward_b")
    return pearson_distance_of(ca, cb)


def epic_distance_state_action(
    reward_a: Callable[[Any], Array],
    reward_b: Callable[[Any], Array],
    state: Any,
    action: Int[Array, " B"],
    next_state: Any,
    can_state: Any,
    gamma: float = 0.99,
    action_dist: Float[Array, " A"] | None = None,
) -> Float[Array, ""]:
    """Sampled EPIC for rewards of ``(s, a)`` only, given as all-action tables.

    ``reward_x(states [N, ...]) -> [N, A]`` gives every action's reward, so the
    expectation over ``A ~ D_A`` (``action_dist``, default uniform) is exact and
    one call per state batch suffices (a reward model encodes each state once);
    ``R(s, A, S')`` does not depend on ``S'``, so only ``E_S`` is sampled, over
    ``can_state`` (``M`` states). Same formula and invariances as ``epic_distance``.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"argument 'gamma' must be in [0, 1], got {gamma}")
    b = int(jnp.shape(action)[0])
    if b < 2:
        raise ValueError(f"argument 'action': EPIC needs at least 2 transitions, got {b}")

    def canon(fn, name):
        now, nxt, can = fn(state), fn(next_state), fn(can_state)
        if now.ndim != 2 or now.shape[0] != b:
            raise ValueError(f"reward function '{name}' must return [{b}, A], got {now.shape}")
        n_act = now.shape[1]
        da = jnp.full((n_act,), 1.0 / n_act) if action_dist is None else action_dist
        if da.shape != (n_act,):
            raise ValueError(f"argument 'action_dist' must have shape ({n_act},), got {da.shape}")
        da = da / jnp.sum(da)
        r = jnp.take_along_axis(now, jnp.asarray(action, jnp.int32)[:, None], axis=1)[:, 0]
        r = _check_rewards(r, b, name)
        return r + gamma * (nxt @ da) - now @ da - gamma * jnp.mean(can @ da)

    ca, cb = canon(reward_a, "reward_a"), canon(reward_b, "reward_b")
    return pearson_distance_of(ca, cb)


# --------------------------------------------------------------------------- exact (tabular)


def _check_table(r: Array, name: str) -> None:
    if r.ndim != 3 or r.shape[0] != r.shape[2]:
        raise ValueError(f"argument '{name}' must be a table [S, A, S], got shape {r.shape}")


def canonicalize_tabular(
    reward: Float[Array, "S A S"],
    state_dist: Float[Array, " S"],
    action_dist: Float[Array, " A"],
    gamma: float = 0.99,
) -> Float[Array, "S A S"]:
    """Exact canonical reward table for finite ``D_S`` (``state_dist``) and ``D_A``."""
    _check_table(reward, "reward")
    s, a, _ = reward.shape
    if state_dist.shape != (s,) or action_dist.shape != (a,):
        raise ValueError(
            f"arguments 'state_dist'/'action_dist' must have shapes ({s},)/({a},), got "
            f"{state_dist.shape}/{action_dist.shape}"
        )
    ds = state_dist / jnp.sum(state_dist)
    da = action_dist / jnp.sum(action_dist)
    m = jnp.einsum("xay,a,y->x", reward, da, ds)  # E_{A,S'} R(x, A, S')
    return reward + gamma * m[None, None, :] - m[:, None, None] - gamma * jnp.dot(ds, m)


def epic_distance_tabular(
    reward_a: Float[Array, "S A S"],
    reward_b: Float[Array, "S A S"],
    state_dist: Float[Array, " S"],
    action_dist: Float[Array, " A"],
    coverage: Float[Array, "S A S"],
    gamma: float = 0.99,
) -> Float[Array, ""]:
    """Exact EPIC distance for reward tables; ``coverage`` weights transitions ``(s, a, s')``."""
    _check_table(reward_b, "reward_b")
    _check_same_shape(reward_a, reward_b, ("reward_a", "reward_b"))
    if coverage.shape != reward_a.shape:
        raise ValueError(
            f"argument 'coverage' must have shape {reward_a.shape}, got {coverage.shape}"
        )
    ca = canonicalize_tabular(reward_a, state_dist, action_dist, gamma)
    cb = canonicalize_tabular(reward_b, state_dist, action_dist, gamma)
    return pearson_distance_of(ca, cb, coverage)
