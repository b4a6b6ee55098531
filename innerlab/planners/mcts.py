"""``MCTSLayer``: Monte Carlo tree search (mctx) as an Equinox layer.

"Optimization as a layer": the search runs inside the agent's forward pass,
``layer(obs, key) -> PlannerOutput``, batched and ``jit``/``vmap``-able, so
it can sit inside someone else's network. The search itself is mctx's
``gumbel_muzero_policy`` or ``muzero_policy``; this module only supplies the
root and recurrent functions.

Three planning modes separate "the model is wrong" from "the reward is wrong":

=========================  ==============  ============  =====================
mode                       dynamics        reward        layer input
=========================  ==============  ============  =====================
``dynamics="model"``       learned latent  learned       observations ``[B, H, W, C]``
``dynamics="env"``,        env's true      env's true    env states (batched pytree)
``reward="env"``           ``step_env``    reward
``dynamics="env"``,        env's true      learned,      env states (batched pytree)
``reward="model"``         ``step_env``    aggregated
=========================  ==============  ============  =====================

With true dynamics the env state is the search's embedding: the caller passes
env states rather than observations. The learned reward is the reward model's
K predictions aggregated with ``how`` (``mean``/``min``/``max``/``pessimistic``).
Leaf values and priors come from the world model's heads (``leaf_value="model"``,
``prior="model"``) or are zero / uniform, so a bare reward model can plan too.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import mctx
from jaxtyping import Array, PRNGKeyArray

from innerlab.envs.core import Environment, EnvParams
from innerlab.planners.output import PlannerOutput
from innerlab.planners.world_model import WorldModel, check_aggregation
from innerlab.reward_models import aggregate

POLICIES = ("gumbel", "muzero")
DYNAMICS = ("model", "env")
REWARDS = ("model", "env")
LEAF_VALUES = ("model", "zero")
PRIORS = ("model", "uniform")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"argument {name!r} must be one of {choices}, got {value!r}")


class MCTSLayer(eqx.Module):
    """Tree search over a learned model or the true env, as a layer.

    Args:
        world_model: a ``WorldModel``; with ``dynamics="env"`` it may also be any
            reward model ``(obs, action) -> [K]`` (then ``leaf_value="zero"`` and
            ``prior="uniform"``), or ``None`` with ``reward="env"``.
        num_simulations: simulations per search (>= 1).
        policy: ``"gumbel"`` (Gumbel MuZero, good with few simulations) or ``"muzero"``.
        env, env_params: the environment whose true dynamics to plan with
            (required for ``dynamics="env"``).
        dynamics: ``"model"`` or ``"env"``; defaults to ``"env"`` when ``env`` is given.
        reward: ``"model"`` (aggregated ensemble) or ``"env"`` (true reward; needs env dynamics).
        how, k: the ensemble aggregation for the planning reward.
        discount: per-step discount inside the search.
        leaf_value: ``"model"`` (value head) or ``"zero"``.
        prior: ``"model"`` (policy head) or ``"uniform"``.
        max_depth: optional cap on the search depth.
        max_num_considered_actions, gumbel_scale: Gumbel MuZero root settings
            (``gumbel_scale=0`` makes the search deterministic given the model).
        rescale_values: Gumbel MuZero: min-max rescale the root's completed Q-values to
            [0, 1] before they shift the prior (mctx's default). Where rewards are small
            and rare, the rescaling blows value noise up to the full shift and the policy
            target becomes one arbitrary action; ``False`` keeps the values' own scale
            (right when returns are of order 1).
        dirichlet_fraction, dirichlet_alpha, pb_c_init, pb_c_base, temperature:
            MuZero settings (see ``mctx.muzero_policy``).
    """

    world_model: Any
    num_simulations: int = eqx.field(static=True)
    policy: str = eqx.field(static=True)
    env: Environment | None = eqx.field(static=True)
    env_params: EnvParams | None = eqx.field(static=True)
    dynamics: str = eqx.field(static=True)
    reward: str = eqx.field(static=True)
    how: str = eqx.field(static=True)
    k: float = eqx.field(static=True)
    discount: float = eqx.field(static=True)
    leaf_value: str = eqx.field(static=True)
    prior: str = eqx.field(static=True)
    max_depth: int | None = eqx.field(static=True)
    max_num_considered_actions: int = eqx.field(static=True)
    gumbel_scale: float = eqx.field(static=True)
    rescale_values: bool = eqx.field(static=True)
    dirichlet_fraction: float = eqx.field(static=True)
    dirichlet_alpha: float = eqx.field(static=True)
    pb_c_init: float = eqx.field(static=True)
    pb_c_base: float = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    def __init__(
        self,
        world_model: Any,
        num_simulations: int,
        policy: str = "gumbel",
        *,
        env: Environment | None = None,
        env_params: EnvParams | None = None,
        dynamics: str | None = None,
        reward: str = "model",
        how: str = "mean",
        k: float = 1.0,
        discount: float = 0.97,
        leaf_value: str | None = None,
        prior: str | None = None,
        max_depth: int | None = None,
        max_num_considered_actions: int = 16,
        gumbel_scale: float = 1.0,
        rescale_values: bool = True,
        dirichlet_fraction: float = 0.25,
        dirichlet_alpha: float = 0.3,
        pb_c_init: float = 1.25,
        pb_c_base: float = 19652.0,
        temperature: float = 1.0,
    ):
        if not isinstance(num_simulations, int) or num_simulations < 1:
            raise ValueError(
                f"argument 'num_simulations' must be an int >= 1, got {num_simulations!r}"
            )
        _check_choice("policy", policy, POLICIES)
        dynamics = ("env" if env is not None else "model") if dynamics is None else dynamics
        _check_choice("dynamics", dynamics, DYNAMICS)
        _check_choice("reward", reward, REWARDS)
        check_aggregation(how, k)
        is_wm = isinstance(world_model, WorldModel)
        leaf_value = ("model" if is_wm else "zero") if leaf_value is None else leaf_value
        prior = ("model" if is_wm else "uniform") if prior is None else prior
        _check_choice("leaf_value", leaf_value, LEAF_VALUES)
        _check_choice("prior", prior, PRIORS)
        if dynamics == "env" and env is None:
            raise ValueError("argument 'env' is required when dynamics='env', got None")
        if dynamics == "model" and not is_wm:
            raise ValueError(
                "dynamics='model' needs argument 'world_model' to be a WorldModel, got "
                f"{type(world_model).__name__}"
            )
        if dynamics == "model" and reward == "env":
            raise ValueError("reward='env' needs the env's states: pass env= (dynamics='env')")
        if reward == "model" and world_model is None:
            raise ValueError("reward='model' needs argument 'world_model', got None")
        if (leaf_value == "model" or prior == "model") and not is_wm:
            raise ValueError(
                "leaf_value='model' / prior='model' need a WorldModel (value and policy heads); "
                f"got {type(world_model).__name__}: use leaf_value='zero', prior='uniform'"
            )
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"argument 'discount' must be in [0, 1], got {discount}")
        if not isinstance(rescale_values, bool):
            raise ValueError(f"argument 'rescale_values' must be a bool, got {rescale_values!r}")
        if max_depth is not None and max_depth < 1:
            raise ValueError(f"argument 'max_depth' must be None or >= 1, got {max_depth}")
        self.world_model = world_model
        self.num_simulations = num_simulations
        self.policy = policy
        self.env = env
        self.env_params = None if env is None else (env_params or env.default_params)
        self.dynamics = dynamics
        self.reward = reward
        self.how = how
        self.k = float(k)
        self.discount = float(discount)
        self.leaf_value = leaf_value
        self.prior = prior
        self.max_depth = max_depth
        self.max_num_considered_actions = max_num_considered_actions
        self.gumbel_scale = float(gumbel_scale)
        self.rescale_values = rescale_values
        self.dirichlet_fraction = float(dirichlet_fraction)
        self.dirichlet_alpha = float(dirichlet_alpha)
        self.pb_c_init = float(pb_c_init)
        self.pb_c_base = float(pb_c_base)
        self.temperature = float(temperature)

    # ------------------------------------------------------------------ helpers
    @property
    def num_actions(self) -> int:
        if self.env is not None:
            return self.env.num_actions(self.env_params)
        return self.world_model.num_actions

    def _reward_fn(self):
        """``(obs, action) -> [K]`` of the learned reward."""
        wm = self.world_model
        return wm.reward_model if isinstance(wm, WorldModel) else wm

    def _heads(self, latent: Array, batch: int) -> tuple[Array, Array]:
        """Leaf values ``[B]`` and prior logits ``[B, A]`` for a batch of latents."""
        if self.leaf_value == "model":
            value = jax.vmap(self.world_model.value)(latent)
        else:
            value = jnp.zeros((batch,), jnp.float32)
        if self.prior == "model":
            logits = jax.vmap(self.world_model.policy_logits)(latent)
        else:
            logits = jnp.zeros((batch, self.num_actions), jnp.float32)
        return value, logits

    def _needs_latent(self) -> bool:
        return self.leaf_value == "model" or self.prior == "model"

    def _observe(self, states: Any) -> Array:
        return jax.vmap(lambda s: self.env.observe(s, self.env_params))(states)

    def _check_input(self, x: Any) -> int:
        """Validate the layer input at trace time and return the batch size."""
        if self.dynamics == "model":
            obs_shape = tuple(self.world_model.obs_shape)
            shape = tuple(getattr(x, "shape", ()))
            if len(shape) != len(obs_shape) + 1 or shape[1:] != obs_shape:
                raise ValueError(
                    f"argument 'obs' must have shape [B, {', '.join(map(str, obs_shape))}] "
                    f"(a batch of observations), got {shape}"
                )
            return shape[0]
        like = jax.eval_shape(
            lambda key: self.env.sample_state(key, self.env_params), jax.random.key(0)
        )
        want = jax.tree.structure(like)
        got = jax.tree.structure(x)
        if want != got:
            raise ValueError(
                f"with dynamics='env' argument 'obs' must be a batch of {self.env.name} states "
                f"(structure {want}), got {got}"
            )
        leaves, ref = jax.tree.leaves(x), jax.tree.leaves(like)
        batch = leaves[0].shape[0] if leaves[0].ndim else None
        for leaf, r in zip(leaves, ref, strict=True):
            if batch is None or tuple(leaf.shape) != (batch, *r.shape):
                raise ValueError(
                    "with dynamics='env' every leaf of the state batch needs shape [B, *state "
                    f"shape]; got a leaf of shape {tuple(leaf.shape)} for state shape {r.shape}"
                )
        return batch

    # ------------------------------------------------------------------ search pieces
    def root(self, x: Any) -> mctx.RootFnOutput:
        """The search root for observations (model) or env states (env dynamics)."""
        batch = self._check_input(x)
        if self.dynamics == "model":
            latent = jax.vmap(self.world_model.represent)(x)
            value, logits = self._heads(latent, batch)
            return mctx.RootFnOutput(prior_logits=logits, value=value, embedding=latent)
        latent = None
        if self._needs_latent():
            latent = jax.vmap(self.world_model.represent)(self._observe(x))
        value, logits = self._heads(latent, batch)
        return mctx.RootFnOutput(prior_logits=logits, value=value, embedding=x)

    def recurrent_fn(self, params: Any, key: PRNGKeyArray, action: Array, embedding: Any):
        """mctx's recurrent function: one step of the chosen dynamics and reward."""
        del params  # the layer's own fields are the parameters
        batch = action.shape[0]
        if self.dynamics == "model":
            wm = self.world_model
            reward = jax.vmap(lambda z, a: wm.reward(z, a, self.how, self.k))(embedding, action)
            nxt = jax.vmap(wm.dynamics)(embedding, action)
            value, logits = self._heads(nxt, batch)
            discount = jnp.full((batch,), self.discount, jnp.float32)
            out = mctx.RecurrentFnOutput(
                reward=reward, discount=discount, prior_logits=logits, value=value
            )
            return out, nxt
        keys = jax.random.split(key, batch)
        step = jax.vmap(lambda k, s, a: self.env.step_env(k, s, a, self.env_params))
        _, nxt, env_reward, terminated, truncated, _ = step(keys, embedding, action)
        if self.reward == "env":
            reward = env_reward
        else:
            preds = jax.vmap(self._reward_fn())(self._observe(embedding), action)
            reward = aggregate(preds, self.how, self.k)
        done = terminated | truncated
        discount = jnp.where(done, 0.0, self.discount).astype(jnp.float32)
        latent = None
        if self._needs_latent():
            latent = jax.vmap(self.world_model.represent)(self._observe(nxt))
        value, logits = self._heads(latent, batch)
        out = mctx.RecurrentFnOutput(
            reward=reward.astype(jnp.float32), discount=discount, prior_logits=logits, value=value
        )
        return out, nxt

    def search(self, root: mctx.RootFnOutput, key: PRNGKeyArray) -> mctx.PolicyOutput:
        """Run mctx's search from ``root`` with this layer's settings."""
        if self.policy == "gumbel":
            return mctx.gumbel_muzero_policy(
                params=None,
                rng_key=key,
                root=root,
                recurrent_fn=self.recurrent_fn,
                num_simulations=self.num_simulations,
                max_depth=self.max_depth,
                max_num_considered_actions=self.max_num_considered_actions,
                gumbel_scale=self.gumbel_scale,
                qtransform=functools.partial(mctx.qtransform_completed_by_mix_value,
                                             rescale_values=self.rescale_values),
            )
        return mctx.muzero_policy(
            params=None,
            rng_key=key,
            root=root,
            recurrent_fn=self.recurrent_fn,
            num_simulations=self.num_simulations,
            max_depth=self.max_depth,
            dirichlet_fraction=self.dirichlet_fraction,
            dirichlet_alpha=self.dirichlet_alpha,
            pb_c_init=self.pb_c_init,
            pb_c_base=self.pb_c_base,
            temperature=self.temperature,
        )

    def __call__(self, obs: Any, key: PRNGKeyArray) -> PlannerOutput:
        """Plan from a batch: observations ``[B, H, W, C]``, or env states with env dynamics.

        Returns ``PlannerOutput`` with the search's action, its policy target
        (``action_weights``), the root's search value, and stats ``raw_value``
        (the value head before search), ``visit_counts`` and ``qvalues`` ``[B, A]``.
        """
        root = self.root(obs)
        out = self.search(root, key)
        summary = out.search_tree.summary()
        stats = {
            "raw_value": root.value,
            "visit_counts": summary.visit_counts,
            "qvalues": summary.qvalues,
        }
        return PlannerOutput(
            action=out.action.astype(jnp.int32),
            action_weights=out.action_weights,
            value=summary.value,
            stats=stats,
        )
