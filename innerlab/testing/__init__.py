"""Property-based testing of reward models with hypothesis.

State the properties a reward should have, and let hypothesis look for env
states that break them, shrink them, and show them as a text grid:

>>> import innerlab.envs as envs
>>> from innerlab.testing import OracleRewardModel, finite, invariant
>>> env, params = envs.make("Orchard-v0")
>>> model = OracleRewardModel(env, params)
>>> invariant(model, env, params, feature="shape", max_examples=10).property
"invariant(feature='shape')"

- ``innerlab.testing.strategies``: hypothesis strategies for states,
  observations, ``(obs, action)`` pairs, trajectories, trajectory pairs and
  feature perturbations of any registered env, from its train or test
  distribution or from all valid states.
- ``innerlab.testing.properties``: ``finite``, ``bounded``, ``invariant``,
  ``monotonic``, ``epic_equivalent``, ``members_agree``, ``matches_true_reward``;
  each a function and a test decorator (``@finite.test("Orchard-v0")``), each
  steering hypothesis with ``hypothesis.target`` towards failures.
- ``innerlab.testing.oracle``: ``OracleRewardModel``, the exact reward.
- ``innerlab.testing.planted``: faulty models that each property must catch.
- ``innerlab.testing.plugin``: pytest fixtures (``innerlab_env``, ``oracle_model``, ...).

See ``docs/testing.md``.
"""

from innerlab.testing import planted, strategies
from innerlab.testing.oracle import OracleRewardModel, decode_grid_observation
from innerlab.testing.properties import (
    Evaluation,
    Evaluator,
    PropertyResult,
    PropertyViolation,
    RewardProperty,
    bounded,
    describe,
    epic_equivalent,
    finite,
    invariant,
    matches_true_reward,
    members_agree,
    monotonic,
    reward_property,
)

__all__ = [
    "Evaluation",
    "Evaluator",
    "OracleRewardModel",
    "PropertyResult",
    "PropertyViolation",
    "RewardProperty",
    "bounded",
    "decode_grid_observation",
    "describe",
    "epic_equivalent",
    "finite",
    "invariant",
    "matches_true_reward",
    "members_agree",
    "monotonic",
    "planted",
    "reward_property",
    "strategies",
]
