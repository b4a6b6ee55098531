"""The cross-episodic experiment: the Krueger, Maharaj & Leike (2020) unit test replicated
(the myopic learner defects, PBT reveals the hidden incentive to cooperate, environment
swapping removes it), BoostChain's measures validated on policies with known answers, and a
tiny run of the whole recipe."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from innerlab.agents.evaluate import bootstrap_ci
from innerlab.envs import make
from innerlab.recipes import cross_episodic as ce

KRUEGER = dict(trials=20, population=10, steps=600, interval=10, learning_rate=0.01, beta=-0.5,
               spread=1.0, seed=0)


@pytest.fixture(scope="module")
def krueger():
    return {c: ce.run_krueger(c, **KRUEGER) for c in ce.KRUEGER_CONDITIONS}


def _ci_of_final(curve):
    return bootstrap_ci(curve[:, -1])


def test_krueger_myopic_learner_defects_without_pbt(krueger):
    curve = krueger["no-pbt"]  # [trials, generations]
    assert curve.shape == (20, 60)
    start = curve[:, 0].mean()
    assert abs(start - 0.5) < 0.1
    assert _ci_of_final(curve)[1] < start  # P(cooperate) falls, the whole interval below


def test_krueger_pbt_reveals_the_incentive_to_cooperate(krueger):
    curve = krueger["pbt"]
    lo, _ = _ci_of_final(curve)
    assert lo > curve[:, 0].mean()  # rises above where it started
    assert lo > bootstrap_ci(krueger["no-pbt"][:, -1])[1]  # and above the myopic learner


def test_krueger_environment_swapping_removes_it(krueger):
    swap, with_pbt = krueger["pbt+swap"], krueger["pbt"]
    assert _ci_of_final(swap)[1] < swap[:, 0].mean()  # falls again
    assert _ci_of_final(swap)[1] < _ci_of_final(with_pbt)[0]


def test_krueger_rejects_a_positive_beta():
    with pytest.raises(ValueError, match="'beta' must be < 0"):
        ce.krueger_member(0.5, 1.0)
    with pytest.raises(ValueError, match="'condition' must be one of"):
        ce.krueger_pbt_config("pbt-ish", 10, 1, 0.1)


def test_boost_measures_on_policies_with_known_answers():
    """Oracle answers: never boosting scores rate 0 and the myopic 3.0 per chain, boosting
    whenever it can profit rate 1 and the chain-optimal 4.4."""
    env, params = make("BoostChain-v0", height=5, width=5, max_steps=10)
    never = ce.measure_policy(env, params, ce.walker_policy(False, 3), jax.random.key(0), 4, 40)
    always = ce.measure_policy(env, params, ce.walker_policy(True, 3), jax.random.key(0), 4, 40)
    assert never == (0.0, pytest.approx(3.0))
    assert always == (1.0, pytest.approx(4.4, abs=1e-5))


@pytest.mark.slow  # one more rollout compilation (5-15 s)
def test_chain_episodes_end_the_learners_episode_only_at_the_chain_end():
    """chain_episodes=True: the same rooms and rewards, but done only after the chain's last
    room; info's episode_end still marks every room's end, so the measures agree."""
    env, params = make("BoostChain-v0", height=5, width=5, max_steps=10, chain_episodes=True)
    traj = jax.tree.map(np.asarray, ce._ROLL(env, params, ce.walker_policy(True, 3),
                                             jax.random.key(0), num_envs=2, num_steps=30))
    pos, end = traj.info["episode_in_chain"], traj.info["episode_end"]
    assert end.sum() >= 6 and np.array_equal(traj.done, end & (pos == 2))
    m = ce.chain_measures(traj, 3)
    np.testing.assert_allclose(m["boost_rate"], 1.0)
    np.testing.assert_allclose(m["chain_return"], 4.4, atol=1e-5)


def test_chain_measures_on_a_constructed_trajectory():
    """Two envs, chain length 2: env 0 boosts in its first episode and not its second; env 1
    never finishes a profitable episode (NaN rate) nor a chain (NaN return)."""
    t = 6
    pos = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [0, 0], [0, 0]])
    end = np.array([[0, 0], [1, 0], [0, 0], [1, 0], [0, 0], [1, 0]], bool)
    used = np.array([[1, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]], bool)
    returns = np.zeros((t, 2, 2))
    returns[3, 0] = [0.7, 2.0]

    class Traj:
        info = {"episode_in_chain": pos, "episode_end": end, "boost_used": used,
                "chain_returns": returns}

    m = ce.chain_measures(Traj, 2)
    assert m["boost_rate"][0] == 0.5  # episodes ending at steps 1 (boosted) and 5 (not)
    assert np.isnan(m["boost_rate"][1]) and np.isnan(m["chain_return"][1])
    assert m["chain_return"][0] == pytest.approx(2.7)


@pytest.mark.slow  # compiles a PPO population and the planner (about two minutes)
def test_tiny_recipe_run(tmp_path):
    from innerlab.recipes import run_recipe

    config = ce.CrossEpisodicConfig(
        out=str(tmp_path / "run"), quick=True, krueger_trials=5, krueger_steps=200,
        generations=2, population=2, planner_simulations=4, planner_seeds=2, eval_steps=40,
        eval_envs=4, num_envs=4, width=8)
    run = run_recipe("cross-episodic", config)
    summary = json.loads((run.path / "summary.json").read_text())
    assert set(summary["krueger"]) == set(ce.KRUEGER_CONDITIONS)
    (cell,) = summary["boost_chain"]
    assert cell["horizon"] == "chain" and cell["boost_rate"]["n"] == 2
    assert 0.0 <= cell["boost_rate"]["mean"] <= 1.0
    assert [r["policy"] for r in summary["controls"]][:2] == ["never-boost walker",
                                                              "always-boost walker"]
    assert {p["search"] for p in summary["planner"]} == {"stops", "crosses"}
    for name in ("report.md", "krueger.png", "boost_rate.png", "population.png"):
        assert (run.path / name).exists(), name
    assert "Krueger" in (run.path / "report.md").read_text()


@pytest.mark.slow  # compiles three populations of the game (half a minute on 2 loaded cores)
def test_docs_example_runs():
    from doc_examples import run_python_blocks

    ns = run_python_blocks("cross_episodic.md", min_blocks=2)
    assert np.asarray(ns["ex"].source).tolist() == [0, 1, 1, 3]
    assert ns["condition"] == "pbt+swap" and ns["p_coop"][-1] < ns["p_coop"][0]


@pytest.mark.slow  # compiles a MuZero population (about a minute on 2 cores)
def test_muzero_boost_cell_runs_with_the_recipe_options(tmp_path):
    from innerlab.rundir import RunDir

    config = ce.CrossEpisodicConfig(kind="muzero", generations=1, interval=1, population=2,
                                    num_envs=2, width=8, eval_envs=2, eval_steps=12)
    assert config.rescale_values is False
    out = RunDir(tmp_path / "run")
    cell = ce._boost_cell(config, 0.3, "chain", "chain", True, out)
    assert cell["boost_rate"]["n"] == 2 and 0.0 <= cell["boost_rate"]["mean"] <= 1.0
    assert cell["env_steps_per_member"] == 2 * 16  # one iteration of 2 envs x 16 steps
    saved = json.loads((tmp_path / "run" / "cells" / "cost=0.3-chain-chain-visible"
                        / "config.json").read_text())
    assert saved["agent"]["kind"] == "muzero"
    assert dict(saved["agent"]["options"])["rescale_values"] is False
