"""Use a PyTorch reward model wherever an innerlab reward model's ``__call__`` is used.

``TorchRewardModel(module, obs_shape, num_actions, num_members)`` wraps any
``torch.nn.Module`` mapping a batch ``(obs [B, H, W, C] float32, action [B]
int64)`` to ``[B, K]`` predictions. It behaves like ``RewardModel`` for
prediction: ``model(obs, action) -> [K]`` on one example, and ``jax.vmap`` /
``jax.jit`` work (the call is a ``jax.pure_callback`` whose vmap rule hands
torch the whole batch at once, so a vmapped call is one torch forward pass).

Gradients do not flow through torch: gradient-based searches (e.g. the
adversary's input search) need a JAX model; evaluation, EPIC, disagreement
and gradient-free searches work. torch is an optional dependency
(``innerlab[torch]``), imported only when this adapter is built.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from innerlab.reward_models.model import check_obs


class TorchRewardModel(eqx.Module):
    """A ``torch.nn.Module`` as an innerlab reward model (prediction only).

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
        out = jax.ShapeDtypeStruct((self.num_members,), jnp.float32)
        return jax.pure_callback(
            self._host_call, out, obs, action.astype(jnp.int32), vmap_method="broadcast_all"
        )

    def all_actions(self, obs: Float[Array, "H W C"]) -> Float[Array, "A K"]:
        """Predictions for every action ``[A, K]`` (one batched torch call)."""
        return jax.vmap(lambda a: self(obs, a))(jnp.arange(self.num_actions, dtype=jnp.int32))
