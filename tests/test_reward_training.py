"""Data collection, replay buffer, regression and preference training, evaluation, bad input.

The "show it works" test trains an ensemble on Orchard's train split
(random-policy data) and checks low error on train, and higher error and
higher EPIC distance where the test split shows the unseen feature
combination (large objects of the harmful colour). Higher member
disagreement there did not appear (see test_show_it_works).
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.reward_models import RewardModel
from innerlab.reward_models import data as D
from innerlab.reward_models.evaluate import evaluate_objective
from innerlab.reward_models.train import (
    PreferenceConfig,
    RegressionConfig,
    fit_preferences,
    fit_rewards,
)

# A small orchard keeps compile and training time low; the rule is Orchard's own.
ENV_KW = dict(height=5, width=5, n_objects=3)
MODEL_KW = dict(num_members=5, latent_dim=16, width=16, encoder="conv_pool")
# 4800 steps: with the matmul lowering (about 2x faster per step than the native conv
# this test used to run 1200 steps with) every data key 0-3 fits (train MAE 0.026-0.067,
# Pearson 0.89-0.97); at 2400 steps key 0 did not (0.117), at 1200 keys 0 and 3 did not.
CONFIG = RegressionConfig(learning_rate=1e-2, batch_size=32, max_steps=4800, eval_every=300,
                          patience=4)


@pytest.fixture(scope="module")
def orchard():
    return envs.make("Orchard-v0", **ENV_KW)


@pytest.fixture(scope="module")
def rollout(orchard):
    # Data key 1 (any of keys 0-3 fits with CONFIG's budget; see CONFIG). The
    # random-policy data: done rate 4.0-4.1%, reward > 0 on 11% of transitions.
    env, params = orchard
    return D.rollout(env, params, D.random_policy(4), jax.random.key(1), 64, 128)


@pytest.fixture(scope="module")
def train_data(rollout):
    return rollout[0].flatten()


def test_rollout_is_consistent(orchard, rollout):
    env, params = orchard
    trans, states, next_states = rollout
    assert trans.obs.shape == (128, 64, 5, 5, 2 + 3 + 2 + 2)
    # labels are the true reward of (state, action); next_obs is the true successor
    truth = jax.vmap(jax.vmap(lambda s, a: env.true_reward(s, a, params)))(states, trans.action)
    np.testing.assert_array_equal(truth, trans.reward)
    np.testing.assert_array_equal(jax.vmap(jax.vmap(env.observe, (0, None)), (0, None))(
        next_states, params), trans.next_obs)
    # where no episode ended, the next step starts from this step's successor
    cont = ~trans.done[:-1]
    np.testing.assert_array_equal(trans.obs[1:][cont], trans.next_obs[:-1][cont])
    assert 0 < float(trans.done.mean()) < 1
    # train split: a large object of the harmful colour never appears
    large_harmful = (states.obj_size == 1) & (states.obj_colour == params.harmful_colour)
    assert not bool(jnp.any(large_harmful & states.obj_alive))


@pytest.mark.slow  # compiles the rollout for three policy forms (20 s)
def test_rollout_is_the_one_rollout_for_every_policy_form(orchard):
    """data.rollout labels envs.rollout's trajectory; functions, batched or not, act as Policies."""
    from innerlab.envs.rollout import rollout as one_rollout

    env, params = orchard
    key = jax.random.key(5)
    trans, states, next_states = D.rollout(env, params, D.random_policy(4), key, 4, 12)
    traj = one_rollout(env, params, D.random_policy(4), key, 4, 12)
    np.testing.assert_array_equal(trans.obs, traj.obs)
    np.testing.assert_array_equal(trans.next_obs, traj.next_obs)
    np.testing.assert_array_equal(trans.done, traj.terminated | traj.truncated)
    np.testing.assert_array_equal(states.agent, traj.state.agent)
    # a per-env policy_fn(key, obs) -> action, and a batched one
    per_env = D.collect_transitions(env, params, lambda k, o: 2, key, 3, 5)
    assert per_env.action.shape == (15,) and bool(jnp.all(per_env.action == 2))
    batched = D.rollout(env, params, lambda k, o: jnp.arange(o.shape[0]) % 4, key, 3, 5,
                        batched=True)[0]
    np.testing.assert_array_equal(batched.action, np.tile(np.arange(3), (5, 1)))
    with pytest.raises(TypeError, match="'policy_fn' must be a Policy or a callable"):
        D.rollout(env, params, "random", key, 3, 5)


