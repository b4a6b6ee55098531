"""Turning an ensemble's K predictions into one number, and measuring how much members disagree.

Planners plan on an aggregation of the ensemble (``mean``; ``min`` or
``pessimistic`` = mean - k*std to be cautious; ``max`` to be optimistic), and
the adversary, the reports and ``innerlab.testing`` all measure disagreement
with the same two functions here, so "disagreement" means one thing
throughout the library.

All functions reduce over the member axis ``axis`` (default last).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

AGGREGATIONS = ("mean", "min", "max", "pessimistic")


def _check_members(preds: Array, axis: int, what: str, minimum: int) -> None:
    k = preds.shape[axis] if preds.ndim else 0
    if k < minimum:
        raise ValueError(
            f"{what} needs an ensemble of at least {minimum} members along axis {axis} of "
            f"argument 'preds', got {k} (preds shape {tuple(preds.shape)})"
        )


def ensemble_std(preds: Float[Array, "... K"], axis: int = -1) -> Float[Array, "..."]:
    """Population standard deviation across members (0 when all agree)."""
    _check_members(preds, axis, "ensemble_std", 2)
    return jnp.std(preds, axis=axis)


def max_pairwise_gap(preds: Float[Array, "... K"], axis: int = -1) -> Float[Array, "..."]:
    """Largest difference between any two members: ``max - min``."""
    _check_members(preds, axis, "max_pairwise_gap", 2)
    return jnp.max(preds, axis=axis) - jnp.min(preds, axis=axis)


def aggregate(
    preds: Float[Array, "... K"], how: str = "mean", k: float = 1.0, axis: int = -1
) -> Float[Array, "..."]:
    """Reduce member predictions: ``mean``, ``min``, ``max`` or ``pessimistic`` (mean - k*std)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; expected one of {AGGREGATIONS}")
    _check_members(preds, axis, f"aggregate(how={how!r})", 1)
    if how == "mean":
        return jnp.mean(preds, axis=axis)
    if how == "min":
        return jnp.min(preds, axis=axis)
    if how == "max":
        return jnp.max(preds, axis=axis)
    if k < 0:
        raise ValueError(f"argument 'k' of the pessimistic aggregation must be >= 0, got {k}")
    std = jnp.std(preds, axis=axis) if preds.shape[axis] > 1 else 0.0
    return jnp.mean(preds, axis=axis) - k * std
