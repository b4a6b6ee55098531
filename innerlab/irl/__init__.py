"""Inverse RL: recover the reward that best explains an agent's behaviour.

``innerlab.irl.tabular`` turns Orchard layouts into small tabular MDPs (every
state of the room, the env's own dynamics, a feature basis for rewards);
``innerlab.irl.mce`` fits maximum-causal-entropy IRL (Ziebart 2010) on them,
samples soft-optimal experts of known rewards (validation), and scores how
well a recovered reward explains held-out behaviour against uniform and
behavioural-cloning baselines; ``innerlab.irl.neural`` fits the same MCE IRL with a
neural reward over the env's observations (an MLP, back-propagated through the same soft
value iteration).
"""

from innerlab.irl.mce import (
    bc_features,
    bc_log_likelihood,
    epic_tables,
    epic_to,
    fit_bc,
    fit_reward,
    log_likelihood,
    log_likelihood_of,
    sample_demos,
    soft_policy,
    soft_policy_of,
)
from innerlab.irl.neural import (
    LayoutObs,
    RewardNet,
    fit_neural_reward,
    observe_layouts,
    reward_tables,
)
from innerlab.irl.tabular import (
    Demos,
    TabularMDP,
    demos_from_trajectory,
    feature_names,
    layout_mdp,
    layout_states,
    split_layouts,
    state_index,
    trajectory_layouts,
    true_weights,
)

__all__ = [
    "Demos",
    "LayoutObs",
    "RewardNet",
    "TabularMDP",
    "bc_features",
    "bc_log_likelihood",
    "demos_from_trajectory",
    "epic_tables",
    "epic_to",
    "feature_names",
    "fit_bc",
    "fit_neural_reward",
    "fit_reward",
    "layout_mdp",
    "layout_states",
    "observe_layouts",
    "reward_tables",
    "log_likelihood",
    "log_likelihood_of",
    "sample_demos",
    "soft_policy",
    "soft_policy_of",
    "split_layouts",
    "state_index",
    "trajectory_layouts",
    "true_weights",
]
