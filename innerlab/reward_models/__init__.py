"""Reward-model ensembles, their training, and measuring the learned objective.

Modules: ``model`` (``RewardModel``), ``aggregate`` (aggregations and the
disagreement measures), ``data`` (transitions, rollouts, off-distribution
samples, replay buffer, preference segments), ``train`` (regression and
Bradley-Terry fitting), ``epic`` (EPIC, Pearson, MAE), ``evaluate``
(``evaluate_objective``), ``io`` (save/load) and ``torch_adapter``
(``TorchRewardModel``; imports torch only when used).
"""

from innerlab.reward_models.aggregate import (
    AGGREGATIONS,
    aggregate,
    ensemble_std,
    max_pairwise_gap,
)
from innerlab.reward_models.data import (
    Preferences,
    ReplayBuffer,
    Segments,
    Transitions,
    collect_transitions,
    random_policy,
    rollout,
    sample_state_transitions,
)
from innerlab.reward_models.epic import epic_distance, mae, pearson
from innerlab.reward_models.evaluate import evaluate_objective
from innerlab.reward_models.model import RewardModel, build_encoder
from innerlab.reward_models.train import (
    PreferenceConfig,
    RegressionConfig,
    fit_preferences,
    fit_rewards,
)

__all__ = [
    "AGGREGATIONS",
    "PreferenceConfig",
    "Preferences",
    "RegressionConfig",
    "ReplayBuffer",
    "RewardModel",
    "Segments",
    "Transitions",
    "aggregate",
    "build_encoder",
    "collect_transitions",
    "ensemble_std",
    "epic_distance",
    "evaluate_objective",
    "fit_preferences",
    "fit_rewards",
    "mae",
    "max_pairwise_gap",
    "pearson",
    "random_policy",
    "rollout",
    "sample_state_transitions",
]
