"""Run the `imitation` library's tabular MCE IRL on an MDP given as an .npz (not a test).

Run by tests/test_irl_peer.py in the separate `.venv-imitation` (`make irl-peer-venv`:
imitation 1.0.1 pins gymnasium 0.29, ours is 1.x), so it imports nothing from innerlab.

    .venv-imitation/bin/python tests/irl_peer_worker.py problem.npz result.npz

``problem.npz``: ``transition [S, A, S]`` probabilities, ``features [S, F]`` (a state-only
reward ``r(s) = features[s] @ w``: what imitation's MCE IRL fits), ``initial [S]``,
``horizon``, ``discount``, ``occupancy [S]`` (the demonstrations' state visitation counts
per episode, time steps 0..horizon) and the optimiser's ``learning_rate`` and ``iterations``.
``result.npz``: the fitted ``weights [F]``, the soft-optimal policy ``pi [horizon, S, A]``
of the fitted reward, its ``occupancy [S]`` and the ``seconds`` the fit took.
"""

import sys
import tempfile
import time

import numpy as np
import torch
from imitation.algorithms import mce_irl
from imitation.rewards import reward_nets
from imitation.util import logger as imit_logger
from seals import base_envs


class LinearStateReward(reward_nets.RewardNet):
    """``r(s) = features[s] @ w``, no bias: the same reward family as innerlab's fit."""

    def __init__(self, observation_space, action_space, num_features: int):
        super().__init__(observation_space, action_space)
        self.linear = torch.nn.Linear(num_features, 1, bias=False)
        torch.nn.init.zeros_(self.linear.weight)  # innerlab's fit starts at w = 0 too

    def forward(self, state, action, next_state, done):
        return self.linear(state)[:, 0]


def main(problem_path: str, result_path: str) -> None:
    problem = np.load(problem_path)
    features = problem["features"].astype(np.float32)
    horizon = int(problem["horizon"])
    env = base_envs.TabularModelPOMDP(
        transition_matrix=problem["transition"].astype(np.float64),
        observation_matrix=features,
        reward_matrix=np.zeros(features.shape[0]),  # unused: MCE IRL learns the reward
        horizon=horizon,
        initial_state_dist=problem["initial"].astype(np.float64),
    )
    net = LinearStateReward(env.observation_space, env.action_space, features.shape[1])
    with tempfile.TemporaryDirectory() as logs:
        algo = mce_irl.MCEIRL(
            problem["occupancy"].astype(np.float64), env, net, rng=np.random.default_rng(0),
            optimizer_kwargs={"lr": float(problem["learning_rate"])},
            discount=float(problem["discount"]), log_interval=None,
            custom_logger=imit_logger.configure(logs, format_strs=[]),
        )
        start = time.perf_counter()
        occupancy = algo.train(max_iter=int(problem["iterations"]))
        seconds = time.perf_counter() - start
    weights = net.linear.weight.detach().numpy()[0].astype(np.float64)
    np.savez(result_path, weights=weights, pi=algo.policy.pi, occupancy=occupancy,
             seconds=seconds)


if __name__ == "__main__":
    main(*sys.argv[1:3])
