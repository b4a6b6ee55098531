"""``TreeLayer``: a differentiable, fully expanded depth-d tree search over a world model.

mctx's search cannot be differentiated in reverse mode (its loops are
``while_loop``s and its choices discrete), so a planner whose gradients must
reach the model needs another search. ``TreeLayer`` expands *every* action
sequence of length ``depth`` in the learned model and backs values up with a
soft maximum, as TreeQN/ATreeC do (Farquhar et al. 2018):

    Q_d(z, a) = r(z, a) + discount * V_{d-1}(z')
    V_0(z)    = value(z)
    V_d(z)    = (1 - lam) * value(z) + lam * sum_a softmax(Q_d(z, .) / temperature)_a Q_d(z, a)

Every step is smooth in the model's parameters, so ``jax.grad`` of anything
computed from the output (its ``value`` or ``action_weights``) flows through
planning into the dynamics, reward and value heads. Cost grows as ``A**depth``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from innerlab.planners.output import PlannerOutput
from innerlab.planners.world_model import WorldModel, check_aggregation


class TreeLayer(eqx.Module):
    """Soft-backup tree search over a ``WorldModel``: ``layer(obs [B, H, W, C], key)``.

    Args:
        world_model: the learned model to plan in.
        depth: tree depth d >= 1 (``A**d`` leaves per example).
        discount: per-step discount.
        temperature: softmax temperature of the backup and of ``action_weights`` (> 0).
        lam: TreeQN's mixing weight between the value head and the backed-up value.
        how, k: the ensemble aggregation for the planning reward.
        sample: draw the action from ``action_weights`` with ``key`` (else argmax, key unused).
    """

    world_model: WorldModel
    depth: int = eqx.field(static=True)
    discount: float = eqx.field(static=True)
    temperature: float = eqx.field(static=True)
    lam: float = eqx.field(static=True)
    how: str = eqx.field(static=True)
    k: float = eqx.field(static=True)
    sample: bool = eqx.field(static=True)

    def __init__(
        self,
        world_model: WorldModel,
        depth: int = 2,
        *,
        discount: float = 0.97,
        temperature: float = 1.0,
        lam: float = 0.8,
        how: str = "mean",
        k: float = 1.0,
        sample: bool = False,
    ):
        if not isinstance(world_model, WorldModel):
            raise ValueError(
                f"argument 'world_model' must be a WorldModel, got {type(world_model).__name__}"
            )
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"argument 'depth' must be an int >= 1, got {depth!r}")
        if temperature <= 0:
            raise ValueError(f"argument 'temperature' must be > 0, got {temperature}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"argument 'lam' must be in [0, 1], got {lam}")
        if not 0.0 <= discount <= 1.0:
            raise ValueError(f"argument 'discount' must be in [0, 1], got {discount}")
        check_aggregation(how, k)
        self.world_model = world_model
        self.depth = depth
        self.discount = float(discount)
        self.temperature = float(temperature)
        self.lam = float(lam)
        self.how = how
        self.k = float(k)
        self.sample = sample

    def _soft_max(self, q: Float[Array, " A"]) -> Float[Array, ""]:
        return jnp.sum(jax.nn.softmax(q / self.temperature) * q)

    def qvalues(self, latent: Array, depth: int) -> Float[Array, " A"]:
        """Soft-backed-up Q-values ``[A]`` of one latent, looking ``depth`` steps ahead."""
        wm = self.world_model
        actions = jnp.arange(wm.num_actions)
        rewards = jax.vmap(lambda a: wm.reward(latent, a, self.how, self.k))(actions)
        nxt = jax.vmap(lambda a: wm.dynamics(latent, a))(actions)
        if depth == 1:
            v_next = jax.vmap(wm.value)(nxt)
        else:
            v_next = jax.vmap(lambda z: self.state_value(z, depth - 1))(nxt)
        return rewards + self.discount * v_next

    def state_value(self, latent: Array, depth: int) -> Float[Array, ""]:
        """TreeQN's mixed value of a latent with a ``depth``-step soft lookahead."""
        backed = self._soft_max(self.qvalues(latent, depth))
        return (1.0 - self.lam) * self.world_model.value(latent) + self.lam * backed

    def __call__(self, obs: Float[Array, "B H W C"], key: PRNGKeyArray) -> PlannerOutput:
        """Plan from observations; stats: ``qvalues`` ``[B, A]``, ``raw_value`` ``[B]``."""
        obs_shape = tuple(self.world_model.obs_shape)
        shape = tuple(getattr(obs, "shape", ()))
        if len(shape) != len(obs_shape) + 1 or shape[1:] != obs_shape:
            raise ValueError(
                f"argument 'obs' must have shape [B, {', '.join(map(str, obs_shape))}] "
                f"(a batch of observations), got {shape}"
            )
        latent = jax.vmap(self.world_model.represent)(obs)
        q = jax.vmap(lambda z: self.qvalues(z, self.depth))(latent)
        raw = jax.vmap(self.world_model.value)(latent)
        weights = jax.nn.softmax(q / self.temperature, axis=-1)
        value = (1.0 - self.lam) * raw + self.lam * jnp.sum(weights * q, axis=-1)
        if self.sample:
            action = jax.random.categorical(key, jnp.log(weights), axis=-1)
        else:
            action = jnp.argmax(q, axis=-1)
        stats = {"qvalues": q, "raw_value": raw}
        return PlannerOutput(action.astype(jnp.int32), weights, value, stats)
