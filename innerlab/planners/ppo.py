"""A model-free baseline: a recurrent (LSTM) actor-critic trained with PPO.

Every planner needs a model-free comparison, and the side-channel experiment
needs an agent with memory. Written in the PureJaxRL style: ``make_train(config)``
returns one pure function ``train(key)`` that runs the whole training loop
(acting, GAE, clipped-surrogate updates) under ``jax.jit``, so
``eqx.filter_jit(eqx.filter_vmap(make_train(config)))(keys)`` trains one agent per seed at
once. The LSTM state is reset at episode starts inside the rollout, and the
update re-runs the LSTM over whole rollout sequences (minibatches are sets of
envs, never cut sequences) with ``RecurrentActorCritic.unroll``, which batches
everything but the recurrence and differentiates the recurrence with the
hand-written VJP of :mod:`innerlab.planners.lstm`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

import innerlab.envs as envs
from innerlab.planners.lstm import lstm_scan, lstm_step


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of a PPO run (PureJaxRL's defaults where they fit gridworlds)."""

    env: str = "Orchard-v0"
    num_envs: int = 16
    num_steps: int = 32
    total_timesteps: int = 200_000
    update_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.97
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    learning_rate: float = 1e-3
    hidden: int = 64

    def __post_init__(self):
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"PPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_envs % self.num_minibatches:
            raise ValueError(
                f"PPOConfig.num_envs ({self.num_envs}) must be divisible by num_minibatches "
                f"({self.num_minibatches}): recurrent minibatches are sets of whole env sequences"
            )
        if self.total_timesteps < self.num_envs * self.num_steps:
            raise ValueError(
                f"PPOConfig.total_timesteps ({self.total_timesteps}) must be >= num_envs*num_steps "
                f"({self.num_envs * self.num_steps})"
            )

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // (self.num_envs * self.num_steps)


class RecurrentActorCritic(eqx.Module):
    """MLP encoder -> LSTM cell -> policy logits and value; single example, vmap for batches."""

    encoder: eqx.nn.MLP
    cell: eqx.nn.LSTMCell
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear
    hidden: int = eqx.field(static=True)

    def __init__(self, obs_size: int, num_actions: int, hidden: int = 64, *, key: Array):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.hidden = hidden
        self.encoder = eqx.nn.MLP(obs_size, hidden, hidden, 1, activation=jax.nn.tanh, key=k1)
        self.cell = eqx.nn.LSTMCell(hidden, hidden, key=k2)
        self.actor = eqx.nn.Linear(hidden, num_actions, key=k3)
        self.critic = eqx.nn.Linear(hidden, 1, key=k4)

    def initial_carry(self) -> tuple[Array, Array]:
        return jnp.zeros(self.hidden), jnp.zeros(self.hidden)

    def __call__(self, carry, obs: Float[Array, "..."], reset: Array):
        """One step: ``(carry, logits [A], value [])``; ``reset`` (episode start) clears memory."""
        x = jnp.tanh(self.encoder(obs.reshape(-1)))
        h, c = lstm_step(self.cell, carry, x, reset)
        return (h, c), self.actor(h), self.critic(h)[0]

    def unroll(self, carry, obs: Float[Array, "T B ..."], reset: Array):
        """The same function as ``__call__`` stepped over ``T`` steps of ``B`` envs.

        Returns ``(carry, logits [T, B, A], value [T, B])``. Only the recurrence
        (``h @ W_hh``) is sequential; the encoder, the LSTM's input projection and
        the heads see all ``T * B`` steps at once. PPO's update runs this for every
        minibatch, so it is where training time goes.
        """
        t_len, batch = reset.shape
        x = jnp.tanh(jax.vmap(self.encoder)(obs.reshape(t_len * batch, -1)))
        carry, hs = lstm_scan(self.cell, carry, x.reshape(t_len, batch, -1), reset)
        hs_flat = hs.reshape(t_len * batch, -1)
        logits = jax.vmap(self.actor)(hs_flat).reshape(t_len, batch, -1)
        value = jax.vmap(self.critic)(hs_flat)[:, 0].reshape(t_len, batch)
        return carry, logits, value


