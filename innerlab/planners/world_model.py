"""``WorldModel``: a learned model to plan in, built around a ``RewardModel``.

MuZero-style: a representation maps an observation to a latent, a latent
dynamics function steps the latent under an action, and heads read the latent
for the reward, the state value and a policy prior. The representation is the
reward model's encoder and the reward is the reward model's ensemble heads, so
the planner plans with *exactly* the objective the reward model learned, and
whatever the adversary finds in the reward model's latent space is a state the
planner can reach in imagination.

The reward used for planning is an aggregation of the K ensemble predictions
chosen by the caller (``"mean"``, ``"min"``, ``"max"`` or ``"pessimistic"`` =
mean - k*std, see ``innerlab.reward_models.aggregate``), so optimistic, neutral
and cautious planners can be compared on one learned model.

All methods take a single example (Equinox style); batch with ``jax.vmap``.
Latents have the reward model's ``latent_shape``: ``[D]`` with a shared encoder,
``[K, D]`` with one encoder per member.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from innerlab.reward_models import AGGREGATIONS, RewardModel, aggregate
from innerlab.reward_models.model import latent_activation_fn


def check_aggregation(how: str, k: float = 1.0) -> None:
    """Reject unknown aggregation names and negative ``k`` with a clear message."""
    if how not in AGGREGATIONS:
        raise ValueError(f"argument 'how' must be one of {AGGREGATIONS}, got {how!r}")
    if how == "pessimistic" and k < 0:
        raise ValueError(f"argument 'k' of the pessimistic aggregation must be >= 0, got {k}")


class WorldModel(eqx.Module):
    """Representation, latent dynamics, ensemble reward, value and policy heads.

    Args:
        reward_model: the ``RewardModel`` whose encoder is the representation and
            whose K heads are the reward.
        width: hidden width of the dynamics, value and policy MLPs.
        depth: number of hidden layers of those MLPs.
        key: PRNG key for the new (dynamics, value, policy) parameters.
    """

    reward_model: RewardModel
    transition: eqx.nn.MLP
    value_head: eqx.nn.MLP
    policy_head: eqx.nn.MLP
    num_actions: int = eqx.field(static=True)
    latent_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, reward_model: RewardModel, width: int = 64, depth: int = 2, *, key: Array):
        if width < 1 or depth < 0:
            raise ValueError(
                f"arguments 'width' >= 1 and 'depth' >= 0 expected, got {width}, {depth}"
            )
        self.reward_model = reward_model
        self.num_actions = reward_model.num_actions
        self.latent_shape = tuple(reward_model.latent_shape)
        size = math.prod(self.latent_shape)
        k_dyn, k_val, k_pol = jax.random.split(key, 3)
        self.transition = eqx.nn.MLP(size + self.num_actions, size, width, depth, key=k_dyn)
        self.value_head = eqx.nn.MLP(size, "scalar", width, depth, key=k_val)
        self.policy_head = eqx.nn.MLP(size, self.num_actions, width, depth, key=k_pol)

    @classmethod
    def create(
        cls,
        obs_shape: tuple[int, ...],
        num_actions: int,
        *,
        key: Array,
        num_members: int = 5,
        latent_dim: int = 64,
        shared_encoder: bool = True,
        encoder: str = "conv",
        width: int = 64,
        depth: int = 2,
        latent_activation: str = "relu",
    ) -> WorldModel:
        """A fresh world model with a fresh ``RewardModel`` of the given shape.

        ``latent_activation`` is the reward model's (see ``RewardModel``); the
        dynamics apply the same activation to imagined latents. ``"minmax"`` is
        MuZero's latent scaling.
        """
        k_rm, k_wm = jax.random.split(key)
        rm = RewardModel(
            obs_shape,
            num_actions,
            num_members=num_members,
            latent_dim=latent_dim,
            shared_encoder=shared_encoder,
            encoder=encoder,
            width=width,
            key=k_rm,
            latent_activation=latent_activation,
        )
        return cls(rm, width=width, depth=depth, key=k_wm)

    # ------------------------------------------------------------------ checks
    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.reward_model.obs_shape

    @property
    def num_members(self) -> int:
        return self.reward_model.num_members

    def check_latent(self, latent: Array) -> Array:
        """Reject latents of the wrong shape (at trace time)."""
        if tuple(latent.shape) != self.latent_shape:
            raise ValueError(
                f"argument 'latent' must have shape {self.latent_shape} (one example; vmap for "
                f"batches), got {tuple(latent.shape)}"
            )
        return latent

    def check_action(self, action: Array) -> Array:
        """Reject non-scalar or non-integer actions (at trace time)."""
        action = jnp.asarray(action)
        if action.shape != () or not jnp.issubdtype(action.dtype, jnp.integer):
            raise ValueError(
                f"argument 'action' must be an integer scalar in [0, {self.num_actions}), got "
                f"shape {action.shape} dtype {action.dtype}"
            )
        return action

    # ------------------------------------------------------------------ model
    def represent(self, obs: Float[Array, "H W C"]) -> Float[Array, "*latent"]:
        """The latent of an observation (the reward model's encoding)."""
        return self.reward_model.encode(obs)

    def dynamics(
        self, latent: Float[Array, "*latent"], action: Int[Array, ""]
    ) -> Float[Array, "*latent"]:
        """The latent after taking ``action``: a residual MLP step.

        The step's output goes through the reward model's latent activation
        (ReLU by default, MuZero's min-max scaling with ``"minmax"``), so
        imagined latents stay in the space the reward heads were trained on.
        """
        latent = self.check_latent(latent)
        action = self.check_action(action)
        flat = latent.reshape(-1)
        x = jnp.concatenate([flat, jax.nn.one_hot(action, self.num_actions, dtype=flat.dtype)])
        nxt = (flat + self.transition(x)).reshape(self.latent_shape)
        return latent_activation_fn(self.reward_model.latent_activation, nxt)

    def reward_preds(
        self, latent: Float[Array, "*latent"], action: Int[Array, ""]
    ) -> Float[Array, " K"]:
        """Each ensemble member's reward for taking ``action`` in ``latent``."""
        return self.reward_model.heads(self.check_latent(latent), self.check_action(action))

    def step(
        self, latent: Float[Array, "*latent"], action: Int[Array, ""]
    ) -> tuple[Float[Array, "*latent"], Float[Array, " K"]]:
        """``(next_latent, reward_preds [K])`` for taking ``action`` in ``latent``."""
        return self.dynamics(latent, action), self.reward_preds(latent, action)

    def reward(
        self,
        latent: Float[Array, "*latent"],
        action: Int[Array, ""],
        how: str = "mean",
        k: float = 1.0,
    ) -> Float[Array, ""]:
        """The aggregated ensemble reward used for planning (see module docstring)."""
        check_aggregation(how, k)
        return aggregate(self.reward_preds(latent, action), how, k)

    def value(self, latent: Float[Array, "*latent"]) -> Float[Array, ""]:
        """The value head's estimate of the discounted return from ``latent``."""
        return self.value_head(self.check_latent(latent).reshape(-1))

    def policy_logits(self, latent: Float[Array, "*latent"]) -> Float[Array, " A"]:
        """The policy head's action logits (the search prior)."""
        return self.policy_head(self.check_latent(latent).reshape(-1))
