"""A MuZero / Gumbel-MuZero learner for the ``MCTSLayer`` agent.

Each iteration acts for ``rollout_len`` steps in ``num_envs`` envs with the
search (``MCTSLayer`` over the current ``WorldModel``), stores the trajectory,
then trains the model by unrolling it ``unroll`` steps from every stored
position with three losses: reward (every ensemble member against the env's
reward, with a Bernoulli bootstrap mask per member so the members stay
distinct), value (against n-step targets bootstrapped from the search's root
values) and policy (cross-entropy against the search's action weights).

Three options serve the robust-reward experiment (all off by default, and then
the learner is exactly the plain one, PRNG streams included):
``label_capacity`` gives the state a buffer of overseer labels (observation,
action, true reward; filled by :func:`add_labels`) that every minibatch also
fits, with every member, so labels bought by an adversary retrain the agent's
own reward heads while it keeps training; ``reward_prior_scale`` adds
randomised prior functions to the reward heads; ``diversity_coef`` pushes the
heads apart on unlabelled ``env.sample_state`` transitions
(``innerlab.reward_models.diverse``).

The whole iteration is one pure function of a ``TrainState``
(:func:`init_state`, :func:`train_iteration`), which holds every PRNG key.
Training runs, evaluation and checkpoints go through ``innerlab.agents``
(kind ``"muzero"``): its one driver ``lax.scan``-s iterations into jitted
chunks, ``vmap``-s seeds, logs, checkpoints and resumes bit-identically, and
``agents.evaluate`` scores the search (``greedy=True``: no root noise, the
most-visited action; ``False``: as it acts in training).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from innerlab.envs.core import Environment, EnvParams
from innerlab.planners.mcts import MCTSLayer
from innerlab.planners.world_model import WorldModel
from innerlab.reward_models.diverse import diversity_loss, with_reward_prior


@dataclasses.dataclass(frozen=True)
class MuZeroConfig:
    """Everything that defines a MuZero learner (JSON-serialisable).

    Build it with ``innerlab.agents.make("muzero", ...)``, which maps the shared
    option names onto these fields and sets the run length: ``num_iterations``
    from ``total_steps``, and ``chunk`` to 1 (the driver chunks by ``log_every``).
    """

    env: str = "Orchard-v0"
    num_envs: int = 16
    rollout_len: int = 16
    num_iterations: int = 200
    chunk: int = 10
    num_simulations: int = 16
    policy: str = "gumbel"
    rescale_values: bool = True  # Gumbel: min-max rescale Q at the root (MCTSLayer)
    unroll: int = 5
    n_step: int = 5
    discount: float = 0.97
    learning_rate: float = 3e-3
    max_grad_norm: float = 5.0
    num_epochs: int = 2
    num_minibatches: int = 4
    value_coef: float = 0.25
    reward_coef: float = 1.0
    entropy_coef: float = 0.0
    replay_rollouts: int = 1
    detach_policy_value: bool = False  # policy/value losses do not train the latent
    bootstrap_prob: float = 0.8
    num_members: int = 3
    latent_dim: int = 64
    width: int = 128
    encoder: str = "mlp"
    latent_activation: str = "minmax"
    egocentric: bool = False  # observe gridworlds through ``envs.Egocentric`` (agent-centred)
    label_capacity: int = 0  # overseer labels the state can hold (0: no label buffer)
    label_coef: float = 1.0  # weight of the labelled-reward loss
    label_batch: int = 32  # labels drawn (with replacement) per minibatch
    reward_prior_scale: float = 0.0  # randomised prior functions on the reward heads (0: none)
    diversity_coef: float = 0.0  # weight of the diversity loss on unlabelled inputs (0: none)
    diversity_batch: int = 32  # unlabelled sample_state transitions per minibatch
    diversity_cap: float = 1.0  # per-pair squared difference beyond which no more push

    def __post_init__(self):
        for name in (
            "num_envs",
            "rollout_len",
            "num_iterations",
            "chunk",
            "num_simulations",
            "unroll",
            "n_step",
            "num_epochs",
            "num_minibatches",
            "num_members",
            "replay_rollouts",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"MuZeroConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name, low in (("label_capacity", 0), ("label_batch", 1), ("diversity_batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"MuZeroConfig.{name} must be an int >= {low}, got {value!r}")
        for name in ("label_coef", "reward_prior_scale", "diversity_coef", "diversity_cap"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"MuZeroConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.diversity_coef > 0 and (self.num_members < 2 or not self.diversity_cap > 0):
            raise ValueError(
                "MuZeroConfig.diversity_coef > 0 needs num_members >= 2 and diversity_cap > 0, "
                f"got num_members={self.num_members}, diversity_cap={self.diversity_cap}"
            )
        if self.num_iterations % self.chunk:
            raise ValueError(
                f"MuZeroConfig.num_iterations ({self.num_iterations}) must be a multiple of "
                f"chunk ({self.chunk}) so checkpoints fall on chunk boundaries"
            )
        if (self.num_envs * self.rollout_len) % self.num_minibatches:
            raise ValueError(
                f"num_envs*rollout_len ({self.num_envs * self.rollout_len}) must be divisible "
                f"by num_minibatches ({self.num_minibatches})"
            )


class TrainState(eqx.Module):
    """Everything a run carries between iterations (one seed; ``vmap`` adds a seed axis)."""

    model: WorldModel
    opt_state: Any
    env_state: Any
    obs: Array  # [E, H, W, C]
    ep_return: Array  # [E] return so far of each env's current episode
    key: Array  # raw uint32 key data, so checkpoints are plain arrays
    iteration: Array  # []
    replay: dict  # the last ``replay_rollouts`` unrolled rollouts, each leaf [R, N, ...]
    labels: dict  # overseer labels (``label_capacity`` rows, ``count`` used); {} without


class Trajectory(eqx.Module):
    """One rollout, time-major: ``[T, E, ...]``."""

    obs: Array
    action: Array
    reward: Array
    done: Array
    weights: Array  # search action weights [T, E, A]
    value: Array  # search root value [T, E]


def scan_modules(f, carry, xs=None, length=None):
    """``lax.scan`` whose carry may hold Equinox modules (non-array leaves stay static)."""
    dynamic, static = eqx.partition(carry, eqx.is_array)

    def body(dyn, x):
        new, y = f(eqx.combine(dyn, static), x)
        return eqx.filter(new, eqx.is_array), y

    dynamic, ys = jax.lax.scan(body, dynamic, xs, length=length)
    return eqx.combine(dynamic, static), ys


def make_optimizer(config: MuZeroConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate)
    )


def make_layer(model: WorldModel, config: MuZeroConfig, **overrides: Any) -> MCTSLayer:
    """The acting search of a run (``overrides`` e.g. ``gumbel_scale=0`` for evaluation)."""
    kwargs = dict(policy=config.policy, discount=config.discount,
                  rescale_values=config.rescale_values)
    kwargs.update(overrides)
    return MCTSLayer(model, config.num_simulations, **kwargs)


def init_state(seed_key: Array, config: MuZeroConfig, env: Environment, params: EnvParams):
    """A fresh ``TrainState`` for one seed."""
    k_model, k_env, k_run = jax.random.split(seed_key, 3)
    obs, env_state = jax.vmap(lambda k: env.reset(k, params))(
        jax.random.split(k_env, config.num_envs)
    )
    model = WorldModel.create(
        obs.shape[1:],
        env.num_actions(params),
        key=k_model,
        num_members=config.num_members,
        latent_dim=config.latent_dim,
        encoder=config.encoder,
        width=config.width,
        latent_activation=config.latent_activation,
    )
    if config.reward_prior_scale > 0:
        model = with_reward_prior(model, config.reward_prior_scale,
                                  jax.random.fold_in(k_model, 1),
                                  where=lambda m: m.reward_model.head)
    opt_state = make_optimizer(config).init(eqx.filter(model, eqx.is_inexact_array))
    n, k, a = config.num_envs * config.rollout_len, config.unroll, env.num_actions(params)
    r = config.replay_rollouts
    replay = {  # empty slots are fully masked, so they add nothing to the losses
        "obs": jnp.zeros((r, n) + obs.shape[1:], obs.dtype),
        "action": jnp.zeros((r, n, k), jnp.int32),
        "reward": jnp.zeros((r, n, k)),
        "value": jnp.zeros((r, n, k + 1)),
        "weights": jnp.full((r, n, k + 1, a), 1.0 / a),
        "mask": jnp.zeros((r, n, k + 1), bool),
    }
    labels = empty_labels(config.label_capacity, obs[0])
    return TrainState(
        model=model,
        opt_state=opt_state,
        env_state=env_state,
        obs=obs,
        ep_return=jnp.zeros(config.num_envs),
        key=jax.random.key_data(k_run),
        iteration=jnp.int32(0),
        replay=replay,
        labels=labels,
    )


def empty_labels(capacity: int, obs: Array) -> dict[str, Array]:
    """An empty overseer-label buffer of ``capacity`` rows for observations like ``obs``
    (one observation); ``{}`` (no buffer) when ``capacity`` is 0. Filled by :func:`add_labels`."""
    if capacity == 0:
        return {}
    return {
        "obs": jnp.zeros((capacity, *obs.shape), obs.dtype),
        "action": jnp.zeros(capacity, jnp.int32),
        "reward": jnp.zeros(capacity),
        "count": jnp.int32(0),
    }


def add_labels(state: TrainState, obs: Array, action: Array, reward: Array) -> TrainState:
    """``state`` with ``n`` overseer labels appended to its label buffer (one seed).

    ``obs`` ``[n, ...]`` (the agent's observations), ``action`` ``[n]``, ``reward``
    ``[n]`` (the true reward). Rows past ``label_capacity`` are dropped, so a
    caller sizes the buffer for every label it will buy.
    """
    if not state.labels:
        raise ValueError("add_labels: this state has no label buffer; build the learner with "
                         "label_capacity > 0")
    buf = state.labels
    n = obs.shape[0]
    if obs.shape[1:] != buf["obs"].shape[1:] or jnp.shape(action) != (n,) or jnp.shape(
        reward
    ) != (n,):
        raise ValueError(
            f"add_labels: expected obs [n, {', '.join(map(str, buf['obs'].shape[1:]))}], action "
            f"[n], reward [n]; got {tuple(obs.shape)}, {jnp.shape(action)}, {jnp.shape(reward)}"
        )
    idx = buf["count"] + jnp.arange(n)
    put = lambda x, v: x.at[idx].set(v.astype(x.dtype), mode="drop")  # noqa: E731
    labels = {
        "obs": put(buf["obs"], obs),
        "action": put(buf["action"], action),
        "reward": put(buf["reward"], reward),
        "count": jnp.minimum(buf["count"] + n, buf["obs"].shape[0]).astype(jnp.int32),
    }
    return eqx.tree_at(lambda s: s.labels, state, labels)


# ---------------------------------------------------------------------- acting


def rollout(state: TrainState, key: Array, config, env, params):
    """Act ``rollout_len`` steps with the search; returns the new state pieces and a Trajectory."""

    def one_step(carry, k):
        env_state, obs, ep_return, finished_sum, finished_n = carry
        k_plan, k_step = jax.random.split(k)
        out = make_layer(state.model, config)(obs, k_plan)
        keys = jax.random.split(k_step, config.num_envs)
        nxt_obs, env_state, reward, term, trunc, _ = jax.vmap(
            lambda kk, s, a: env.step(kk, s, a, params)
        )(keys, env_state, out.action)
        done = term | trunc
        ep_return = ep_return + reward
        finished_sum = finished_sum + jnp.sum(jnp.where(done, ep_return, 0.0))
        finished_n = finished_n + jnp.sum(done)
        ep_return = jnp.where(done, 0.0, ep_return)
        step = (obs, out.action, reward, done, out.action_weights, out.value)
        return (env_state, nxt_obs, ep_return, finished_sum, finished_n), step

    init = (state.env_state, state.obs, state.ep_return, jnp.float32(0), jnp.int32(0))
    carry, steps = jax.lax.scan(one_step, init, jax.random.split(key, config.rollout_len))
    return carry, Trajectory(*steps)


# ---------------------------------------------------------------------- targets


def n_step_targets(reward, done, value, bootstrap, n: int, discount: float):
    """n-step value targets ``[T, E]``, cut at episode ends, bootstrapped from search values.

    ``value[t]`` is the search value at ``obs[t]``; ``bootstrap`` ``[E]`` the value after
    the last step. Past the rollout's end the return is bootstrapped from ``bootstrap``.
    """
    t_len = reward.shape[0]
    disc = discount * (1.0 - done.astype(jnp.float32))
    pad = lambda x, fill: jnp.concatenate([x, jnp.broadcast_to(fill, (n,) + x.shape[1:])])
    r_pad = pad(reward, 0.0)
    d_pad = pad(disc, 1.0)
    v_pad = pad(jnp.concatenate([value[1:], bootstrap[None]]), bootstrap)
    target = jnp.zeros_like(reward)
    scale = jnp.ones_like(reward)
    for i in range(n):
        target = target + scale * r_pad[i : i + t_len]
        scale = scale * d_pad[i : i + t_len]
    # value after n steps: v_pad[t + n - 1] is the value at obs[t + n]
    return target + scale * v_pad[n - 1 : n - 1 + t_len]


def unroll_batch(traj: Trajectory, targets: Array, k: int):
    """Per start position ``(t, e)``: the next ``k`` actions/rewards and ``k+1`` targets, masked.

    Returns a dict of arrays with a flat leading axis ``N = T*E``.
    """
    t_len, e = traj.reward.shape
    num_actions = traj.weights.shape[-1]
    pad = lambda x, fill: jnp.concatenate([x, jnp.full((k,) + x.shape[1:], fill, x.dtype)])
    action = pad(traj.action, 0)
    reward = pad(traj.reward, 0.0)
    done = pad(traj.done, True)
    value = pad(targets, 0.0)
    weights = pad(traj.weights, 1.0 / num_actions)
    valid = pad(jnp.ones((t_len, e), bool), False)
    idx = jnp.arange(t_len)[:, None] + jnp.arange(k + 1)[None]  # [T, k+1]
    take = lambda x: jnp.swapaxes(x[idx], 1, 2)  # [T, E, k+1, ...]
    not_done = (~done[idx][:, :-1]).astype(jnp.int32)  # [T, k, E]
    alive = jnp.concatenate([jnp.ones((t_len, 1, e), jnp.int32), jnp.cumprod(not_done, axis=1)], 1)
    alive = alive.astype(bool)  # alive[t, i, e]: no episode end in t .. t+i-1
    mask = take(valid) & jnp.swapaxes(alive, 1, 2)  # [T, E, k+1]
    flat = lambda x: x.reshape((t_len * e,) + x.shape[2:])
    return {
        "obs": flat(traj.obs),
        "action": flat(take(action)[:, :, :k]),
        "reward": flat(take(reward)[:, :, :k]),
        "value": flat(take(value)),
        "weights": flat(take(weights)),
        "mask": flat(mask),
    }


# ---------------------------------------------------------------------- learning


def sample_loss(model: WorldModel, sample: dict, member_mask: Array, config: MuZeroConfig):
    """Reward, value and policy losses of one unrolled sample (masked means over steps)."""
    k = config.unroll
    latent = model.represent(sample["obs"])
    loss_r = loss_v = loss_p = entropy = 0.0
    for i in range(k + 1):
        m = sample["mask"][i]
        head_in = jax.lax.stop_gradient(latent) if config.detach_policy_value else latent
        v = model.value(head_in)
        logp = jax.nn.log_softmax(model.policy_logits(head_in))
        loss_v += m * (v - sample["value"][i]) ** 2
        loss_p += m * -jnp.sum(sample["weights"][i] * logp)
        entropy += m * -jnp.sum(jnp.exp(logp) * logp)
        if i < k:
            preds = model.reward_preds(latent, sample["action"][i])
            err = (preds - sample["reward"][i]) ** 2
            loss_r += m * jnp.sum(member_mask * err) / jnp.maximum(member_mask.sum(), 1.0)
            latent = model.dynamics(latent, sample["action"][i])
            # MuZero halves the gradient entering each dynamics step
            latent = 0.5 * latent + 0.5 * jax.lax.stop_gradient(latent)
    return loss_r / k, loss_v / (k + 1), loss_p / (k + 1), entropy / (k + 1)


def extra_losses(model: WorldModel, extra: dict, config: MuZeroConfig):
    """The optional reward-head losses of one minibatch: ``(weighted total, {name: loss})``.

    ``extra["labels"]``: overseer labels (``obs``, ``action``, ``reward``, ``valid``);
    every member fits them (no bootstrap mask: a bought label should settle the
    question for the whole ensemble). ``extra["unlabelled"]``: ``obs``/``action``
    of unlabelled transitions for :func:`~innerlab.reward_models.diverse.diversity_loss`.
    """
    total, out = 0.0, {}
    if "labels" in extra:
        lab = extra["labels"]
        preds = jax.vmap(model.reward_model)(lab["obs"], lab["action"])  # [B, K]
        loss = jnp.where(lab["valid"], jnp.mean((preds - lab["reward"][:, None]) ** 2), 0.0)
        out["loss_labels"] = loss
        total = total + config.label_coef * loss
    if "unlabelled" in extra:
        u = extra["unlabelled"]
        preds = jax.vmap(model.reward_model)(u["obs"], u["action"])
        loss = diversity_loss(preds, config.diversity_cap)
        out["loss_diversity"] = loss
        total = total + config.diversity_coef * loss
    return total, out


def batch_loss(model, batch, member_masks, config, extra=None):
    """reward_coef * reward + value_coef * value + policy - entropy_coef * prior entropy,
    plus :func:`extra_losses` (labels, diversity) where ``extra`` holds them.

    The entropy bonus keeps the prior's logits finite: Gumbel search targets
    are a softmax of prior logits plus Q-terms, so without it a prior that
    grows confident reproduces its own argmax as target and stops exploring.
    """
    lr, lv, lp, ent = jax.vmap(lambda s, mm: sample_loss(model, s, mm, config))(batch, member_masks)
    lr, lv, lp, ent = lr.mean(), lv.mean(), lp.mean(), ent.mean()
    total = config.reward_coef * lr + config.value_coef * lv + lp - config.entropy_coef * ent
    more, aux = extra_losses(model, extra or {}, config)
    return total + more, {
        "loss_reward": lr,
        "loss_value": lv,
        "loss_policy": lp,
        "policy_entropy": ent,
        **aux,
    }


def learn(model, opt_state, data: dict, key: Array, config: MuZeroConfig,
          labels: dict | None = None, unlabelled: dict | None = None):
    """``num_epochs`` x ``num_minibatches`` Adam steps on ``data`` (``[M, ...]`` leaves).

    Each epoch draws one rollout's worth (``num_envs * rollout_len``) of samples
    from ``data`` without replacement: with ``M`` equal to one rollout that is a
    shuffled pass, with a replay of several rollouts a random subset of it.
    ``labels`` (the state's label buffer) adds ``label_batch`` labels drawn with
    replacement to every minibatch; ``unlabelled`` (leaves
    ``[num_epochs, num_minibatches, diversity_batch, ...]``) the diversity inputs.
    """
    optimizer = make_optimizer(config)
    n = config.num_envs * config.rollout_len
    total = data["obs"].shape[0]
    grad_fn = eqx.filter_value_and_grad(batch_loss, has_aux=True)

    def minibatch(carry, mb):
        model, opt_state = carry
        batch, member_masks, extra = mb
        (_, aux), grads = grad_fn(model, batch, member_masks, config, extra)
        updates, opt_state = optimizer.update(
            grads, opt_state, eqx.filter(model, eqx.is_inexact_array)
        )
        model = eqx.apply_updates(model, updates)
        return (model, opt_state), aux

    def epoch(carry, xs):
        k, extra = xs
        k_perm, k_boot = jax.random.split(k)
        perm = jax.random.permutation(k_perm, total)[:n]
        shaped = lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:])
        batches = jax.tree.map(shaped, data)
        masks = jax.random.bernoulli(k_boot, config.bootstrap_prob, (n, config.num_members))
        if labels:  # its own key, so the other streams are those of a run without labels
            rows = jax.random.randint(jax.random.fold_in(k, 1),
                                      (config.num_minibatches, config.label_batch), 0,
                                      jnp.maximum(labels["count"], 1))
            valid = jnp.broadcast_to(labels["count"] > 0, (config.num_minibatches,))
            extra = {**extra, "labels": {"obs": labels["obs"][rows],
                                         "action": labels["action"][rows],
                                         "reward": labels["reward"][rows], "valid": valid}}
        return scan_modules(minibatch, carry,
                            (batches, shaped(masks.astype(jnp.float32)), extra))

    per_epoch = {} if unlabelled is None else {"unlabelled": unlabelled}
    (model, opt_state), aux = scan_modules(
        epoch, (model, opt_state), (jax.random.split(key, config.num_epochs), per_epoch)
    )
    return model, opt_state, jax.tree.map(jnp.mean, aux)


def train_iteration(state: TrainState, config: MuZeroConfig, env, params):
    """One act-then-learn iteration (pure; jit/vmap-able)."""
    key = jax.random.wrap_key_data(state.key)
    key, k_act, k_boot, k_learn = jax.random.split(key, 4)
    (env_state, obs, ep_return, fin_sum, fin_n), traj = rollout(state, k_act, config, env, params)
    bootstrap = jax.vmap(state.model.value)(jax.vmap(state.model.represent)(obs))
    targets = n_step_targets(
        traj.reward, traj.done, traj.value, bootstrap, config.n_step, config.discount
    )
    data = unroll_batch(traj, targets, config.unroll)
    slot = state.iteration % config.replay_rollouts
    replay = jax.tree.map(lambda buf, x: buf.at[slot].set(x), state.replay, data)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), replay)
    unlabelled = None
    if config.diversity_coef > 0:  # its own key, so the other streams are unchanged
        unlabelled = unlabelled_batches(jax.random.fold_in(k_learn, 1), config, env, params)
    model, opt_state, aux = learn(state.model, state.opt_state, flat, k_learn, config,
                                  state.labels, unlabelled)
    metrics = dict(aux)
    metrics["episode_return"] = fin_sum / jnp.maximum(fin_n, 1)
    metrics["episodes"] = fin_n
    metrics["reward_per_step"] = traj.reward.mean()
    new = TrainState(
        model=model,
        opt_state=opt_state,
        env_state=env_state,
        obs=obs,
        ep_return=ep_return,
        key=jax.random.key_data(key),
        iteration=state.iteration + 1,
        replay=replay,
        labels=state.labels,
    )
    return new, metrics


def unlabelled_batches(key: Array, config: MuZeroConfig, env, params) -> dict:
    """``env.sample_state`` observations with uniform actions for the diversity loss:
    leaves ``[num_epochs, num_minibatches, diversity_batch, ...]`` (no labels read)."""
    shape = (config.num_epochs, config.num_minibatches, config.diversity_batch)
    n = shape[0] * shape[1] * shape[2]
    k_state, k_action = jax.random.split(key)
    states = jax.vmap(lambda k: env.sample_state(k, params))(jax.random.split(k_state, n))
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    action = jax.random.randint(k_action, (n,), 0, env.num_actions(params), dtype=jnp.int32)
    return {"obs": obs.reshape(shape + obs.shape[1:]), "action": action.reshape(shape)}
