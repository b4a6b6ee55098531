"""Reward-model data: transitions, rollouts, off-distribution samples, replay buffer, segments.

Two kinds of coverage are kept apart on purpose, so "on the training
distribution" and "off it" are measured on different data:

* ``collect_transitions`` / ``rollout``: what a policy (random, or a planner
  later) actually visits in an env split: the training distribution. Both run
  on the library's one rollout, :func:`innerlab.envs.rollout.rollout`.
* ``sample_state_transitions`` / ``sample_state_batch``: ``env.sample_state``
  (any valid state, including ones training never reaches) with uniform
  actions, labelled by ``env.true_reward``: off-distribution coverage.

Everything is pure and jittable; envs and batch dimensions are ``vmap``-ped
and time is a ``lax.scan`` (the one in ``envs.rollout``). The replay buffer is a
fixed-capacity ring of arrays (functional: ``add`` returns a new buffer); a small array buffer
was preferred to flashbax because it needs nothing beyond JAX and Equinox,
stores exactly our ``Transitions``, and a ring write is one scatter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from innerlab.envs import rollout as one_rollout
from innerlab.envs.rollout import Policy, bind, random_policy  # noqa: F401 (re-exported)

PolicyFn = Callable[[Array, Array], Array]


class Transitions(eqx.Module):
    """A batch of labelled transitions, leading axes shared by every field.

    Shapes (flat batch): ``obs [N, H, W, C]`` float, ``action [N]`` int32,
    ``reward [N]`` float32, ``next_obs [N, H, W, C]``, ``done [N]`` bool.
    ``next_obs`` is the true successor (the terminal observation when
    ``done``), not the auto-reset observation. Rollouts return time-major
    ``[T, E, ...]`` batches; ``flatten`` merges the leading axes.
    """

    obs: Float[Array, "*batch H W C"]
    action: Int[Array, "*batch"]
    reward: Float[Array, "*batch"]
    next_obs: Float[Array, "*batch H W C"]
    done: Bool[Array, "*batch"]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.action.shape)

    def __len__(self) -> int:
        return int(self.action.shape[0]) if self.action.ndim else 0

    def flatten(self) -> Transitions:
        """Merge all leading batch axes into one: ``[T, E, ...] -> [T*E, ...]``."""
        nb = self.action.ndim
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[nb:]), self)

    def take(self, idx: Int[Array, "..."]) -> Transitions:
        """Rows ``idx`` of a flat batch (any index shape)."""
        return jax.tree.map(lambda x: x[idx], self)


def concatenate(batches: list[Transitions]) -> Transitions:
    """Stack flat batches end to end."""
    if not batches:
        raise ValueError("argument 'batches' must hold at least one Transitions, got []")
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *batches)


def check_transitions(
    data: Transitions, obs_shape: tuple[int, ...] | None = None, name: str = "data"
) -> Transitions:
    """Validate a flat batch (outside jit): non-empty, consistent shapes and dtypes, finite labels.

    Raises ``ValueError``/``TypeError`` naming ``name`` and the offending field.
    """
    if not isinstance(data, Transitions):
        raise TypeError(f"argument '{name}' must be a Transitions, got {type(data).__name__}")
    if data.action.ndim != 1:
        raise ValueError(
            f"argument '{name}' must be a flat batch (action shape [N]), got action shape "
            f"{tuple(data.action.shape)}; call .flatten() first"
        )
    n = len(data)
    if n == 0:
        raise ValueError(f"argument '{name}' is an empty dataset (0 transitions)")
    for field in ("obs", "reward", "next_obs", "done"):
        x = getattr(data, field)
        if x.shape[:1] != (n,):
            raise ValueError(
                f"argument '{name}': field '{field}' has leading size {x.shape[:1]}, "
                f"expected ({n},) like 'action'"
            )
    if obs_shape is not None and tuple(data.obs.shape[1:]) != tuple(obs_shape):
        raise ValueError(
            f"argument '{name}': field 'obs' must have shape [N, *{tuple(obs_shape)}], "
            f"got {tuple(data.obs.shape)}"
        )
    if not jnp.issubdtype(data.obs.dtype, jnp.floating):
        raise TypeError(f"argument '{name}': field 'obs' must be float, got dtype {data.obs.dtype}")
    if not jnp.issubdtype(data.action.dtype, jnp.integer):
        raise TypeError(
            f"argument '{name}': field 'action' must be integer, got dtype {data.action.dtype}"
        )
    reward = np.asarray(data.reward)
    bad = ~np.isfinite(reward)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"argument '{name}': field 'reward' has {int(bad.sum())} NaN/inf label(s) "
            f"(first at index {first}: {reward[first]})"
        )
    return data


# --------------------------------------------------------------------------- policies
# ``random_policy`` is ``innerlab.envs.rollout.random_policy`` (re-exported: one random
# policy in the library). Functions ``policy_fn(key, obs) -> action`` are still accepted
# everywhere a policy is, and wrapped into a ``Policy`` by ``as_policy``.


def _fn_act(static: Any, batched: bool, arrays: Any, carry: Any, obs: Array, key: Array):
    """``Policy.act`` of a wrapped ``policy_fn``: one key per env unless it is ``batched``."""
    fn = eqx.combine(arrays, static)
    if batched:
        return carry, jnp.asarray(fn(key, obs))
    keys = jax.random.split(key, jax.tree.leaves(obs)[0].shape[0])
    return carry, jax.vmap(fn)(keys, obs)


def as_policy(policy_fn: PolicyFn | Policy, batched: bool = False) -> Policy:
    """The ``Policy`` that acts like ``policy_fn``; a ``Policy`` is returned unchanged.

    ``policy_fn(key, obs [H, W, C]) -> action []`` is vmapped over envs (one key
    each); with ``batched=True`` it is ``policy_fn(key, obs [E, H, W, C]) -> action [E]``.
    Its arrays (a model's weights) become the policy's traced ``params``, the rest
    (a function, a module's structure) its static part, so two calls with one
    ``policy_fn`` share a jit compilation.
    """
    if isinstance(policy_fn, Policy):
        return policy_fn
    if not callable(policy_fn):
        raise TypeError(
            "argument 'policy_fn' must be a Policy or a callable policy_fn(key, obs) -> action, "
            f"got {type(policy_fn).__name__}"
        )
    arrays, static = eqx.partition(policy_fn, eqx.is_array)
    name = getattr(policy_fn, "__name__", type(policy_fn).__name__)
    return Policy(arrays, bind(_fn_act, static, bool(batched)), name=name)


# --------------------------------------------------------------------------- rollouts


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"argument '{name}' must be an int >= 1, got {value!r}")


def _transitions(traj: one_rollout.Trajectory) -> Transitions:
    """The labelled transitions of a time-major ``Trajectory`` (``next_obs`` before any reset)."""
    return Transitions(
        traj.obs, traj.action, traj.reward.astype(jnp.float32), traj.next_obs, traj.done
    )


@eqx.filter_jit
def _rollout(env, params, policy: Policy, key, num_envs: int, num_steps: int):
    traj = one_rollout.rollout(env, params, policy, key, num_envs, num_steps)
    return _transitions(traj), traj.state, traj.next_state


def rollout(
    env,
    params,
    policy_fn: PolicyFn,
    key: Array,
    num_envs: int,
    num_steps: int,
    batched: bool = False,
) -> tuple[Transitions, Any, Any]:
    """Run ``num_envs`` envs for ``num_steps`` steps with ``policy_fn`` (auto-reset).

    A thin layer over :func:`innerlab.envs.rollout.rollout` (episodes start with
    ``env.reset``, auto-resets go through ``env.reset_after``) that labels the
    steps as ``Transitions``.

    Args:
        policy_fn: a :class:`~innerlab.envs.rollout.Policy` (e.g. ``random_policy(n)``), or
            ``policy_fn(key, obs [H, W, C]) -> action []`` (vmapped over envs), or with
            ``batched=True`` ``policy_fn(key, obs [E, H, W, C]) -> action [E]``.

    Returns:
        ``(transitions, states, next_states)``, all time-major ``[T, E, ...]``; the states are
        the env's state pytrees (ground truth for evaluation, e.g. ``env.true_reward``).
    """
    _check_counts(num_envs=num_envs, num_steps=num_steps)
    policy = as_policy(policy_fn, batched)
    return _rollout(env, params, policy, key, int(num_envs), int(num_steps))


def collect_transitions(
    env,
    params,
    policy_fn: PolicyFn,
    key: Array,
    num_envs: int,
    num_steps: int,
    batched: bool = False,
) -> Transitions:
    """Flat ``[num_steps * num_envs]`` transitions visited by ``policy_fn`` (see ``rollout``)."""
    return rollout(env, params, policy_fn, key, num_envs, num_steps, batched)[0].flatten()


@eqx.filter_jit
def _sample_state_batch(env, params, key, n: int):
    k_state, k_action = jax.random.split(key)
    states = jax.vmap(lambda k: env.sample_state(k, params))(jax.random.split(k_state, n))
    actions = jax.random.randint(k_action, (n,), 0, env.num_actions(params), dtype=jnp.int32)
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    next_obs, next_states, reward, term, trunc, _ = jax.vmap(
        lambda s, a: env.step_env(jax.random.key(0), s, a, params)
    )(states, actions)
    reward = jax.vmap(lambda s, a: env.true_reward(s, a, params))(states, actions)
    trans = Transitions(obs, actions, reward.astype(jnp.float32), next_obs, term | trunc)
    return trans, states, next_states


def sample_state_batch(env, params, key: Array, n: int) -> tuple[Transitions, Any, Any]:
    """Off-distribution coverage: ``n`` states from ``env.sample_state``, uniform actions.

    Labels come from ``env.true_reward``. Returns ``(transitions [n], states, next_states)``.
    """
    _check_counts(n=n)
    return _sample_state_batch(env, params, key, int(n))


def sample_state_transitions(env, params, key: Array, n: int) -> Transitions:
    """``n`` off-distribution transitions (see ``sample_state_batch``)."""
    return sample_state_batch(env, params, key, n)[0]


# --------------------------------------------------------------------------- replay buffer


class ReplayBuffer(eqx.Module):
    """A fixed-capacity ring buffer of ``Transitions`` (functional: methods return new buffers).

    ``data`` holds ``capacity`` rows; ``size`` counts the valid ones and ``pos``
    is the next write slot. Oldest rows are overwritten first.
    """

    data: Transitions
    pos: Int[Array, ""]
    size: Int[Array, ""]

    @property
    def capacity(self) -> int:
        return len(self.data)

    @classmethod
    def create(cls, example: Transitions, capacity: int) -> ReplayBuffer:
        """An empty buffer whose rows look like ``example``'s (a flat batch; only shapes used)."""
        _check_counts(capacity=capacity)
        data = jax.tree.map(lambda x: jnp.zeros((capacity,) + x.shape[1:], x.dtype), example)
        return cls(data, jnp.int32(0), jnp.int32(0))

    def add(self, batch: Transitions) -> ReplayBuffer:
        """Append a flat batch, overwriting the oldest rows when full (jittable)."""
        n = len(batch)
        if n > self.capacity:
            raise ValueError(
                f"argument 'batch' has {n} rows, more than the buffer capacity {self.capacity}"
            )
        for field in ("obs", "next_obs"):
            got, want = getattr(batch, field).shape[1:], getattr(self.data, field).shape[1:]
            if got != want:
                raise ValueError(
                    f"argument 'batch': field '{field}' rows have shape {got}, buffer holds {want}"
                )
        idx = (self.pos + jnp.arange(n)) % self.capacity
        data = jax.tree.map(lambda buf, x: buf.at[idx].set(x.astype(buf.dtype)), self.data, batch)
        return ReplayBuffer(
            data, (self.pos + n) % self.capacity, jnp.minimum(self.size + n, self.capacity)
        )

    def sample(self, key: Array, batch_size: int) -> Transitions:
        """``batch_size`` rows uniformly (with replacement) from the filled part (jittable).

        Raises at run time if the buffer is empty.
        """
        size = eqx.error_if(self.size, self.size < 1, "ReplayBuffer.sample: the buffer is empty")
        idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(size, 1))
        return self.data.take(idx)

    def contents(self) -> Transitions:
        """The valid rows, oldest first (not jittable: the size is data-dependent)."""
        size, pos = int(self.size), int(self.pos)
        start = (pos - size) % self.capacity
        idx = (start + np.arange(size)) % self.capacity
        return self.data.take(jnp.asarray(idx))


# --------------------------------------------------------------------------- segments


class Segments(eqx.Module):
    """Fixed-length pieces of trajectories: ``obs [P, L, H, W, C]``, ``action [P, L]``,
    ``reward [P, L]`` (true rewards), ``done [P, L]``.

    A segment may span an episode boundary (auto-reset); its return is still
    the sum of the rewards the agent received during those ``L`` steps.
    """

    obs: Float[Array, "P L H W C"]
    action: Int[Array, "P L"]
    reward: Float[Array, "P L"]
    done: Bool[Array, "P L"]

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def returns(self) -> Float[Array, " P"]:
        return jnp.sum(self.reward, axis=-1)


def segments_from_rollout(trans: Transitions, length: int) -> Segments:
    """Cut time-major ``[T, E]`` transitions into ``E * (T // length)`` non-overlapping segments."""
    _check_counts(length=length)
    if trans.action.ndim != 2:
        raise ValueError(
            f"argument 'trans' must be time-major [T, E] (from rollout), got action shape "
            f"{tuple(trans.action.shape)}"
        )
    t, e = trans.action.shape
    if length > t:
        raise ValueError(f"argument 'length' ({length}) exceeds the rollout length T={t}")
    n = t // length

    def cut(x):
        x = x[: n * length].reshape((n, length, e) + x.shape[2:])
        x = jnp.moveaxis(x, 2, 1)  # [n, E, L, ...]
        return x.reshape((n * e, length) + x.shape[3:])

    return Segments(cut(trans.obs), cut(trans.action), cut(trans.reward), cut(trans.done))


def collect_segments(
    env, params, policy_fn: PolicyFn, key: Array, num_envs: int, num_steps: int, length: int
) -> Segments:
    """Roll out ``policy_fn`` and cut the trajectories into segments of ``length`` steps."""
    trans = rollout(env, params, policy_fn, key, num_envs, num_steps)[0]
    return segments_from_rollout(trans, length)


class Preferences(eqx.Module):
    """Pairs of segments with the probability that the first is preferred.

    ``first``/``second``: ``Segments`` with ``P`` rows each; ``label [P]`` in
    ``[0, 1]`` (1: first preferred, 0.5: tie).
    """

    first: Segments
    second: Segments
    label: Float[Array, " P"]

    def __len__(self) -> int:
        return int(self.label.shape[0])


def label_preferences(
    key: Array, segments: Segments, num_pairs: int, label_noise: float = 0.0
) -> Preferences:
    """Draw ``num_pairs`` random pairs and label them by their true return.

    The label is 1 if the first segment's return is higher, 0 if lower and
    0.5 on a tie; with ``label_noise`` in ``[0, 0.5]`` each strict label is
    flipped with that probability (a careless labeller).
    """
    _check_counts(num_pairs=num_pairs)
    if not 0.0 <= label_noise <= 0.5:
        raise ValueError(f"argument 'label_noise' must be in [0, 0.5], got {label_noise}")
    if len(segments) < 2:
        raise ValueError(f"argument 'segments' needs at least 2 segments, got {len(segments)}")
    k_pair, k_offset, k_flip = jax.random.split(key, 3)
    n = len(segments)
    i = jax.random.randint(k_pair, (num_pairs,), 0, n)
    j = (i + jax.random.randint(k_offset, (num_pairs,), 1, n)) % n  # never i itself
    ret = segments.returns
    label = jnp.where(ret[i] > ret[j], 1.0, jnp.where(ret[i] < ret[j], 0.0, 0.5))
    flip = jax.random.bernoulli(k_flip, label_noise, (num_pairs,)) & (label != 0.5)
    label = jnp.where(flip, 1.0 - label, label).astype(jnp.float32)
    pick = lambda idx: jax.tree.map(lambda x: x[idx], segments)
    return Preferences(pick(i), pick(j), label)
