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
import numpy as np
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
    network: str = "lstm"  # "lstm" (RecurrentActorCritic) or "transformer" (gated TrXL)
    encoder: str = "mlp"  # "mlp" or "conv" (grid observations)
    num_layers: int = 2  # transformer only
    num_heads: int = 4  # transformer only
    memory: int = 16  # transformer only: steps in the attention window, the current one included

    NETWORKS = ("lstm", "transformer")

    def __post_init__(self):
        if self.network not in self.NETWORKS:
            raise ValueError(
                f"PPOConfig.network must be one of {self.NETWORKS}, got {self.network!r}"
            )
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches", "hidden",
                     "num_layers", "num_heads", "memory"):
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
    """Encoder -> LSTM cell -> policy logits and value; single example, vmap for batches.

    ``obs_size`` (an int) gives the flat MLP encoder; with ``encoder="conv"`` pass the
    observation shape ``[H, W, C]`` instead, and a convolutional encoder
    (``innerlab.reward_models.build_encoder``, tanh output) reads the grid.
    """

    encoder: eqx.Module
    cell: eqx.nn.LSTMCell
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear
    hidden: int = eqx.field(static=True)
    encoder_kind: str = eqx.field(static=True)
    obs_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, obs_size: int | tuple[int, ...], num_actions: int, hidden: int = 64, *,
                 key: Array, encoder: str = "mlp", int_obs: bool = False):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.hidden = hidden
        self.encoder_kind = encoder
        if encoder == "mlp" and not int_obs:
            size = obs_size if isinstance(obs_size, int) else int(np.prod(obs_size))
            self.obs_shape = (size,)
            self.encoder = eqx.nn.MLP(size, hidden, hidden, 1, activation=jax.nn.tanh, key=k1)
        else:  # a grid encoder (reward_models.build_encoder); int_obs embeds integer slots first
            from innerlab.reward_models import build_encoder

            if isinstance(obs_size, int) or (int_obs and len(obs_size) != 3):
                what = "the integer observation's shape (H, W, S) for int_obs=True" if int_obs \
                    else f"the observation shape (a tuple) for encoder={encoder!r}"
                raise ValueError(f"argument 'obs_size' must be {what}, got {obs_size!r}")
            if int_obs:
                self.encoder_kind = f"{encoder}+embed"
            self.obs_shape = tuple(obs_size)
            self.encoder = build_encoder(
                encoder, self.obs_shape, hidden, hidden, k1, "tanh", int_input=int_obs
            )
        self.cell = eqx.nn.LSTMCell(hidden, hidden, key=k2)
        self.actor = eqx.nn.Linear(hidden, num_actions, key=k3)
        self.critic = eqx.nn.Linear(hidden, 1, key=k4)

    def _encode(self, obs: Array) -> Array:
        if self.encoder_kind == "mlp":
            return jnp.tanh(self.encoder(obs.reshape(-1)))
        return self.encoder(obs.reshape(self.obs_shape))

    def initial_carry(self) -> tuple[Array, Array]:
        return jnp.zeros(self.hidden), jnp.zeros(self.hidden)

    def __call__(self, carry, obs: Float[Array, "..."], reset: Array):
        """One step: ``(carry, logits [A], value [])``; ``reset`` (episode start) clears memory."""
        x = self._encode(obs)
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
        x = jax.vmap(self._encode)(obs.reshape((t_len * batch,) + obs.shape[2:]))
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


class PPOState(eqx.Module):
    """Everything a PPO run carries between updates (one seed; ``vmap`` adds a seed axis)."""

    model: eqx.Module  # the actor-critic (``RecurrentActorCritic`` or ``TransformerActorCritic``)
    opt_state: Any
    env_state: Any
    obs: Array  # [E, ...] the observation each env acts on next
    reset: Array  # [E] the next step starts an episode (clears the network's memory)
    carry: Any  # the network's memory, leading axis E
    ep_return: Array  # [E] return so far of each env's current episode
    key: Array  # raw uint32 key data, so checkpoints are plain arrays


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(config.learning_rate, eps=1e-5),
    )


def make_network(
    config: PPOConfig, obs_shape: tuple[int, ...], num_actions: int, key: Array,
    int_obs: bool = False,
):
    """The actor-critic ``config.network`` names: the LSTM or the gated Transformer-XL.

    ``int_obs``: observations are integer slots (``envs.IntegerObs``), which the
    network embeds at its input (``reward_models.model.EmbeddedEncoder``).
    """
    if config.network == "transformer":
        from innerlab.planners.transformer import TransformerActorCritic

        return TransformerActorCritic(
            tuple(obs_shape), num_actions, config.hidden, key=key, num_layers=config.num_layers,
            num_heads=config.num_heads, memory=config.memory, encoder=config.encoder,
            int_obs=int_obs,
        )
    if int_obs or config.encoder != "mlp":
        return RecurrentActorCritic(tuple(obs_shape), num_actions, config.hidden, key=key,
                                    encoder=config.encoder, int_obs=int_obs)
    return RecurrentActorCritic(int(np.prod(obs_shape)), num_actions, config.hidden, key=key)


