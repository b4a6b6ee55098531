"""Use a PyTorch reward model wherever an innerlab reward model's ``__call__`` is used.

``TorchRewardModel(module, obs_shape, num_actions, num_members)`` wraps any
``torch.nn.Module`` mapping a batch ``(obs [B, H, W, C] float32, action [B]
int64)`` to ``[B, K]`` predictions. It behaves like ``RewardModel`` for
prediction: ``model(obs, action) -> [K]`` on one example, and ``jax.vmap`` /
``jax.jit`` work (the call is a ``jax.pure_callback`` whose vmap rule hands
torch the whole batch at once, so a vmapped call is one torch forward pass).

What it supports, step by step (``innerlab.protocols`` names the contracts):

- yes: prediction as a ``RewardEnsemble`` / ``ActionTableEnsemble`` (``vmap``,
  ``jit``; one torch batch per vmapped call), evaluation and EPIC, the
  ``innerlab.testing`` properties, the gradient-free searches
  ``adversary.random_search`` and ``evolutionary_search``, and labelling what
  they find (``adversary.label_states``: the labels come from the env);
- no: ``adversary.gradient_search`` (a ``TypeError`` when JAX differentiates
  the call), ``adversary.latent_search`` (``LatentEnsemble``: ``encode`` and
  ``heads`` unsupported), and training: ``fit_rewards``,
  ``adversary.train_ensemble``, ``adversarial_retraining`` (``TrainableEnsemble``:
  ``per_member`` unsupported).

Why not the last three: the module and its parameters live in torch, outside
JAX. The call is a ``jax.pure_callback``, which JAX cannot differentiate, and
innerlab's trainers are optax updates of the model's JAX arrays, of which this
adapter has none. Bridging both would mean a hand-written VJP per call and a
host copy of every parameter at every step; instead each unsupported step
fails at once with a ``TypeError`` naming the step and the reason (the class
lists them in ``unsupported``, which ``innerlab.protocols.require`` reports).
The torch route for adversarial retraining is a loop you own: search with
``evolutionary_search``, label with ``adversary.label_states``, fit the torch
module in torch on the labels, wrap it again (``docs/howto_reward_model.md``).

torch is an optional dependency (``innerlab[torch]``), imported only when this
adapter is built.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from innerlab.reward_models.model import check_obs

NO_GRADIENTS = (
    "TorchRewardModel cannot be differentiated by JAX: the torch module runs outside JAX "
    "(a jax.pure_callback), so no gradient flows through it. Steps that need gradients: "
    "adversary.gradient_search (use evolutionary_search or random_search instead), "
    "adversary.latent_search, and training (fit_rewards, adversary.train_ensemble, "
    "adversarial_retraining); use a JAX model for those."
)

_NO_TRAINING = (
    "its parameters live in torch, outside JAX, so innerlab's optax trainers (fit_rewards, "
    "adversary.train_ensemble, adversarial_retraining) cannot update them; retrain the torch "
    "module in torch on labels from innerlab.adversary.label_states and wrap it again"
)
_NO_LATENT = (
    "a wrapped torch module is one forward pass (obs, action) -> [K] with no latent JAX can "
    "differentiate; latent search needs a JAX model split into encode and heads"
)


class TorchRewardModel(eqx.Module):
    """A ``torch.nn.Module`` as an innerlab reward model: a ``RewardEnsemble`` (and
    ``ActionTableEnsemble``) for prediction; neither differentiable nor trainable by innerlab.

    Args:
        module: maps ``(obs [B, *obs_shape] float32, action [B] int64)`` to ``[B, K]``.
        obs_shape: one observation's shape ``(H, W, C)``.
        num_actions: number of discrete actions.
        num_members: K, the width of the module's output.
    """

    module: Any = eqx.field(static=True)
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    num_actions: int = eqx.field(static=True)
    num_members: int = eqx.field(static=True)

    unsupported: ClassVar[dict[str, str]] = {
        "per_member": _NO_TRAINING,
        "encode": _NO_LATENT,
        "heads": _NO_LATENT,
    }
    """Protocol members this adapter cannot provide, and why (read by ``protocols.require``)."""

    def __init__(self, module, obs_shape, num_actions: int, num_members: int):
        import torch

        if not isinstance(module, torch.nn.Module):
            raise TypeError(
                f"argument 'module' must be a torch.nn.Module, got {type(module).__name__}"
            )
        if num_members < 1:
            raise ValueError(f"argument 'num_members' must be >= 1, got {num_members}")
        if num_actions < 1:
            raise ValueError(f"argument 'num_actions' must be >= 1, got {num_actions}")
        self.module = module
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.num_actions = int(num_actions)
        self.num_members = int(num_members)

    def _host_call(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        import torch

        lead = action.shape
        obs = np.array(obs, np.float32).reshape((-1,) + self.obs_shape)  # a writable copy
        action = np.asarray(action).reshape(-1).astype(np.int64)
        with torch.no_grad():
            out = self.module(torch.from_numpy(obs), torch.from_numpy(action))
        out = out.detach().cpu().numpy().astype(np.float32)
        if out.shape != (obs.shape[0], self.num_members):
            raise ValueError(
                f"the torch module returned shape {out.shape}, expected "
                f"({obs.shape[0]}, {self.num_members}) = [batch, num_members]"
            )
        return out.reshape(lead + (self.num_members,))

    def check_obs(self, obs: Array) -> Array:
        """Reject observations of the wrong shape or a non-float dtype (at trace time)."""
        return check_obs(obs, self.obs_shape)

    def __call__(self, obs: Float[Array, "H W C"], action: Int[Array, ""]) -> Float[Array, " K"]:
        """Every member's predicted reward for one ``(obs, action)``."""
        obs = self.check_obs(jnp.asarray(obs)).astype(jnp.float32)
        action = jnp.asarray(action)
        if action.shape != ():
            raise ValueError(f"argument 'action' must be a scalar, got shape {action.shape}")
        return _torch_call(self, obs, action.astype(jnp.int32))

    def all_actions(self, obs: Float[Array, "H W C"]) -> Float[Array, "A K"]:
        """Predictions for every action ``[A, K]`` (one batched torch call)."""
        return jax.vmap(lambda a: self(obs, a))(jnp.arange(self.num_actions, dtype=jnp.int32))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _torch_call(model: TorchRewardModel, obs: Array, action: Array) -> Array:
    """The torch forward pass as a ``jax.pure_callback`` (vmapped: one torch batch)."""
    out = jax.ShapeDtypeStruct((model.num_members,), jnp.float32)
    return jax.pure_callback(model._host_call, out, obs, action, vmap_method="broadcast_all")


@_torch_call.defjvp
def _torch_call_jvp(model, primals, tangents):
    """Differentiating the call is an error naming the steps that need gradients (not JAX's
    generic "pure_callback has no JVP")."""
    raise TypeError(NO_GRADIENTS)
