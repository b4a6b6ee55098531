"""``PlannerOutput``: what every planner in innerlab returns.

One type for every planner (MCTS, the differentiable tree, the Imagination-based
Planner, the model-free baseline) so experiments can swap planners without
changing the code that reads their decisions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
from jaxtyping import Array, Float, Int


class PlannerOutput(NamedTuple):
    """A batch of planning decisions.

    Attributes:
        action: ``[B] int32`` the chosen action per example.
        action_weights: ``[B, A]`` a distribution over actions (the search's policy
            target, or the softmax of the tree's Q-values); rows sum to 1.
        value: ``[B]`` the planner's estimate of the root state's value.
        stats: planner-specific diagnostics, each an array with leading axis ``B``
            (e.g. ``"visit_counts"`` ``[B, A]``, ``"qvalues"`` ``[B, A]``).
    """

    action: Int[Array, " B"]
    action_weights: Float[Array, "B A"]
    value: Float[Array, " B"]
    stats: dict[str, jax.Array]
