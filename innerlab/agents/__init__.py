"""Agents: one way to build, train, run, evaluate and save every agent kind.

>>> import innerlab.agents as agents
>>> config = agents.make("ppo-lstm", env_overrides={"height": 5, "width": 5},
...                      total_steps=4096, num_envs=8, width=16)
>>> result = agents.train(config, seeds=[0, 1], progress=False)
>>> ev = agents.evaluate(result, episodes=8)
>>> ev.returns.shape
(2, 8)

Kinds: ``"ppo-lstm"`` (recurrent PPO), ``"ppo-transformer"`` (PPO with a gated
Transformer-XL memory), ``"muzero"`` (MCTS over a learned model with a reward
ensemble) and ``"ibp"`` (the Imagination-based Planner), which are trained,
and ``"lm"``, a language model acting zero-shot (:mod:`innerlab.lm`), which is
not: :func:`lm_policy` builds its agent. The trained kinds share the option
names of :data:`SHARED_OPTIONS`; ``kind_options(kind)`` lists what each takes.
``result.policy(seed)`` is a :class:`Policy` that :func:`rollout` and
:func:`episode_returns` accept, like ``lm_policy(config)`` and the controls
:func:`random_policy` and :func:`oracle_policy`.
"""

from innerlab.agents.config import KINDS, SHARED_OPTIONS, AgentConfig, kind_options, make
from innerlab.agents.driver import TrainResult, lm_policy, load, train
from innerlab.agents.evaluate import Evaluation, bootstrap_ci, evaluate, oracle_policy
from innerlab.agents.learners import Learner, learner
from innerlab.envs.rollout import (
    Episodes,
    Policy,
    Trajectory,
    episode_returns,
    random_policy,
    rollout,
)

__all__ = [
    "KINDS",
    "SHARED_OPTIONS",
    "AgentConfig",
    "Episodes",
    "Evaluation",
    "Learner",
    "Policy",
    "TrainResult",
    "Trajectory",
    "bootstrap_ci",
    "episode_returns",
    "evaluate",
    "kind_options",
    "learner",
    "lm_policy",
    "load",
    "make",
    "oracle_policy",
    "random_policy",
    "rollout",
    "train",
]
