"""Training the Imagination-based Planner as in Pascanu, Li et al. (2017).

Every iteration each of ``num_envs`` parallel envs takes one real step chosen
by the IBP (after its imagination loop), and one loss is minimised with one
gradient step; its terms touch disjoint parameters:

- **model**: supervised on the real transitions just collected
  (``model.loss``: next state/latent and reward);
- **controller and memory**: backpropagation through the unrolled
  real-and-imagined loop of the *task loss* of the proposed real action. The
  environment is not differentiable, so the task loss is scored by the
  (frozen) model and critic: ``-(r_hat + gamma * V(next_hat))``; on
  Spaceship (one thrust per episode) that is the model's predicted
  ``fuel + miss^2``. Discrete actions use the straight-through Gumbel-softmax
  estimator (see ``innerlab.planners.ibp``);
  A small entropy bonus (``controller_entropy``) on the discrete controller's
  policy keeps it from collapsing while the model is still poor;
- **manager**: REINFORCE with a batch-mean baseline and an entropy bonus on
  ``-(task loss + tau * imagination steps)``, the task loss being the *real*
  one: ``-(r + gamma * V(next))``;
- **critic** ``V``: TD(0) on real transitions (only matters for episodes
  longer than one step).

**Reward heads for robust-reward experiments** (grid envs, learned imagination;
every option off by default, and then training is exactly the plain one, PRNG
streams included): the learned ``LatentImagination``'s world model already
has an ensemble of ``num_members`` reward heads on its latent, fitted to the
true rewards of the agent's own transitions and aggregated (``aggregation``)
as the planner's reward in imagination. ``reward_coef`` weights their loss
against the dynamics loss; ``bootstrap_prob`` < 1 gives each member a
Bernoulli mask over the transitions (a bootstrap, so members stay distinct);
``label_capacity`` adds a buffer of overseer labels (filled with
:func:`add_labels`) that every gradient step also fits with every head;
``reward_prior_scale`` adds randomised prior functions and ``diversity_coef``
a push apart on unlabelled ``env.sample_state`` transitions
(``innerlab.reward_models.diverse``), as for the MuZero learner
(``innerlab.planners.muzero``, whose label and diversity losses these reuse).

Continuous actions are explored with Gaussian noise (``action_noise``) added
to the executed thrust (then clipped to the action box), so the model sees
more than the controller's own actions. :func:`train_step` is one pure
iteration of one seed (its state holds every PRNG key); ``innerlab.agents``
(kind ``"ibp"``) runs it: jitted ``lax.scan`` chunks, seeds ``vmap``-ped,
``metrics.jsonl``, checkpoints, resume and evaluation, like every agent.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from innerlab.envs import make
from innerlab.planners.ibp import (
    IBP,
    LatentImagination,
    Transitions,
    check_config,
    make_imagination,
    stop_gradient_tree,
)
from innerlab.planners.muzero import add_labels, empty_labels, extra_losses
from innerlab.reward_models.data import sample_state_batch
from innerlab.reward_models.diverse import with_reward_prior

__all__ = ["IBPTrainConfig", "TrainState", "add_labels", "init_ibp", "init_state", "train_step"]

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class IBPTrainConfig:
    """Everything that defines an IBP training run (JSON-friendly).

    ``imagination``: ``"learned"`` (the env's default learned model) or
    ``"true"`` (the env's own dynamics; ablation). ``tau``: cost per
    imagination step in the manager's objective. ``num_members``,
    ``aggregation``, ``k``: the reward ensemble and how planning aggregates it;
    ``latent_dim``, ``encoder``: the ``WorldModel``'s, for grid envs;
    ``egocentric``: grid envs observed through ``envs.Egocentric`` (a flat MLP
    model learns their reward only from that view). ``reward_coef``,
    ``bootstrap_prob``, ``label_*``, ``reward_prior_scale``, ``diversity_*``: the
    reward heads' options (module docstring; grid envs with learned imagination only).
    """

    env: str = "Spaceship-v0"
    env_overrides: tuple[tuple[str, Any], ...] = ()
    imagination: str = "learned"
    strategy: str = "tree"
    max_imaginations: int = 3
    tau: float = 0.0
    entropy_coef: float = 0.01
    controller_entropy: float = 0.03
    num_envs: int = 64
    iterations: int = 1000
    lr: float = 1e-3
    model_lr: float = 3e-3
    gamma: float = 0.95
    action_noise: float = 0.1
    value_coef: float = 0.5
    hidden: int = 64
    width: int = 64
    num_members: int = 1
    latent_dim: int = 32
    encoder: str = "conv"
    aggregation: str = "mean"
    k: float = 1.0
    temperature: float = 1.0
    log_every: int = 50
    egocentric: bool = False  # grid envs seen through ``envs.Egocentric`` (agent-centred)
    reward_coef: float = 1.0  # weight of the reward heads' loss in the model loss
    bootstrap_prob: float = 1.0  # each head fits each real transition with this prob (1: all)
    label_capacity: int = 0  # overseer labels the state can hold (0: no label buffer)
    label_coef: float = 1.0  # weight of the labelled-reward loss
    label_batch: int = 32  # labels drawn (with replacement) per gradient step
    reward_prior_scale: float = 0.0  # randomised prior functions on the reward heads (0: none)
    diversity_coef: float = 0.0  # weight of the diversity loss on unlabelled inputs (0: none)
    diversity_batch: int = 32  # unlabelled sample_state transitions per gradient step
    diversity_cap: float = 1.0  # per-pair squared difference beyond which no more push

    def __post_init__(self):
        check_config(self.strategy, self.max_imaginations)
        for name, low in (("label_capacity", 0), ("label_batch", 1), ("diversity_batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"config {name!r} must be an int >= {low}, got {value!r}")
        for name in ("reward_coef", "label_coef", "reward_prior_scale", "diversity_coef",
                     "diversity_cap"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"config {name!r} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < self.bootstrap_prob <= 1:
            raise ValueError(f"config 'bootstrap_prob' must be in (0, 1], got "
                             f"{self.bootstrap_prob!r}")
        if self.diversity_coef > 0 and (self.num_members < 2 or not self.diversity_cap > 0):
            raise ValueError(
                "config 'diversity_coef' > 0 needs num_members >= 2 and diversity_cap > 0, got "
                f"num_members={self.num_members}, diversity_cap={self.diversity_cap}"
            )
        if self.reward_heads_options and self.imagination != "learned":
            raise ValueError(
                f"config options {self.reward_heads_options} train the learned model's reward "
                f"heads; imagination={self.imagination!r} has none"
            )
        if self.imagination not in ("learned", "true"):
            raise ValueError(
                f"config 'imagination' must be 'learned' or 'true', got {self.imagination!r}"
            )
        for name in ("num_envs", "iterations", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"config {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("tau", "entropy_coef", "controller_entropy", "action_noise", "value_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"config {name!r} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"config 'gamma' must be in [0, 1], got {self.gamma}")
        if self.iterations % self.log_every:
            raise ValueError(
                f"config 'iterations' ({self.iterations}) must be a multiple of 'log_every' "
                f"({self.log_every})"
            )

    @property
    def reward_heads_options(self) -> list[str]:
        """The reward-head options set away from their defaults (empty: the plain IBP)."""
        fields = {f.name: f.default for f in dataclasses.fields(self)}
        names = ("reward_coef", "bootstrap_prob", "label_capacity", "reward_prior_scale",
                 "diversity_coef")
        return [n for n in names if getattr(self, n) != fields[n]]

    def env_and_params(self):
        return make(self.env, egocentric=self.egocentric, **dict(self.env_overrides))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env_overrides"] = dict(self.env_overrides)
        return d


class TrainState(eqx.Module):
    """One seed's training state (the agents driver ``vmap``-s it over seeds)."""

    ibp: IBP
    opt_state: Any
    env_state: Any
    obs: Array
    context: tuple[Array, Array]
    episode_return: Array
    key: Array  # raw key data, so checkpoints serialise plainly
    labels: dict = eqx.field(default_factory=dict)  # overseer labels; {} without a buffer


def make_optimizer(config: IBPTrainConfig, ibp: IBP) -> optax.GradientTransformation:
    """Adam for the model and for the agent (manager, controller, memory, critic), each with
    its own learning rate and gradient clipping, so neither starves the other."""

    def labels(params):  # a function: optax would mistake a (callable) IBP for one
        tree = jax.tree.map(lambda _: "agent", params)
        return eqx.tree_at(lambda m: m.model, tree,
                           replace_fn=lambda sub: jax.tree.map(lambda _: "model", sub))

    adam = lambda lr: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    return optax.multi_transform({"agent": adam(config.lr), "model": adam(config.model_lr)},
                                 labels)


def init_ibp(config: IBPTrainConfig, key: Array) -> IBP:
    """A fresh IBP (and imagination model) for ``config``'s env."""
    env, params = config.env_and_params()
    k_model, k_ibp = jax.random.split(key)
    model = make_imagination(
        env, params, config.imagination, key=k_model, width=config.width,
        num_members=config.num_members, how=config.aggregation, k=config.k,
        latent_dim=config.latent_dim, encoder=config.encoder,
    )
    if config.reward_heads_options and not isinstance(model, LatentImagination):
        raise ValueError(
            f"config options {config.reward_heads_options} need a grid env (a learned "
            f"LatentImagination and its reward heads); {config.env} gives a "
            f"{type(model).__name__}"
        )
    if config.reward_prior_scale > 0:
        model = with_reward_prior(model, config.reward_prior_scale,
                                  jax.random.fold_in(k_model, 1),
                                  where=lambda m: m.world_model.reward_model.head)
    return IBP(model, config.strategy, config.max_imaginations, config.hidden, config.width,
               config.temperature, key=k_ibp)


def init_state(config: IBPTrainConfig, key: Array) -> TrainState:
    """A fresh training state for one seed."""
    env, params = config.env_and_params()
    k_ibp, k_env, k_next = jax.random.split(key, 3)
    ibp = init_ibp(config, k_ibp)
    env_keys = jax.random.split(k_env, config.num_envs)
    obs, env_state = jax.vmap(env.reset, (0, None))(env_keys, params)
    opt_state = make_optimizer(config, ibp).init(eqx.filter(ibp, eqx.is_array))
    ctx = jax.vmap(lambda _: ibp.empty_context())(jnp.arange(config.num_envs))
    labels = empty_labels(config.label_capacity, obs[0])
    return TrainState(ibp, opt_state, env_state, obs, ctx, jnp.zeros(config.num_envs),
                      jax.random.key_data(k_next), labels)


def model_loss(config: IBPTrainConfig, model: LatentImagination, batch: Transitions,
               labels: dict, key: Array, env, params) -> tuple[Array, dict[str, Array]]:
    """The learned model's loss with the reward-head options (module docstring): the
    (weighted, optionally bootstrapped) reward loss, the dynamics loss and
    ``muzero.extra_losses`` (overseer labels fitted by every head; the diversity push on
    ``diversity_batch`` unlabelled ``sample_state`` transitions). ``(loss, {name: term})``."""
    k_boot, k_lab, k_div = jax.random.split(key, 3)
    mask = None
    if config.bootstrap_prob < 1:
        mask = jax.random.bernoulli(k_boot, config.bootstrap_prob,
                                    (batch.reward.shape[0], config.num_members))
        mask = mask.astype(jnp.float32)
    reward_loss, dyn_loss = model.loss_terms(batch, mask)
    extra: dict[str, Any] = {}
    if labels:
        rows = jax.random.randint(k_lab, (config.label_batch,), 0,
                                  jnp.maximum(labels["count"], 1))
        extra["labels"] = {"obs": labels["obs"][rows], "action": labels["action"][rows],
                           "reward": labels["reward"][rows], "valid": labels["count"] > 0}
    if config.diversity_coef > 0:  # the labels sample_state_batch computes are not read
        unlabelled = sample_state_batch(env, params, k_div, config.diversity_batch)[0]
        extra["unlabelled"] = {"obs": unlabelled.obs, "action": unlabelled.action}
    more, aux = extra_losses(model.world_model, extra, config)
    return config.reward_coef * reward_loss + dyn_loss + more, {"loss_reward": reward_loss,
                                                                 "loss_dynamics": dyn_loss, **aux}


def _where(mask, a, b):
    """Per-env select on pytrees with a leading env axis."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(-1, *([1] * (x.ndim - 1))), x, y), a, b)


def train_step(config: IBPTrainConfig, ts: TrainState) -> tuple[TrainState, dict[str, Array]]:
    """One real step in every env and one gradient step (single seed)."""
    env, params = config.env_and_params()
    optimizer = make_optimizer(config, ts.ibp)
    n = config.num_envs
    key = jax.random.wrap_key_data(ts.key)
    key, k_plan, k_env, k_reset, k_noise, k_model = jax.random.split(key, 6)
    sg = jax.lax.stop_gradient

    def loss_fn(ibp: IBP):
        frozen = eqx.tree_at(lambda m: (m.model, m.critic), ibp,
                             (stop_gradient_tree(ibp.model), stop_gradient_tree(ibp.critic)))
        trace = jax.vmap(frozen.plan)(ts.obs, jax.random.split(k_plan, n), ts.env_state, ts.context)
        if ibp.discrete:
            exec_vec = sg(trace.action_vec)
        else:
            noise = config.action_noise * jax.random.normal(k_noise, trace.action_vec.shape)
            exec_vec = jnp.clip(sg(trace.action_vec) + noise, -1.0, 1.0)
        action = ibp.env_action(exec_vec)
        next_obs, next_state, reward, term, trunc, _ = jax.vmap(
            env.step_env, (0, 0, 0, None)
        )(jax.random.split(k_env, n), ts.env_state, action, params)
        live = 1.0 - term.astype(jnp.float32)
        # controller + memory: task loss of the proposed action, scored by the frozen model
        nxt_hat, r_hat = jax.vmap(frozen.model.step)(
            trace.carry, trace.action_vec, jax.random.split(k_model, n)
        )
        v_hat = jax.vmap(lambda c: frozen.critic(frozen.model.features(c)))(nxt_hat)
        loss_controller = -jnp.mean(r_hat + config.gamma * live * v_hat)
        if ibp.discrete:  # keep the discrete policy from collapsing before the model is good
            logp_a = jax.nn.log_softmax(trace.logits)
            policy_entropy = -jnp.mean(jnp.sum(jnp.exp(logp_a) * logp_a, axis=-1))
            loss_controller = loss_controller - config.controller_entropy * policy_entropy
        # manager: REINFORCE on the real outcome minus the imagination cost
        next_feat = jax.vmap(lambda o, s: ibp.model.features(ibp.model.initial(o, s)))(
            next_obs, next_state
        )
        v_next = sg(jax.vmap(ibp.critic)(sg(next_feat)))
        target = reward + config.gamma * live * v_next
        ret = target - config.tau * trace.imaginations
        advantage = sg(ret - jnp.mean(ret))
        loss_manager = -jnp.mean(advantage * trace.logp) - config.entropy_coef * jnp.mean(
            trace.entropy
        )
        # critic: TD(0)
        value = jax.vmap(ibp.critic)(sg(trace.real_features))
        loss_value = jnp.mean((value - sg(target)) ** 2)
        # model: supervised on the real transitions
        batch = Transitions(ts.obs, exec_vec, reward, next_obs, term)
        heads_aux: dict[str, Array] = {}
        if config.reward_heads_options:  # its own key, so the other streams are unchanged
            loss_model, heads_aux = model_loss(config, ibp.model, batch, ts.labels,
                                               jax.random.fold_in(k_model, 1), env, params)
        else:
            loss_model = ibp.model.loss(batch)
        total = loss_controller + loss_manager + config.value_coef * loss_value + loss_model
        # memory folds in the real step (no gradient across real steps)
        ctx = jax.vmap(frozen.remember)(trace.context, trace.real_features, exec_vec,
                                        next_feat, reward, jnp.ones(n))
        aux = dict(next_obs=next_obs, next_state=next_state, reward=reward, term=term,
                   trunc=trunc, context=sg(ctx), imaginations=trace.imaginations,
                   entropy=trace.entropy, loss_model=loss_model, loss_controller=loss_controller,
                   loss_value=loss_value, routes=trace.routes, heads=heads_aux)
        return total, aux

    (_, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(ts.ibp)
    updates, opt_state = optimizer.update(grads, ts.opt_state, eqx.filter(ts.ibp, eqx.is_array))
    ibp = eqx.apply_updates(ts.ibp, updates)

    done = aux["term"] | aux["trunc"]
    reset_keys = jax.random.split(k_reset, n)
    reset_obs, reset_state = jax.vmap(env.reset_env, (0, None))(reset_keys, params)
    ep_ret = ts.episode_return + aux["reward"]
    finished = jnp.sum(done)
    routes = aux["routes"]
    metrics = {
        "reward": jnp.mean(aux["reward"]),
        "episode_return": jnp.sum(jnp.where(done, ep_ret, 0.0)) / jnp.maximum(finished, 1),
        "episodes": finished.astype(jnp.float32),
        "imaginations": jnp.mean(aux["imaginations"].astype(jnp.float32)),
        "manager_entropy": jnp.mean(aux["entropy"]),
        "imagine_from_real": jnp.mean(jnp.sum(routes == 1, -1).astype(jnp.float32)),
        "loss_model": aux["loss_model"],
        "loss_controller": aux["loss_controller"],
        "loss_value": aux["loss_value"],
        **aux["heads"],
    }
    empty = jax.vmap(lambda _: ibp.empty_context())(jnp.arange(n))
    new = TrainState(
        ibp=ibp,
        opt_state=opt_state,
        env_state=_where(done, reset_state, aux["next_state"]),
        obs=_where(done, reset_obs, aux["next_obs"]),
        context=_where(done, empty, aux["context"]),
        episode_return=jnp.where(done, 0.0, ep_ret),
        key=jax.random.key_data(key),
        labels=ts.labels,
    )
    return new, metrics