def gae(reward, value, done, last_value, gamma: float, lam: float):
    """Generalised advantage estimates and returns, time-major ``[T, E]``.

    ``done[t]`` marks that the step ``t`` ended its episode (no bootstrap across it).
    """

    def body(carry, x):
        adv_next, v_next = carry
        r, v, d = x
        nonterminal = 1.0 - d
        delta = r + gamma * v_next * nonterminal - v
        adv = delta + gamma * lam * nonterminal * adv_next
        return (adv, v), adv

    _, adv = jax.lax.scan(
        body,
        (jnp.zeros_like(last_value), last_value),
        (reward, value, done.astype(jnp.float32)),
        reverse=True,
    )
    return adv, adv + value


def make_train(config: PPOConfig, **env_overrides: Any):
    """``train(key) -> (model, metrics)``: the whole PPO run as one pure, jittable function.

    ``metrics`` has one entry per update: ``episode_return`` (mean return of episodes that
    ended in that update's rollout, NaN if none), ``episodes``, and the losses.
    """
    env, params = envs.make(config.env, **env_overrides)
    num_actions = env.num_actions(params)
    obs_shape = env.observation_space(params).shape
    obs_size = int(jnp.prod(jnp.array(obs_shape)))
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(config.learning_rate, eps=1e-5),
    )
    e, t_len = config.num_envs, config.num_steps

    def step_env(keys, states, actions):  # vmap(env.step), computing only the resets it needs
        return envs.batched_step(env, keys, states, actions, params)

    def policy_step(model, carry, obs, reset):
        return jax.vmap(model)(carry, obs, reset)

    def loss_fn(model, mb):
        carry0, obs, reset, action, logp_old, adv, ret = mb

        _, logits, value = model.unroll(carry0, obs, reset)
        logp_all = jax.nn.log_softmax(logits)
        logp = jnp.take_along_axis(logp_all, action[..., None], -1)[..., 0]
        ratio = jnp.exp(logp - logp_old)
        adv_n = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.minimum(
            ratio * adv_n, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv_n
        ).mean()
        v_loss = 0.5 * ((value - ret) ** 2).mean()
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
        total = pg + config.vf_coef * v_loss - config.ent_coef * entropy
        return total, {"loss_policy": pg, "loss_value": v_loss, "entropy": entropy}

    grad_fn = eqx.filter_value_and_grad(loss_fn, has_aux=True)

    def train(key: Array):
        k_model, k_reset, key = jax.random.split(key, 3)
        model = RecurrentActorCritic(obs_size, num_actions, config.hidden, key=k_model)
        params_m, static = eqx.partition(model, eqx.is_array)
        opt_state = optimizer.init(params_m)
        obs, env_state = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(k_reset, e))
        carry = jax.vmap(lambda _: model.initial_carry())(jnp.arange(e))
        runner = (params_m, opt_state, env_state, obs, jnp.ones(e, bool), carry, jnp.zeros(e), key)

        def update(runner, _):
            params_m, opt_state, env_state, obs, reset, carry, ep_ret, key = runner
            model = eqx.combine(params_m, static)
            carry_start = carry

            def act(c, _):
                env_state, obs, reset, carry, ep_ret, fin_sum, fin_n, key = c
                key, k_act, k_step = jax.random.split(key, 3)
                carry, logits, value = policy_step(model, carry, obs, reset)
                action = jax.random.categorical(k_act, logits)
                logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
                nxt, env_state, reward, term, trunc, _ = step_env(
                    jax.random.split(k_step, e), env_state, action
                )
                done = term | trunc
                ep_ret = ep_ret + reward
                fin_sum = fin_sum + jnp.sum(jnp.where(done, ep_ret, 0.0))
                fin_n = fin_n + jnp.sum(done)
                ep_ret = jnp.where(done, 0.0, ep_ret)
                out = (obs, reset, action, logp, value, reward, done)
                return (env_state, nxt, done, carry, ep_ret, fin_sum, fin_n, key), out

            init = (env_state, obs, reset, carry, ep_ret, jnp.float32(0), jnp.int32(0), key)
            (env_state, obs, reset, carry, ep_ret, fin_sum, fin_n, key), traj = jax.lax.scan(
                act, init, None, length=t_len
            )
            t_obs, t_reset, t_action, t_logp, t_value, t_reward, t_done = traj
            _, _, last_value = policy_step(model, carry, obs, reset)
            adv, ret = gae(t_reward, t_value, t_done, last_value, config.gamma, config.gae_lambda)

            def epoch(c, k):
                params_m, opt_state = c
                # minibatches are sets of whole env sequences, gathered where they are used
                envs_per_mb = jax.random.permutation(k, e).reshape(config.num_minibatches, -1)

                def minibatch(c, idx):
                    params_m, opt_state = c
                    mb = (jax.tree.map(lambda x: x[idx], carry_start),) + tuple(
                        x[:, idx] for x in (t_obs, t_reset, t_action, t_logp, adv, ret)
                    )
                    (_, aux), grads = grad_fn(eqx.combine(params_m, static), mb)
                    grads = eqx.filter(grads, eqx.is_array)
                    updates, opt_state = optimizer.update(grads, opt_state, params_m)
                    return (optax.apply_updates(params_m, updates), opt_state), aux

                return jax.lax.scan(minibatch, (params_m, opt_state), envs_per_mb)

            key, k_epochs = jax.random.split(key)
            (params_m, opt_state), aux = jax.lax.scan(
                epoch, (params_m, opt_state), jax.random.split(k_epochs, config.update_epochs)
            )
            metrics = jax.tree.map(jnp.mean, aux)
            metrics["episode_return"] = jnp.where(
                fin_n > 0, fin_sum / jnp.maximum(fin_n, 1), jnp.nan
            )
            metrics["episodes"] = fin_n
            return (params_m, opt_state, env_state, obs, reset, carry, ep_ret, key), metrics

        runner, metrics = jax.lax.scan(update, runner, None, length=config.num_updates)
        return eqx.combine(runner[0], static), metrics

    return train


