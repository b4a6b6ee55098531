"""Reward-model ensembles, their training, and measuring the learned objective."""

from innerlab.reward_models.aggregate import (
    AGGREGATIONS,
    aggregate,
    ensemble_std,
    max_pairwise_gap,
)
from innerlab.reward_models.model import RewardModel

__all__ = ["AGGREGATIONS", "RewardModel", "aggregate", "ensemble_std", "max_pairwise_gap"]
