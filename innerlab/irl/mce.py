"""Maximum-causal-entropy inverse RL (Ziebart 2010) on tabular layouts, in JAX.

The model of behaviour: in a finite-horizon MDP with reward ``r = features @ w``,
the agent follows the *soft-optimal* policy

    Q_t(s, a) = r(s, a) + V_{t+1}(next(s, a)),   V_t(s) = logsumexp_a Q_t(s, a),
    pi_t(a | s) = exp(Q_t(s, a) - V_t(s)),        V_T = 0, V(terminal) = 0.

MCE IRL picks the ``w`` whose soft-optimal policy makes the demonstrations most
likely; the gradient of that log-likelihood is the difference between the
demonstrations' feature counts and the policy's expected ones (Ziebart's
feature matching), so maximising it by autodiff *is* MCE IRL. The scale of
``w`` is learned too: it says how deterministic the behaviour is (``w = 0`` is
the uniform policy, the fit for behaviour no reward explains).

Also here: sampling soft-optimal experts of a known reward (to validate the
fit), held-out log-likelihood (coherence), a behavioural-cloning baseline, and
the EPIC distance between two weight vectors on the layouts' tables.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from innerlab.irl.tabular import Demos, TabularMDP, split_layouts
from innerlab.reward_models.epic import epic_distance_tabular

__all__ = [
    "bc_features",
    "bc_log_likelihood",
    "epic_tables",
    "epic_to",
    "fit_bc",
    "fit_reward",
    "log_likelihood",
    "log_likelihood_of",
    "sample_demos",
    "soft_policy",
    "soft_policy_of",
]


def soft_policy(mdp: TabularMDP, weights: jax.Array) -> jax.Array:
    """``[T, S, A]`` log-probabilities of the soft-optimal policy of ``features @ weights``
    for one layout (``vmap`` for several)."""
    return soft_policy_of(mdp, mdp.features @ weights)


def soft_policy_of(mdp: TabularMDP, reward: jax.Array) -> jax.Array:
    """``[T, S, A]`` log-probabilities of the soft-optimal policy of a reward table
    ``[S, A]`` (any reward, e.g. a network's) for one layout."""
    alive = ~mdp.terminal

    def back(v_next, _):
        q = reward + v_next[mdp.next]
        v = jnp.where(alive, jax.nn.logsumexp(q, -1), 0.0)
        return v, q - v[:, None]

    _, logpi = jax.lax.scan(back, jnp.zeros(reward.shape[0]), None, length=mdp.horizon)
    return logpi[::-1]


def _step_ll(logpi: jax.Array, demos: Demos) -> jax.Array:
    """``[L]`` log-probability of each demonstrated action (0 where masked)."""
    t = jnp.clip(demos.t, 0, logpi.shape[0] - 1)
    return jnp.where(demos.mask, logpi[t, demos.s, demos.a], 0.0)


def log_likelihood(mdps: TabularMDP, demos: Demos, weights: jax.Array) -> jax.Array:
    """``[M]`` total log-likelihood of each layout's demonstrations under the soft-optimal
    policy of ``weights`` (``mdps``/``demos`` stacked over ``M`` layouts)."""
    return log_likelihood_of(mdps, demos, mdps.features @ weights)


def log_likelihood_of(mdps: TabularMDP, demos: Demos, rewards: jax.Array) -> jax.Array:
    """``[M]`` total log-likelihood of each layout's demonstrations under the soft-optimal
    policy of its reward table (``rewards [M, S, A]``: any reward, e.g. a network's). Its
    gradient in ``rewards`` is the demonstrations' state-action counts minus the soft-optimal
    policy's expected ones (MCE IRL's occupancy matching), so autodiff through a model that
    outputs the table fits that model by MCE IRL."""
    return jax.vmap(lambda m, d, r: _step_ll(soft_policy_of(m, r), d).sum())(mdps, demos, rewards)


def _fit(loss, size: int, steps: int, learning_rate: float) -> jax.Array:
    opt = optax.adam(learning_rate)
    w0 = jnp.zeros(size)

    def body(carry, _):
        w, state = carry
        value, grad = jax.value_and_grad(loss)(w)
        updates, state = opt.update(grad, state)
        return (optax.apply_updates(w, updates), state), value

    (w, _), _ = jax.lax.scan(body, (w0, opt.init(w0)), None, length=steps)
    return w


def fit_reward(mdps: TabularMDP, demos: Demos, l2: float = 1e-5, steps: int = 600,
               learning_rate: float = 0.1, basis: jax.Array | None = None) -> jax.Array:
    """MCE IRL: the ``[F]`` weights that maximise the demonstrations' mean log-likelihood
    per step, minus ``l2 * |w|^2``. ``basis [K, F]`` restricts the weights to ``c @ basis``
    (e.g. ``basis = true[None]`` fits only the scale of a known reward)."""
    steps_total = jnp.maximum(demos.mask.sum(), 1)
    size = mdps.features.shape[-1] if basis is None else basis.shape[0]

    def loss(c):
        w = c if basis is None else c @ basis
        return -log_likelihood(mdps, demos, w).sum() / steps_total + l2 * jnp.sum(w**2)

    c = _fit(loss, size, steps, learning_rate)
    return c if basis is None else c @ basis


fit_reward = jax.jit(fit_reward, static_argnames=("steps",))


def sample_demos(mdps: TabularMDP, weights: jax.Array, key: jax.Array) -> Demos:
    """One episode per layout of the soft-optimal policy of ``weights``: a synthetic
    expert of a known reward (``[M, horizon]`` demos)."""

    def one(mdp, k):
        logpi = soft_policy(mdp, weights)

        def step(carry, x):
            s, done = carry
            t, kt = x
            a = jax.random.categorical(kt, logpi[t, s])
            out = (t, s, a.astype(jnp.int32), ~done)
            s2 = mdp.next[s, a]
            return (s2, done | mdp.terminal[s2]), out

        xs = (jnp.arange(mdp.horizon), jax.random.split(k, mdp.horizon))
        _, (t, s, a, mask) = jax.lax.scan(step, (mdp.start, mdp.terminal[mdp.start]), xs)
        return Demos(t, s, a, mask)

    keys = jax.random.split(key, mdps.start.shape[0])
    return jax.vmap(one)(mdps, keys)


# --------------------------------------------------------------------------- behavioural cloning


def bc_features(mdps: TabularMDP, extra: jax.Array | None = None) -> jax.Array:
    """``[M, S, A, G]`` per-action inputs of the behavioural-cloning baseline: the step's
    own reward features, the action's identity, and ``extra`` (e.g. distance changes)."""
    m, s, a, _ = mdps.features.shape
    ident = jnp.broadcast_to(jnp.eye(a), (m, s, a, a))
    parts = [mdps.features, ident] + ([] if extra is None else [extra])
    return jnp.concatenate(parts, -1)


def _bc_logpi(inputs: jax.Array, w: jax.Array) -> jax.Array:
    return jax.nn.log_softmax(inputs @ w, -1)  # [M, S, A]


def bc_log_likelihood(inputs: jax.Array, demos: Demos, w: jax.Array) -> jax.Array:
    """``[M]`` log-likelihood of the demonstrations under the linear-softmax policy ``w``."""
    logpi = _bc_logpi(inputs, w)
    ll = jax.vmap(lambda lp, d: jnp.where(d.mask, lp[d.s, d.a], 0.0).sum())(logpi, demos)
    return ll


@jax.jit
def fit_bc(inputs: jax.Array, demos: Demos, l2: float = 1e-3) -> jax.Array:
    """Behavioural cloning: a time-independent linear-softmax policy over ``inputs``
    (:func:`bc_features`) fit by maximum likelihood (the baseline that explains
    behaviour without any reward or planning)."""
    steps_total = jnp.maximum(demos.mask.sum(), 1)

    def loss(w):
        return -bc_log_likelihood(inputs, demos, w).sum() / steps_total + l2 * jnp.sum(w**2)

    return _fit(loss, inputs.shape[-1], 400, 0.1)


# --------------------------------------------------------------------------- EPIC


def _tables(mdp: TabularMDP, reward: jax.Array):
    s, a = mdp.next.shape
    table = jnp.broadcast_to(reward[:, :, None], (s, a, s))
    live = (mdp.valid & ~mdp.terminal).astype(jnp.float32)
    coverage = live[:, None, None] * jax.nn.one_hot(mdp.next, s)
    return table, live, coverage


def epic_tables(mdps: TabularMDP, reward_a: jax.Array, reward_b: jax.Array,
                gamma: float = 1.0) -> float:
    """Mean over layouts of the exact EPIC distance between reward tables ``[M, S, A]``
    (uniform over the live states and actions; coverage the transitions actually
    possible). NaN if either reward is constant there (EPIC is undefined for a reward
    that ranks nothing, e.g. ``weights = 0``)."""
    out = []
    for i in range(mdps.start.shape[0]):
        mdp = split_layouts(mdps, i)
        ra, live, cov = _tables(mdp, reward_a[i])
        rb, _, _ = _tables(mdp, reward_b[i])
        ok = np.asarray(cov) > 0
        if min(np.ptp(np.asarray(ra)[ok]), np.ptp(np.asarray(rb)[ok])) < 1e-6:
            out.append(math.nan)
            continue
        actions = jnp.ones(ra.shape[1])
        out.append(float(epic_distance_tabular(ra, rb, live, actions, cov, gamma)))
    return float(np.nanmean(out)) if np.isfinite(out).any() else math.nan


def epic_to(mdps: TabularMDP, weights_a: jax.Array, weights_b: jax.Array,
            gamma: float = 1.0) -> float:
    """:func:`epic_tables` of the linear rewards ``features @ weights_a`` and ``@ weights_b``."""
    return epic_tables(mdps, mdps.features @ weights_a, mdps.features @ weights_b, gamma)
