"""The Imagination-based Planner (IBP) of Pascanu, Li et al. (2017).

Paper: "Learning model-based planning from scratch".

Before each real action the IBP runs a short loop of *imagination steps*:

- the **manager** looks at the plan context and decides either to *act* or to
  imagine, and if it imagines, from which state: the real one, the last
  imagined one, or any imagined one. The three imagination strategies of the
  paper are masks on that choice (``STRATEGIES``): ``"1-step"`` always
  imagines from the real state, ``"n-step"`` always from the last imagined
  state (a chain), ``"tree"`` from any state imagined so far (a tree);
- the **controller** proposes an action for the chosen (real or imagined)
  state given the plan context;
- the **imagination** -- a learned model, or the environment's true dynamics
  for ablations -- predicts the next state and the reward of that action;
- the **memory**, an LSTM, folds the step (source state, action, predicted
  next state and reward) into the plan context.

When the manager acts, or after ``max_imaginations`` imagination steps, the
controller proposes the real action from the real state and the final
context. ``max_imaginations=0`` is the model-free baseline (the controller
acts on the real state with an empty context).

**Imagination models** share one interface so the same IBP runs on the
gridworlds and on the continuous ``Spaceship-v0``: ``initial(obs, state)``
gives a model carry, ``features(carry)`` the vector the networks read,
``step(carry, action_vec, key) -> (next_carry, reward)`` one imagined step and
``loss(batch)`` the supervised loss on real transitions. Actions are vectors:
a one-hot of length ``A`` for discrete actions, a thrust in ``[-1, 1]^d`` for
continuous ones. Provided: ``LatentImagination`` (the planners'
``WorldModel``: its latent dynamics and its reward-model ensemble, aggregated
as the caller chooses), ``VectorImagination`` (a small residual MLP model of
vector observations, e.g. Spaceship's) and ``TrueImagination`` (the env's own
dynamics and reward).

**Discrete actions.** The controller samples a straight-through
Gumbel-softmax action: the forward pass uses a one-hot sample (exact up to
float rounding) (so the
model is fed real actions and the executed action is that sample), the
backward pass uses the gradient of the tempered softmax. We use it because
the controller and memory are trained by backpropagating the task loss
through the unrolled loop, which needs a path from the loss to the action
logits; REINFORCE for the controller would waste the model's gradients, and
the plain relaxed (soft) sample would feed the model mixtures of actions it
was never trained on. The bias of the straight-through estimator is the
price; with few actions (4 moves) it is small in practice.

A learned model imagines a discrete action by stepping every action and
mixing the results with the one-hot vector: exact in the forward pass, and
it gives the straight-through gradient a path to the action logits through
both the reward and the next latent.

All methods take a single example; ``IBP.__call__`` is the batched layer
``(obs [B, ...], key) -> PlannerOutput`` like ``MCTSLayer``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from innerlab.planners.output import PlannerOutput
from innerlab.planners.world_model import WorldModel, check_aggregation
from innerlab.protocols import ImaginationModel, StateFromObs, require
from innerlab.reward_models import aggregate

STRATEGIES = ("1-step", "n-step", "tree")


def stop_gradient_tree(tree: Any) -> Any:
    """``jax.lax.stop_gradient`` on every array leaf of a module (other leaves pass through)."""
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


class Transitions(NamedTuple):
    """Real transitions for model fitting: ``obs [N, ...]``, ``action [N, a]`` (one-hot or
    thrust), ``reward [N]``, ``next_obs [N, ...]`` (the true successor, before any reset),
    ``terminated [N]``."""

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    terminated: Array


def _check_action_vec(action_vec: Array, size: int) -> None:
    if action_vec.shape != (size,):
        raise ValueError(
            f"argument 'action_vec' must have shape ({size},) (a one-hot or a continuous "
            f"action; one example), got {tuple(action_vec.shape)}"
        )


# --------------------------------------------------------------------------- imagination models


class LatentImagination(eqx.Module):
    """Imagine in a ``WorldModel``'s latent space; reward = ensemble aggregated by ``how``/``k``.

    Discrete actions only (the world model's). ``loss`` fits, on real
    transitions, every ensemble member's reward and the latent dynamics
    (predicted next latent vs. the encoding of the real next observation, the
    target held fixed).
    """

    world_model: WorldModel
    how: str = eqx.field(static=True, default="mean")
    k: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        check_aggregation(self.how, self.k)

    discrete = True

    @property
    def action_size(self) -> int:
        return self.world_model.num_actions

    @property
    def feature_size(self) -> int:
        return math.prod(self.world_model.latent_shape)

    def initial(self, obs: Array, state: Any = None) -> Array:
        return self.world_model.represent(obs)

    def features(self, carry: Array) -> Float[Array, " F"]:
        return carry.reshape(-1)

    def step(self, carry: Array, action_vec: Array, key: Array) -> tuple[Array, Array]:
        _check_action_vec(action_vec, self.action_size)
        actions = jnp.arange(self.action_size)
        nexts, preds = jax.vmap(lambda a: self.world_model.step(carry, a))(actions)
        rewards = aggregate(preds, self.how, self.k)
        next_latent = jnp.tensordot(action_vec, nexts, axes=1)
        return next_latent, action_vec @ rewards

    @property
    def reward_model(self) -> Any:
        """The reward-head ensemble imagination plans with (the world model's ``RewardModel``:
        a ``LatentEnsemble`` and ``TrainableEnsemble``, so the adversary can search it)."""
        return self.world_model.reward_model

    def aggregated(self, how: str, k: float = 1.0) -> LatentImagination:
        """The same model imagining with the heads aggregated by ``how``/``k`` (e.g. a
        pessimistic planner on a trained model; nothing is retrained)."""
        return LatentImagination(self.world_model, how=how, k=k)

    def loss_terms(self, batch: Transitions, member_mask: Array | None = None
                   ) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """``(reward loss, dynamics loss)`` on real transitions; :meth:`loss` is their sum.

        ``member_mask [N, K]`` (optional, a bootstrap): member k fits transition n only
        where the mask is 1, the reward loss being the masked mean; without it every
        member fits every transition.
        """
        wm = self.world_model
        action = jnp.argmax(batch.action, axis=-1)
        latent = jax.vmap(wm.represent)(batch.obs)
        target = jax.lax.stop_gradient(jax.vmap(wm.represent)(batch.next_obs))
        preds = jax.vmap(wm.reward_preds)(latent, action)
        pred_next = jax.vmap(wm.dynamics)(latent, action)
        live = (1.0 - batch.terminated.astype(jnp.float32)).reshape(-1, *([1] * (target.ndim - 1)))
        err = (preds - batch.reward[:, None]) ** 2
        if member_mask is None:
            reward_loss = jnp.mean(err)
        else:
            reward_loss = jnp.sum(member_mask * err) / jnp.maximum(jnp.sum(member_mask), 1.0)
        dyn_loss = jnp.mean(live * (pred_next - target) ** 2)
        return reward_loss, dyn_loss

    def loss(self, batch: Transitions) -> Float[Array, ""]:
        reward_loss, dyn_loss = self.loss_terms(batch)
        return reward_loss + dyn_loss


class VectorImagination(eqx.Module):
    """A small model of vector observations: residual MLP dynamics and a K-member reward ensemble.

    ``next = obs + dynamics([obs, action])``; each member's reward reads
    ``[obs, action, predicted next obs]``; the planning reward is their
    aggregation by ``how``/``k``. Works for continuous (``discrete=False``,
    ``action_size`` = action dimension) and discrete (one-hot) actions.
    """

    dynamics: eqx.nn.MLP
    reward_heads: eqx.nn.MLP  # K stacked heads
    obs_dim: int = eqx.field(static=True)
    action_size: int = eqx.field(static=True)
    discrete: bool = eqx.field(static=True)
    num_members: int = eqx.field(static=True)
    how: str = eqx.field(static=True)
    k: float = eqx.field(static=True)

    def __init__(
        self,
        obs_dim: int,
        action_size: int,
        *,
        discrete: bool = False,
        width: int = 64,
        depth: int = 2,
        num_members: int = 1,
        how: str = "mean",
        k: float = 1.0,
        key: Array,
    ):
        if obs_dim < 1 or action_size < 1 or num_members < 1:
            raise ValueError(
                f"arguments 'obs_dim', 'action_size', 'num_members' must be >= 1, got "
                f"{obs_dim}, {action_size}, {num_members}"
            )
        check_aggregation(how, k)
        self.obs_dim, self.action_size, self.discrete = obs_dim, action_size, discrete
        self.num_members, self.how, self.k = num_members, how, k
        k_dyn, k_rew = jax.random.split(key)
        self.dynamics = eqx.nn.MLP(obs_dim + action_size, obs_dim, width, depth, key=k_dyn)
        self.reward_heads = eqx.filter_vmap(
            lambda kk: eqx.nn.MLP(2 * obs_dim + action_size, "scalar", width, depth, key=kk)
        )(jax.random.split(k_rew, num_members))

    @property
    def feature_size(self) -> int:
        return self.obs_dim

    def initial(self, obs: Array, state: Any = None) -> Array:
        obs = jnp.asarray(obs)
        if obs.shape != (self.obs_dim,):
            raise ValueError(f"argument 'obs' must have shape ({self.obs_dim},), got {obs.shape}")
        if not jnp.issubdtype(obs.dtype, jnp.floating):
            raise TypeError(f"argument 'obs' must be a float array, got dtype {obs.dtype}")
        return obs

    def features(self, carry: Array) -> Float[Array, " F"]:
        return carry

    def predict(self, obs: Array, action_vec: Array) -> tuple[Array, Float[Array, " K"]]:
        """``(next_obs, reward_preds [K])``."""
        _check_action_vec(action_vec, self.action_size)
        x = jnp.concatenate([obs, action_vec])
        nxt = obs + self.dynamics(x)
        inp = jnp.concatenate([x, nxt])
        preds = eqx.filter_vmap(lambda h: h(inp))(self.reward_heads)
        return nxt, preds

    def step(self, carry: Array, action_vec: Array, key: Array) -> tuple[Array, Array]:
        nxt, preds = self.predict(carry, action_vec)
        return nxt, aggregate(preds, self.how, self.k)

    def loss(self, batch: Transitions) -> Float[Array, ""]:
        nxt, preds = jax.vmap(self.predict)(batch.obs, batch.action)
        return jnp.mean((nxt - batch.next_obs) ** 2) + jnp.mean(
            (preds - batch.reward[:, None]) ** 2
        )


class TrueImagination(eqx.Module):
    """Imagine with the environment's own dynamics and reward (ablations; nothing to learn).

    The carry is the env state: pass ``state`` to the planner, or use an env
    with ``state_from_obs`` (e.g. Spaceship) so observations suffice. Discrete
    actions are stepped for every action and the one-hot picks the result.
    """

    env: Any = eqx.field(static=True)
    params: Any = eqx.field(static=True)
    discrete: bool = eqx.field(static=True)
    action_size: int = eqx.field(static=True)
    feature_size: int = eqx.field(static=True)

    def __init__(self, env, params):
        self.env, self.params = env, params
        space = env.action_space(params)
        self.discrete = not space.shape
        self.action_size = int(space.n) if self.discrete else int(space.shape[0])
        self.feature_size = int(math.prod(env.observation_space(params).shape))

    def initial(self, obs: Array, state: Any = None) -> Any:
        if state is not None:
            return state
        if isinstance(self.env, StateFromObs):
            return self.env.state_from_obs(obs, self.params)
        raise ValueError(
            f"TrueImagination on {self.env.name} needs argument 'state' (the env state): its "
            "observations do not determine the state"
        )

    def features(self, carry: Any) -> Float[Array, " F"]:
        return self.env.observe(carry, self.params).reshape(-1).astype(jnp.float32)

    def step(self, carry: Any, action_vec: Array, key: Array) -> tuple[Any, Array]:
        _check_action_vec(action_vec, self.action_size)
        if not self.discrete:
            _, nxt, reward, *_ = self.env.step_env(key, carry, action_vec, self.params)
            return nxt, reward
        step_one = lambda a: self.env.step_env(key, carry, a, self.params)
        _, nexts, rewards, *_ = jax.vmap(step_one)(jnp.arange(self.action_size))
        index = jnp.argmax(action_vec)
        nxt = jax.tree.map(lambda x: x[index], nexts)
        return nxt, action_vec @ rewards

    def loss(self, batch: Transitions) -> Float[Array, ""]:
        return jnp.zeros(())


# --------------------------------------------------------------------------- networks


class Manager(eqx.Module):
    """Scores "act" and "imagine from node j" for every node (0 = real state)."""

    act_head: eqx.nn.MLP
    node_head: eqx.nn.MLP

    def __init__(self, feature_size: int, hidden: int, width: int, *, key: Array):
        k_act, k_node = jax.random.split(key)
        self.act_head = eqx.nn.MLP(hidden + feature_size + 1, "scalar", width, 2, key=k_act)
        self.node_head = eqx.nn.MLP(hidden + 2 * feature_size + 2, "scalar", width, 2, key=k_node)

    def __call__(self, h, real_feat, node_feats, progress) -> Float[Array, " 1+N"]:
        n = node_feats.shape[0]
        act = self.act_head(jnp.concatenate([h, real_feat, progress[None]]))
        depth = jnp.arange(n, dtype=jnp.float32) / max(n - 1, 1)
        node_in = lambda f, d: jnp.concatenate([h, real_feat, f, d[None], progress[None]])
        nodes = jax.vmap(lambda f, d: self.node_head(node_in(f, d)))(node_feats, depth)
        return jnp.concatenate([act[None], nodes])


class Controller(eqx.Module):
    """Proposes an action vector for a (real or imagined) state given the real state and context."""

    mlp: eqx.nn.MLP

    def __init__(self, feature_size: int, hidden: int, action_size: int, width: int, *, key):
        self.mlp = eqx.nn.MLP(2 * feature_size + hidden, action_size, width, 2, key=key)

    def __call__(self, real_feat, src_feat, h) -> Array:
        return self.mlp(jnp.concatenate([real_feat, src_feat, h]))


def straight_through_gumbel(key: Array, logits: Array, temperature: float) -> Array:
    """A one-hot sample whose gradient is the tempered Gumbel-softmax's (see module docstring)."""
    gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
    soft = jax.nn.softmax((logits + gumbel) / temperature)
    hard = jax.nn.one_hot(jnp.argmax(soft), logits.shape[-1], dtype=soft.dtype)
    return hard + soft - jax.lax.stop_gradient(soft)


class PlanTrace(NamedTuple):
    """What one planning call did (single example).

    ``action_vec [a]`` (one-hot or thrust; differentiable), ``logits [a]``
    (controller's real-step output), ``logp []`` and ``entropy []`` of the
    manager's decisions, ``imaginations []``, ``routes [n_max]`` (-1 unused,
    0 act, j+1 imagine from node j), ``imagined_reward [n_max]``, ``context``
    (LSTM ``(h, c)``), ``real_features [F]``, ``carry`` (the model's real carry).
    """

    action_vec: Array
    logits: Array
    logp: Array
    entropy: Array
    imaginations: Array
    routes: Array
    imagined_reward: Array
    context: tuple[Array, Array]
    real_features: Array
    carry: Any


class IBP(eqx.Module):
    """The Imagination-based Planner as an Equinox layer (see module docstring).

    Args:
        model: an imagination model (``LatentImagination``, ``VectorImagination``,
            ``TrueImagination`` or anything with their interface).
        strategy: ``"1-step"``, ``"n-step"`` or ``"tree"``.
        max_imaginations: the imagination budget per real step (>= 0; 0 = model-free).
        hidden: LSTM context size.
        width: hidden width of manager, controller and critic MLPs.
        temperature: Gumbel-softmax temperature (discrete actions).
        key: PRNG key.
    """

    model: Any
    manager: Manager
    controller: Controller
    memory: eqx.nn.LSTMCell
    critic: eqx.nn.MLP
    strategy: str = eqx.field(static=True)
    max_imaginations: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    def __init__(
        self,
        model: Any,
        strategy: str = "tree",
        max_imaginations: int = 3,
        hidden: int = 64,
        width: int = 64,
        temperature: float = 1.0,
        *,
        key: Array,
    ):
        check_config(strategy, max_imaginations)
        if hidden < 1 or width < 1:
            raise ValueError(f"arguments 'hidden' and 'width' must be >= 1, got {hidden}, {width}")
        if not temperature > 0:
            raise ValueError(f"argument 'temperature' must be > 0, got {temperature}")
        require(model, ImaginationModel, consumer="planners.IBP", argument="model")
        self.model = model
        self.strategy, self.max_imaginations = strategy, max_imaginations
        self.hidden, self.temperature = hidden, temperature
        f, a = model.feature_size, model.action_size
        k_man, k_con, k_mem, k_cri = jax.random.split(key, 4)
        self.manager = Manager(f, hidden, width, key=k_man)
        self.controller = Controller(f, hidden, a, width, key=k_con)
        self.memory = eqx.nn.LSTMCell(2 * f + a + 2, hidden, key=k_mem)
        self.critic = eqx.nn.MLP(f, "scalar", width, 2, key=k_cri)

    @property
    def discrete(self) -> bool:
        return bool(self.model.discrete)

    @property
    def action_size(self) -> int:
        return int(self.model.action_size)

    def empty_context(self) -> tuple[Array, Array]:
        """The LSTM context at the start of an episode."""
        return jnp.zeros(self.hidden), jnp.zeros(self.hidden)

    def propose(self, key, real_feat, src_feat, h) -> tuple[Array, Array]:
        """Controller output ``(action_vec, logits)``: ST-Gumbel one-hot or tanh thrust."""
        out = self.controller(real_feat, src_feat, h)
        if self.discrete:
            return straight_through_gumbel(key, out, self.temperature), out
        return jnp.tanh(out), out

    def remember(self, context, src_feat, action_vec, next_feat, reward, from_real):
        """Fold one (real or imagined) step into the context."""
        x = jnp.concatenate(
            [src_feat, action_vec, next_feat, reward[None],
             jnp.asarray(from_real, jnp.float32)[None]]
        )
        return self.memory(x, context)

    def route_mask(self, i: Array) -> Array:
        """Which choices are allowed at imagination step ``i``: ``[1 + n_max + 1]`` (act, nodes)."""
        nodes = jnp.arange(self.max_imaginations + 1)
        if self.strategy == "1-step":
            allowed = nodes == 0
        elif self.strategy == "n-step":
            allowed = nodes == i
        else:
            allowed = nodes <= i
        return jnp.concatenate([jnp.ones(1, bool), allowed])

    def plan(self, obs: Array, key: Array, state: Any = None, context=None) -> PlanTrace:
        """Imagine, then propose the real action, for one observation."""
        n_max = self.max_imaginations
        context = self.empty_context() if context is None else context
        carry0 = self.model.initial(obs, state)
        real_feat = self.model.features(carry0)
        f_size = real_feat.shape[0]
        nodes = jax.tree.map(
            lambda x: jnp.zeros((n_max + 1,) + x.shape, x.dtype).at[0].set(x), carry0
        )
        node_feats = jnp.zeros((n_max + 1, f_size)).at[0].set(real_feat)
        sg = jax.lax.stop_gradient
        k_loop, k_act = jax.random.split(key)

        def imagine(loop, inputs):
            i, k = inputs
            ctx, nodes, node_feats, done, logp, ent, count = loop
            k_route, k_prop, k_step = jax.random.split(k, 3)
            logits = self.manager(sg(ctx[0]), sg(real_feat), sg(node_feats), i / max(n_max, 1))
            logits = jnp.where(self.route_mask(i), logits, -1e9)
            route = jax.random.categorical(k_route, logits)
            logprobs = jax.nn.log_softmax(logits)
            probs = jnp.exp(logprobs)
            entropy = -jnp.sum(jnp.where(probs > 0, probs * logprobs, 0.0))
            src = jnp.maximum(route - 1, 0)
            src_carry = jax.tree.map(lambda x: x[src], nodes)
            src_feat = node_feats[src]
            action_vec, _ = self.propose(k_prop, real_feat, src_feat, ctx[0])
            nxt, reward = self.model.step(src_carry, action_vec, k_step)
            nxt_feat = self.model.features(nxt)
            new_ctx = self.remember(ctx, src_feat, action_vec, nxt_feat, reward, src == 0)
            imagining = ~done & (route > 0)
            keep = lambda new, old: jnp.where(imagining, new, old)
            ctx = jax.tree.map(keep, new_ctx, ctx)
            nodes = jax.tree.map(lambda b, x: b.at[i + 1].set(keep(x, b[i + 1])), nodes, nxt)
            node_feats = node_feats.at[i + 1].set(keep(nxt_feat, node_feats[i + 1]))
            logp = logp + jnp.where(done, 0.0, logprobs[route])
            ent = ent + jnp.where(done, 0.0, entropy)
            out = (jnp.where(done, -1, route), jnp.where(imagining, reward, 0.0))
            return (ctx, nodes, node_feats, done | (route == 0), logp, ent,
                    count + imagining), out

        init = (context, nodes, node_feats, jnp.bool_(False), jnp.zeros(()), jnp.zeros(()),
                jnp.zeros((), jnp.int32))
        steps = (jnp.arange(n_max), jax.random.split(k_loop, n_max))
        (ctx, _, _, _, logp, ent, count), (routes, rewards) = jax.lax.scan(
            imagine, init, steps, length=n_max
        )
        action_vec, logits = self.propose(k_act, real_feat, real_feat, ctx[0])
        return PlanTrace(action_vec, logits, logp, ent, count, routes.astype(jnp.int32),
                         rewards, ctx, real_feat, carry0)

    def env_action(self, action_vec: Array) -> Array:
        """The action an env takes: the sampled index (discrete) or the thrust (continuous)."""
        if self.discrete:
            return jnp.argmax(action_vec, axis=-1).astype(jnp.int32)
        return action_vec

    def with_budget(self, max_imaginations: int) -> IBP:
        """The same trained planner with another imagination budget per real step (every
        network reads any number of imagined nodes, so nothing is retrained)."""
        check_config(self.strategy, max_imaginations)
        new = copy.copy(self)
        object.__setattr__(new, "max_imaginations", max_imaginations)  # a static field
        return new

    def value(self, features: Array) -> Array:
        """The critic's estimate of the discounted return from a state's features."""
        return self.critic(features)

    def __call__(self, obs: Array, key: Array, state: Any = None) -> PlannerOutput:
        """Batched planning ``obs [B, ...] -> PlannerOutput`` (like ``MCTSLayer``).

        Discrete: ``action [B] int32``, ``action_weights [B, A]`` the
        controller's softmax. Continuous: ``action [B, d] float32`` (the
        thrust) and ``action_weights [B, 1]`` = 1 (all weight on the one
        proposed action). Stats: ``imaginations [B]``, ``routes [B, n_max]``,
        ``imagined_reward [B, n_max]``, ``manager_entropy [B]``.
        """
        batch = obs.shape[0]
        keys = jax.random.split(key, batch)
        if state is None:
            trace = jax.vmap(lambda o, k: self.plan(o, k))(obs, keys)
        else:
            trace = jax.vmap(lambda o, k, s: self.plan(o, k, s))(obs, keys, state)
        if self.discrete:
            weights = jax.nn.softmax(trace.logits, axis=-1)
        else:
            weights = jnp.ones((batch, 1))
        return PlannerOutput(
            action=self.env_action(trace.action_vec),
            action_weights=weights,
            value=jax.vmap(self.value)(trace.real_features),
            stats={
                "imaginations": trace.imaginations,
                "routes": trace.routes,
                "imagined_reward": trace.imagined_reward,
                "manager_entropy": trace.entropy,
            },
        )


def check_config(strategy: str, max_imaginations: int) -> None:
    """Reject unknown strategies and negative or non-integer budgets."""
    if strategy not in STRATEGIES:
        raise ValueError(f"argument 'strategy' must be one of {STRATEGIES}, got {strategy!r}")
    if isinstance(max_imaginations, bool) or not isinstance(max_imaginations, int):
        raise TypeError(f"argument 'max_imaginations' must be an int, got {max_imaginations!r}")
    if max_imaginations < 0:
        raise ValueError(f"argument 'max_imaginations' must be >= 0, got {max_imaginations}")


def make_imagination(env, params, kind: str = "learned", *, key: Array, width: int = 64,
                     num_members: int = 1, how: str = "mean", k: float = 1.0,
                     latent_dim: int = 32, encoder: str = "conv") -> Any:
    """The default imagination model for an env.

    ``kind="true"``: ``TrueImagination``. ``kind="learned"``: a
    ``VectorImagination`` for vector observations (e.g. Spaceship), a
    ``LatentImagination`` over a fresh ``WorldModel`` for grids (``encoder="conv"`` by
    default: a flat MLP learns the grids' local reward rule far more slowly).
    """
    if kind == "true":
        return TrueImagination(env, params)
    if kind != "learned":
        raise ValueError(f"argument 'kind' must be 'learned' or 'true', got {kind!r}")
    obs_shape = tuple(env.observation_space(params).shape)
    space = env.action_space(params)
    if len(obs_shape) == 1:
        discrete = not space.shape
        size = int(space.n) if discrete else int(space.shape[0])
        return VectorImagination(obs_shape[0], size, discrete=discrete, width=width,
                                 num_members=num_members, how=how, k=k, key=key)
    wm = WorldModel.create(obs_shape, int(space.n), key=key, num_members=max(num_members, 1),
                           latent_dim=latent_dim, encoder=encoder, width=width)
    return LatentImagination(wm, how=how, k=k)
