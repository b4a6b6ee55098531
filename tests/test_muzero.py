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
    make_env,
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


ORCHARD = MuZeroConfig.orchard()


def test_orchard_preset_and_egocentric_env():
    assert ORCHARD.egocentric and ORCHARD.discount == 0.9
    assert MuZeroConfig.orchard(num_iterations=20).num_iterations == 20
    env, params = make_env(ORCHARD, height=5, width=5, n_objects=3)
    assert env.observation_space(params).shape == (9, 9, 9)
    assert make_env(TINY)[0].observation_space().shape == (7, 7, 9)


@pytest.mark.slow
def test_muzero_reaches_90_percent_of_optimal_on_orchard(tmp_path):
    """>= 90% of the optimal return on Orchard's train split (default 7x7, 5 objects).

    "Optimal" is the episode's upper bound (sum of positive object values; no policy
    earns more). Both the policy the learner acts with (root noise, action sampled
    from visit counts) and the deterministic greedy search must reach it; a uniformly
    random policy earns 47% of the bound here. The test split is reported beside it.
    """
    state = train(ORCHARD, [0], tmp_path, progress=False)
    model = jax.tree.map(lambda x: x[0] if isinstance(x, jax.Array) else x, state.model)
    key = jax.random.key(123)
    results = {
        (split, greedy): evaluate(model, ORCHARD, key, split=split, num_episodes=256, greedy=greedy)
        for split in ("train", "test")
        for greedy in (True, False)
    }
    for (split, greedy), res in results.items():
        name = "greedy" if greedy else "acting"
        print(split, name, {k: round(float(v), 3) for k, v in res.items()})
    assert float(results["train", False]["fraction_of_optimal"]) >= 0.9
    assert float(results["train", True]["fraction_of_optimal"]) >= 0.9