def init_state(key: Array, config: PPOConfig, env, params, network=None) -> PPOState:
    """A fresh ``PPOState`` for one seed; ``network(obs_shape, num_actions, key)`` builds the
    actor-critic (default :func:`make_network` of ``config``)."""
    space = env.observation_space(params)
    int_obs = bool(jnp.issubdtype(space.dtype, jnp.integer))
    network = network or (lambda shape, n, k: make_network(config, shape, n, k, int_obs))
    k_model, k_reset, key = jax.random.split(key, 3)
    e = config.num_envs
    model = network(space.shape, env.num_actions(params), k_model)
    opt_state = make_optimizer(config).init(eqx.filter(model, eqx.is_array))
    obs, env_state = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(k_reset, e))
    carry = jax.vmap(lambda _: model.initial_carry())(jnp.arange(e))
    return PPOState(
        model, opt_state, env_state, obs, jnp.ones(e, bool), carry, jnp.zeros(e),
        jax.random.key_data(key),
    )


def _loss(model, mb, config: PPOConfig):
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


def train_iteration(state: PPOState, config: PPOConfig, env, params):
    """One PPO update (pure; jit/vmap-able): a ``num_steps`` rollout, GAE, and
    ``update_epochs`` x ``num_minibatches`` clipped-surrogate Adam steps.

    Metrics: ``episode_return`` (mean return of the episodes that ended in this
    rollout, NaN if none), ``episodes``, and the losses.
    """
    e, t_len = config.num_envs, config.num_steps
    optimizer = make_optimizer(config)
    grad_fn = eqx.filter_value_and_grad(_loss, has_aux=True)
    model = state.model
    params_m, static = eqx.partition(model, eqx.is_array)
    carry_start = state.carry
    key = jax.random.wrap_key_data(state.key)

    def act(c, _):
        env_state, obs, reset, carry, ep_ret, fin_sum, fin_n, key = c
        key, k_act, k_step = jax.random.split(key, 3)
        carry, logits, value = jax.vmap(model)(carry, obs, reset)
        action = jax.random.categorical(k_act, logits)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
        # vmap(env.step), computing only the resets it needs
        nxt, env_state, reward, term, trunc, _ = envs.batched_step(
            env, jax.random.split(k_step, e), env_state, action, params
        )
        done = term | trunc
        ep_ret = ep_ret + reward
        fin_sum = fin_sum + jnp.sum(jnp.where(done, ep_ret, 0.0))
        fin_n = fin_n + jnp.sum(done)
        ep_ret = jnp.where(done, 0.0, ep_ret)
        out = (obs, reset, action, logp, value, reward, done)
        return (env_state, nxt, done, carry, ep_ret, fin_sum, fin_n, key), out

    init = (state.env_state, state.obs, state.reset, state.carry, state.ep_return,
            jnp.float32(0), jnp.int32(0), key)
    (env_state, obs, reset, carry, ep_ret, fin_sum, fin_n, key), traj = jax.lax.scan(
        act, init, None, length=t_len
    )
    t_obs, t_reset, t_action, t_logp, t_value, t_reward, t_done = traj
    _, _, last_value = jax.vmap(model)(carry, obs, reset)
    adv, ret = gae(t_reward, t_value, t_done, last_value, config.gamma, config.gae_lambda)

    def epoch(c, k):
        # minibatches are sets of whole env sequences, gathered where they are used
        envs_per_mb = jax.random.permutation(k, e).reshape(config.num_minibatches, -1)

        def minibatch(c, idx):
            params_m, opt_state = c
            mb = (jax.tree.map(lambda x: x[idx], carry_start),) + tuple(
                x[:, idx] for x in (t_obs, t_reset, t_action, t_logp, adv, ret)
            )
            (_, aux), grads = grad_fn(eqx.combine(params_m, static), mb, config)
            grads = eqx.filter(grads, eqx.is_array)
            updates, opt_state = optimizer.update(grads, opt_state, params_m)
            return (optax.apply_updates(params_m, updates), opt_state), aux

        return jax.lax.scan(minibatch, c, envs_per_mb)

    key, k_epochs = jax.random.split(key)
    (params_m, opt_state), aux = jax.lax.scan(
        epoch, (params_m, state.opt_state), jax.random.split(k_epochs, config.update_epochs)
    )
    metrics = jax.tree.map(jnp.mean, aux)
    metrics["episode_return"] = jnp.where(fin_n > 0, fin_sum / jnp.maximum(fin_n, 1), jnp.nan)
    metrics["episodes"] = fin_n
    new = PPOState(
        eqx.combine(params_m, static), opt_state, env_state, obs, reset, carry, ep_ret,
        jax.random.key_data(key),
    )
    return new, metrics


def make_train(config: PPOConfig, **env_overrides: Any):
    """``train(key) -> (model, metrics)``: the whole PPO run as one pure, jittable function.

    ``metrics`` has one entry per update (see :func:`train_iteration`). For runs with
    progress, checkpoints and evaluation use ``innerlab.agents`` (kind ``"ppo-lstm"``).
    """
    env, params = envs.make(config.env, **env_overrides)

    def train(key: Array):
        state = init_state(key, config, env, params)
        dynamic, static = eqx.partition(state, eqx.is_array)

        def body(dyn, _):
            new, metrics = train_iteration(eqx.combine(dyn, static), config, env, params)
            return eqx.filter(new, eqx.is_array), metrics

        dynamic, metrics = jax.lax.scan(body, dynamic, None, length=config.num_updates)
        return eqx.combine(dynamic, static).model, metrics

    return train


__all__ = [
    "PPOConfig",
    "PPOState",
    "RecurrentActorCritic",
    "gae",
    "init_state",
    "make_network",
    "make_train",
    "train_iteration",
]
