"""MuZero learner: target arithmetic, unroll masks, kill-and-resume equality, Orchard (slow)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.planners import WorldModel
from innerlab.planners.muzero import (
    MuZeroConfig,
    Trajectory,
    evaluate,
    n_step_targets,
    train,
    unroll_batch,
)
from innerlab.reward_models import RewardModel


def test_n_step_targets_by_hand():
    reward = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    done = jnp.array([[False], [True], [False], [False]])
    value = jnp.array([[10.0], [20.0], [30.0], [40.0]])
    boot = jnp.array([50.0])
    g = 0.5
    got = n_step_targets(reward, done, value, boot, n=2, discount=g)[:, 0]
    want = [
        1 + g * 2,  # episode ends after step 1: no bootstrap
        2.0,  # terminal step
        3 + g * 4 + g * g * 50,  # runs past the rollout: bootstrap from `boot`
        4 + g * 50,
    ]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_unroll_masks_stop_at_episode_end_and_rollout_end():
    t_len, e, a = 4, 1, 3
    traj = Trajectory(
        obs=jnp.zeros((t_len, e, 2, 2, 1)),
        action=jnp.arange(t_len)[:, None],
        reward=jnp.arange(t_len, dtype=jnp.float32)[:, None],
        done=jnp.array([[False], [True], [False], [False]]),
        weights=jnp.full((t_len, e, a), 1 / a),
        value=jnp.zeros((t_len, e)),
    )
    data = unroll_batch(traj, jnp.zeros((t_len, e)), k=2)
    np.testing.assert_array_equal(data["mask"], [[1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(data["action"][0], [0, 1])
    np.testing.assert_array_equal(data["reward"][2], [2.0, 3.0])


TINY = MuZeroConfig(
    num_envs=4,
    rollout_len=4,
    num_iterations=4,
    chunk=2,
    num_simulations=4,
    unroll=2,
    n_step=2,
    num_minibatches=2,
    num_epochs=1,
    latent_dim=8,
    width=16,
)


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    full = train(TINY, [0, 1], tmp_path / "full", progress=False)
    train(TINY, [0, 1], tmp_path / "killed", max_chunks=1, progress=False)  # "killed" here
    resumed = train(TINY, [0, 1], tmp_path / "killed", progress=False)
    for a, b in zip(jax.tree.leaves(full.model), jax.tree.leaves(resumed.model), strict=True):
        np.testing.assert_array_equal(a, b)
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == TINY.num_iterations  # one row per iteration, none lost or repeated
    # the two seeds are different runs
    w = jax.tree.leaves(full.model)[0]
    assert not np.array_equal(w[0], w[1])
    with pytest.raises(ValueError, match="different config"):
        train(
            TINY.__class__(**{**TINY.__dict__, "learning_rate": 1e-4}),
            [0, 1],
            tmp_path / "full",
            progress=False,
        )


def test_minmax_latents_stay_in_unit_range_through_dynamics():
    wm = WorldModel.create(
        (5, 5, 3),
        4,
        key=jax.random.key(0),
        num_members=2,
        latent_dim=8,
        width=16,
        encoder="mlp",
        latent_activation="minmax",
    )
    obs = jax.random.uniform(jax.random.key(1), (5, 5, 3))
    z = wm.represent(obs)
    z2 = wm.dynamics(z, jnp.int32(2))
    for lat in (z, z2):
        assert float(lat.min()) == 0.0 and abs(float(lat.max()) - 1.0) < 1e-6
    # the default is unchanged: ReLU latents
    assert RewardModel((5, 5, 3), 4, key=jax.random.key(0)).latent_activation == "relu"
    with pytest.raises(ValueError, match="latent_activation"):
        RewardModel((5, 5, 3), 4, key=jax.random.key(0), latent_activation="sigmoid")


def test_bad_config():
    with pytest.raises(ValueError, match="multiple of"):
        MuZeroConfig(num_iterations=10, chunk=3)
    with pytest.raises(ValueError, match="num_simulations"):
        MuZeroConfig(num_simulations=0)


# The latest configuration tried (min-max latents, visit-count targets, prior
# entropy bonus, replay); see docs/planners.md "Results and status". It does NOT
# yet reach the target: this test fails until a configuration does.
ORCHARD = MuZeroConfig(
    num_envs=64,
    num_iterations=400,
    chunk=20,
    num_epochs=4,
    num_minibatches=8,
    policy="muzero",
    entropy_coef=0.05,
    replay_rollouts=16,
)


@pytest.mark.slow
def test_muzero_reaches_90_percent_of_optimal_on_orchard(tmp_path):
    state = train(ORCHARD, [0], tmp_path, progress=False)
    model = jax.tree.map(lambda x: x[0] if isinstance(x, jax.Array) else x, state.model)
    on_train = evaluate(model, ORCHARD, jax.random.key(123), split="train", num_episodes=128)
    on_test = evaluate(model, ORCHARD, jax.random.key(123), split="test", num_episodes=128)
    print("train", {k: float(v) for k, v in on_train.items()})
    print("test", {k: float(v) for k, v in on_test.items()})
    assert float(on_train["fraction_of_optimal"]) >= 0.9