def test_replay_buffer_ring(train_data):
    buf = D.ReplayBuffer.create(train_data, 100)
    buf = buf.add(train_data.take(jnp.arange(70)))
    assert int(buf.size) == 70
    buf = jax.jit(D.ReplayBuffer.add)(buf, train_data.take(jnp.arange(70, 140)))
    assert int(buf.size) == 100 and int(buf.pos) == 40
    # oldest first: rows 40..139 survive
    np.testing.assert_array_equal(buf.contents().action, train_data.action[40:140])
    sample = buf.sample(jax.random.key(0), 16)
    assert sample.obs.shape == (16,) + train_data.obs.shape[1:]
    with pytest.raises(ValueError, match="more than the buffer capacity"):
        buf.add(train_data.take(jnp.arange(101)))
    empty = D.ReplayBuffer.create(train_data, 4)
    with pytest.raises(Exception, match="the buffer is empty"):
        jax.block_until_ready(empty.sample(jax.random.key(0), 2).reward)


def test_segments_and_preference_labels(rollout):
    segs = D.segments_from_rollout(rollout[0], 8)
    assert segs.obs.shape[:2] == (64 * 16, 8)
    # segment returns are sums of the rollout's rewards in order
    np.testing.assert_allclose(segs.returns[0], rollout[0].reward[:8, 0].sum())
    clean = D.label_preferences(jax.random.key(1), segs, 500, label_noise=0.0)
    ra, rb = clean.first.returns, clean.second.returns
    expected = jnp.where(ra > rb, 1.0, jnp.where(ra < rb, 0.0, 0.5))
    np.testing.assert_array_equal(clean.label, expected)
    noisy = D.label_preferences(jax.random.key(1), segs, 500, label_noise=0.3)
    flipped = float(jnp.mean((noisy.label != clean.label)[clean.label != 0.5]))
    assert 0.15 < flipped < 0.45
    with pytest.raises(ValueError, match="'label_noise' must be in"):
        D.label_preferences(jax.random.key(1), segs, 10, label_noise=0.7)


@pytest.fixture(scope="module")
def trained(orchard, train_data):
    env, params = orchard
    model = RewardModel(train_data.obs.shape[1:], 4, key=jax.random.key(1), **MODEL_KW)
    return fit_rewards(model, train_data, jax.random.key(2), CONFIG)