def act_episodes(
    model: RecurrentActorCritic,
    key: Array,
    num_episodes: int,
    env_name: str,
    greedy: bool = True,
    **env_overrides: Any,
) -> Array:
    """True undiscounted return ``[num_episodes]`` of a trained agent (one episode per env)."""
    env, params = envs.make(env_name, **env_overrides)
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(k_reset, num_episodes))
    carry = jax.vmap(lambda _: model.initial_carry())(jnp.arange(num_episodes))
    reset = jnp.ones(num_episodes, bool)

    def step(c, k):
        obs, state, carry, reset, ret, alive = c
        k_act, k_step = jax.random.split(k)
        carry, logits, _ = jax.vmap(model)(carry, obs, reset)
        action = jnp.argmax(logits, -1) if greedy else jax.random.categorical(k_act, logits)
        obs, state, r, term, trunc, _ = jax.vmap(lambda kk, s, a: env.step(kk, s, a, params))(
            jax.random.split(k_step, num_episodes), state, action
        )
        ret = ret + jnp.where(alive, r, 0.0)
        done = term | trunc
        return (obs, state, carry, done, ret, alive & ~done), None

    init = (obs, state, carry, reset, jnp.zeros(num_episodes), jnp.ones(num_episodes, bool))
    (_, _, _, _, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_run, params.max_steps))
    return ret


__all__ = ["PPOConfig", "RecurrentActorCritic", "act_episodes", "gae", "make_train"]
