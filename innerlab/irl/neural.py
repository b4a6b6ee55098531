"""MCE IRL with a neural reward over observations: ``r_theta(obs(s), a)``.

The linear model of :mod:`innerlab.irl.mce` scores a step by hand-made features. Here
the reward is a small MLP (equinox) of the env's own observation of the state, one
output per action, so it needs no feature basis: ``obs(s)`` is what the env shows an
agent in state ``s`` (for ``envs.Egocentric(orchard)`` the agent-centred view, where
"what moving up collects" is the same input units in every cell). The network is
evaluated on every live state of each tabular layout (:func:`observe_layouts`), its
``[M, S, A]`` table goes through the same soft value iteration as the linear case
(:func:`innerlab.irl.log_likelihood_of`), and the mean log-likelihood per step of the
demonstrations is maximised by autodiff through the network: its gradient in the table
is the expert's state-action counts minus the soft-optimal policy's expected ones, so
this *is* MCE IRL, back-propagated into ``theta``.

Identifiability. In this finite-horizon MDP the soft-optimal policy at the last step
fixes ``r(s, .)`` up to a constant per state, and the earlier steps tie those constants
together, so the reward is identified up to a constant on the states the demonstrations
and the policy reach; elsewhere only the network's generalisation decides it. (Potential
shaping is *not* an equivalence here: a return is cut at the horizon wherever the agent
is, and Orchard's own reward *is* a potential difference, ``phi(s) = -value of the
objects left``; so no shaping is removed before comparing rewards.)
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from innerlab.envs.core import Environment
from innerlab.irl.mce import log_likelihood_of
from innerlab.irl.tabular import Demos, TabularMDP, layout_states

__all__ = [
    "LayoutObs",
    "RewardNet",
    "fit_neural_reward",
    "observe_layouts",
    "reward_tables",
]


class LayoutObs(eqx.Module):
    """The env's observations of the live states of ``M`` layouts: ``obs [M, K, D]``
    (flattened) of states ``index [M, K]`` of tables with ``num_states`` rows. Live: the
    agent on floor, something left to collect (no other state is ever acted in)."""

    obs: jax.Array
    index: jax.Array
    num_states: int = eqx.field(static=True)


def observe_layouts(env: Environment, params, starts, mdps: TabularMDP) -> LayoutObs:
    """``env.observe`` of every live state of the layouts of ``starts`` (``[M]`` grid
    states, e.g. :func:`innerlab.irl.trajectory_layouts`; ``mdps`` their tables).

    ``env`` is the observation model (Orchard's global channel grid, or
    ``envs.Egocentric(orchard)``); its params are ``params``. Not jitted: the number of
    live states per layout is read on the host (padding repeats a live state)."""
    live = np.asarray(mdps.valid & ~mdps.terminal)
    k = int(live.sum(-1).max())
    index = np.stack([np.resize(np.flatnonzero(row), k) for row in live]).astype(np.int32)

    @jax.jit
    def observe(start, idx):
        states = jax.tree.map(lambda x: x[idx], layout_states(start))
        return jax.vmap(lambda g: env.observe(g, params).reshape(-1))(states)

    obs = jax.vmap(observe)(starts, jnp.asarray(index)).astype(jnp.float32)
    return LayoutObs(obs, jnp.asarray(index), live.shape[1])


class RewardNet(eqx.Module):
    """``r_theta(obs) -> [A]``: an MLP from the flattened observation of a state to the
    reward of each action there. The last layer starts at zero (reward 0 everywhere: the
    fit starts from the policy that only avoids ending the episode early, as the linear
    fit's ``w = 0``)."""

    mlp: eqx.nn.MLP

    def __init__(self, obs_size: int, num_actions: int, key: jax.Array, width: int = 64,
                 depth: int = 2):
        mlp = eqx.nn.MLP(obs_size, num_actions, width, depth, activation=jax.nn.relu, key=key)
        last = mlp.layers[-1]
        self.mlp = eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp,
                               (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))

    def __call__(self, obs: jax.Array) -> jax.Array:
        return self.mlp(obs)


def reward_tables(net: RewardNet, lobs: LayoutObs) -> jax.Array:
    """``[M, S, A]`` the network's reward of every live state (0 elsewhere: never acted in)."""
    out = jax.vmap(jax.vmap(net))(lobs.obs)  # [M, K, A]
    m, _, a = out.shape
    table = jnp.zeros((m, lobs.num_states, a), out.dtype)
    return jax.vmap(lambda t, i, o: t.at[i].set(o))(table, lobs.index, out)


def _weight_norm(net: RewardNet) -> jax.Array:
    return sum(jnp.sum(layer.weight**2) for layer in net.mlp.layers)


def fit_neural_reward(mdps: TabularMDP, lobs: LayoutObs, demos: Demos, key: jax.Array,
                      width: int = 64, depth: int = 2, steps: int = 1000,
                      learning_rate: float = 3e-3, l2: float = 1e-4) -> RewardNet:
    """MCE IRL with :class:`RewardNet`: the network whose table's soft-optimal policy makes
    the demonstrations most likely (mean log-likelihood per step), minus ``l2`` times the
    sum of squared weights; full-batch Adam for ``steps`` steps from ``key``'s init.

    It needs many demonstrations: a network can memorise one episode per layout (measured
    in docs/zero_shot.md)."""
    for name, value in (("width", width), ("depth", depth), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"argument {name!r} must be an int >= 1, got {value!r}")
    if not (isinstance(learning_rate, int | float) and 0 < learning_rate < float("inf")):
        raise ValueError(f"argument 'learning_rate' must be a finite number > 0, "
                         f"got {learning_rate!r}")
    if not (isinstance(l2, int | float) and 0 <= l2 < float("inf")):
        raise ValueError(f"argument 'l2' must be a finite number >= 0, got {l2!r}")
    if lobs.obs.shape[0] != mdps.next.shape[0] or lobs.num_states != mdps.next.shape[1]:
        m, n = mdps.next.shape[:2]
        raise ValueError(f"argument 'lobs' must observe the layouts of 'mdps' ({m} layouts of "
                         f"{n} states), got {lobs.obs.shape[0]} layouts of {lobs.num_states}")
    return _fit_neural(mdps, lobs, demos, key, width, depth, steps, float(learning_rate),
                       float(l2))


@eqx.filter_jit
def _fit_neural(mdps, lobs, demos, key, width, depth, steps, learning_rate, l2):
    num_actions = mdps.next.shape[-1]
    net = RewardNet(lobs.obs.shape[-1], num_actions, key, width, depth)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    steps_total = jnp.maximum(demos.mask.sum(), 1)
    opt = optax.adam(learning_rate)

    def loss(p):
        n = eqx.combine(p, static)
        ll = log_likelihood_of(mdps, demos, reward_tables(n, lobs)).sum() / steps_total
        return -ll + l2 * _weight_norm(n)

    def body(carry, _):
        p, state = carry
        value, grad = jax.value_and_grad(loss)(p)
        updates, state = opt.update(grad, state, p)
        return (optax.apply_updates(p, updates), state), value

    (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
    return eqx.combine(params, static)