def test_history_and_early_stopping(trained, train_data):
    model, history = trained
    assert history["n_train"] + history["n_holdout"] == len(train_data)
    assert history["best_holdout_loss"] == min(history["holdout_loss"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert len(history["holdout_loss_per_member"][0]) == MODEL_KW["num_members"]


def test_show_it_works(orchard, trained):
    """Low train error; on the test split's unseen combination more error, EPIC, disagreement."""
    env, params = orchard
    model, _ = trained
    r = evaluate_objective(model, env, params, jax.random.key(3), n=512, num_envs=16,
                           num_canonical=32)
    assert r["train/mae"] < 0.1 and r["train/pearson"] > 0.85 and r["train/epic"] < 0.3
    assert r["test/mae"] > 1.5 * r["train/mae"]
    assert r["test/epic"] > r["train/epic"] + 0.1
    # Member disagreement is NOT asserted to be higher on test: over seeds 0-3 the members
    # agreed about as much (or more) on the harmful large objects as on train data, all
    # confidently extrapolating "large is good" (docs/reward_models.md has the numbers).


@pytest.mark.slow  # two more trainings (about 16 s); the shared-encoder fit stays in default
def test_independent_members_and_preferences(orchard, rollout, train_data):
    env, params = orchard
    small = dict(num_members=2, latent_dim=8, width=8, encoder="conv_pool")
    config = RegressionConfig(max_steps=60, eval_every=30, batch_size=16)
    model = RewardModel(train_data.obs.shape[1:], 4, shared_encoder=False,
                        key=jax.random.key(4), **small)
    fitted, history = fit_rewards(model, train_data, jax.random.key(5), config)
    assert history["steps"] == 60
    # members were trained on different bootstrap resamples: they moved differently
    before = jax.vmap(model)(train_data.obs[:64], train_data.action[:64])
    after = jax.vmap(fitted)(train_data.obs[:64], train_data.action[:64])
    assert not np.allclose(before, after)
    segs = D.segments_from_rollout(rollout[0], 4)
    prefs = D.label_preferences(jax.random.key(6), segs, 256)
    pmodel, phist = fit_preferences(
        model, prefs, jax.random.key(7), PreferenceConfig(max_steps=60, eval_every=30)
    )
    assert phist["train_loss"][-1] < phist["train_loss"][0]
    assert np.isfinite(phist["best_holdout_loss"])


def test_bad_input_is_named(orchard, train_data):
    env, params = orchard
    model = RewardModel(train_data.obs.shape[1:], 4, num_members=2, latent_dim=4, width=4,
                        encoder="conv_pool", key=jax.random.key(0))
    bad_reward = D.Transitions(train_data.obs[:8], train_data.action[:8],
                               train_data.reward[:8].at[3].set(jnp.nan),
                               train_data.next_obs[:8], train_data.done[:8])
    with pytest.raises(ValueError, match="'data': field 'reward' has 1 NaN/inf"):
        fit_rewards(model, bad_reward, jax.random.key(0))
    inf_reward = bad_reward.take(jnp.arange(8))
    inf_reward = D.Transitions(inf_reward.obs, inf_reward.action,
                               inf_reward.reward.at[3].set(jnp.inf), inf_reward.obs,
                               inf_reward.done)
    with pytest.raises(ValueError, match="NaN/inf"):
        fit_rewards(model, inf_reward, jax.random.key(0))
    empty = train_data.take(jnp.arange(0))
    with pytest.raises(ValueError, match="'data' is an empty dataset"):
        fit_rewards(model, empty, jax.random.key(0))
    wrong_shape = D.Transitions(train_data.obs[:8, :4], train_data.action[:8],
                                train_data.reward[:8], train_data.next_obs[:8, :4],
                                train_data.done[:8])
    with pytest.raises(ValueError, match="'obs' must have shape"):
        fit_rewards(model, wrong_shape, jax.random.key(0))
    wrong_dtype = D.Transitions(train_data.obs[:8].astype(jnp.int32), train_data.action[:8],
                                train_data.reward[:8], train_data.next_obs[:8],
                                train_data.done[:8])
    with pytest.raises(TypeError, match="'obs' must be float"):
        fit_rewards(model, wrong_dtype, jax.random.key(0))
    bad_action = D.Transitions(train_data.obs[:8], train_data.action[:8] + 4,
                               train_data.reward[:8], train_data.next_obs[:8],
                               train_data.done[:8])
    with pytest.raises(ValueError, match=r"actions must be in \[0, 4\)"):
        fit_rewards(model, bad_action, jax.random.key(0))
    one = RewardModel(train_data.obs.shape[1:], 4, num_members=1, latent_dim=4, width=4,
                      key=jax.random.key(0))
    with pytest.raises(ValueError, match="disagreement needs an ensemble of at least 2"):
        evaluate_objective(one, env, params, jax.random.key(0))
    with pytest.raises(ValueError, match="'holdout_fraction' must be in"):
        RegressionConfig(holdout_fraction=1.0)
    with pytest.raises(ValueError, match="'num_envs' must be an int >= 1"):
        D.collect_transitions(env, params, D.random_policy(4), jax.random.key(0), 0, 4)


def test_docs_example_runs(capsys):
    """The example in docs/reward_models.md runs (same shapes as above, so compiles are reused)."""
    text = (Path(__file__).parent.parent / "docs" / "reward_models.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/reward_models.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "train/epic" in printed and "test/mae" in printed
