"""The adversary: disagreement objectives, input and latent search, adversarial retraining.

>>> from innerlab.adversary import disagreement, true_gap
"""

from innerlab.adversary.objectives import (
    MEASURES,
    action_disagreement,
    disagreement,
    measure_fn,
    member_predictions,
    state_disagreement,
    true_gap,
)

__all__ = [
    "MEASURES",
    "action_disagreement",
    "disagreement",
    "measure_fn",
    "member_predictions",
    "state_disagreement",
    "true_gap",
]
