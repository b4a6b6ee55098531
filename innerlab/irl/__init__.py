"""Inverse RL: recover the reward that best explains an agent's behaviour.

``innerlab.irl.tabular`` turns Orchard layouts into small tabular MDPs (every
state of the room, the env's own dynamics, a feature basis for rewards);
``innerlab.irl.mce`` fits maximum-causal-entropy IRL (Ziebart 2010) on them,
samples soft-optimal experts of known rewards (validation), and scores how
well a recovered reward explains held-out behaviour against uniform and
behavioural-cloning baselines.
"""

from innerlab.irl.mce import (
    bc_features,
    bc_log_likelihood,
    epic_tables,
    epic_to,
    fit_bc,
    fit_reward,
    log_likelihood,
    sample_demos,
    soft_policy,
    soft_policy_of,
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
    true_weights,
)

__all__ = [
    "Demos",
    "TabularMDP",
    "bc_features",
    "bc_log_likelihood",
    "demos_from_trajectory",
    "epic_tables",
    "epic_to",
    "feature_names",
    "fit_bc",
    "fit_reward",
    "layout_mdp",
    "layout_states",
    "log_likelihood",
    "sample_demos",
    "soft_policy",
    "soft_policy_of",
    "split_layouts",
    "state_index",
    "true_weights",
]
