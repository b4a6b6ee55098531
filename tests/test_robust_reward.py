"""The robust-reward recipe: registration, options, run directory, determinism."""

import dataclasses
import json

import pytest

from innerlab.recipes import get_recipe, list_recipes, run_recipe
from innerlab.recipes.robust_reward import RobustRewardConfig

TINY = dict(
    num_seeds=2, data_envs=4, data_steps=16, train_steps=20, retrain_steps=5, rounds=1,
    label_budget=4, search_budget=32, latent_steps=1, eval_transitions=64, eval_envs=2,
    num_simulations=2, goodhart_budgets=(2,), width=16, latent_dim=8,
)


def test_registered_with_quick_preset():
    assert "robust-reward" in list_recipes()
    recipe = get_recipe("robust-reward")
    assert recipe.config_cls is RobustRewardConfig
    quick = RobustRewardConfig(quick=True).resolved()
    assert quick.rounds < RobustRewardConfig().rounds
    assert quick.num_seeds >= 3  # the demo still shows a seed spread


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("num_seeds", 0, "'num_seeds' must be an int >= 1"),
        ("label_budget", 0, "'label_budget' must be an int >= 1"),
        ("search_budget", -1, "'search_budget' must be an int >= 1"),
        ("epsilon", -0.5, "'epsilon' must be >= 0"),
        ("methods", ("random", "magic"), "unknown \\['magic'\\]"),
        ("num_members", 1, "'num_members' must be >= 2"),
        ("goodhart_budgets", (0, 4), "'goodhart_budgets' must be ints >= 1"),
    ],
)
def test_bad_options_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        RobustRewardConfig(**{field: value})


def _numbers(path):
    summary = json.loads((path / "summary.json").read_text())
    return summary["results"], summary["tables"]


@pytest.mark.slow
def test_tiny_run_writes_run_dir_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_recipe("robust-reward", RobustRewardConfig(out=str(a), **TINY))
    run_recipe("robust-reward", RobustRewardConfig(out=str(b), **TINY))
    for name in ("config.json", "metrics.jsonl", "summary.json", "report.md", "goodhart.png",
                 "methods.png", "rounds.png"):
        assert (a / name).is_file(), name
    assert _numbers(a) == _numbers(b)
    report = (a / "report.md").read_text()
    assert "seed spread" in report and "random" in report
    # a finished run resumed in place redoes no round and gives the same numbers
    run_recipe("robust-reward", dataclasses.replace(
        RobustRewardConfig(out=str(a), **TINY), resume=True))
    assert _numbers(a) == _numbers(b)
    rows = lambda p: (p / "metrics.jsonl").read_text().splitlines()
    assert len(rows(a)) == len(rows(b))  # the resumed run logged no row twice


@pytest.mark.slow
def test_full_size_run(tmp_path):
    out = tmp_path / "full"
    run_recipe("robust-reward", RobustRewardConfig(out=str(out)))
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["seeds"]) >= 3
    for method in RobustRewardConfig().methods:
        assert method in summary["results"]
    assert "## What differs by more than the seed spread" in (out / "report.md").read_text()


@pytest.mark.parametrize("env", ["ProxyMaze-v0", "BoostChain-v0", "Spaceship-v0",
                                 "OrchardSideChannel-v0", "Nope-v0"])
def test_envs_without_a_harmful_notion_are_rejected_at_config_time(env):
    with pytest.raises(ValueError, match=rf"option 'env' is '{env}'.*supported envs: Orchard-v0"):
        RobustRewardConfig(env=env)


def test_cli_rejects_an_unsupported_env_before_training(monkeypatch, capsys):
    import innerlab.recipes as recipes
    from innerlab.cli import main

    recipe = recipes.get_recipe("robust-reward")

    def must_not_run(config):
        raise AssertionError("the recipe started although its env is unsupported")

    monkeypatch.setitem(recipes._RECIPES, "robust-reward",
                        dataclasses.replace(recipe, run_fn=must_not_run))
    with pytest.raises(SystemExit) as exc:
        main(["run", "robust-reward", "--quick", "--env", "ProxyMaze-v0"])
    assert exc.value.code != 0
    captured = capsys.readouterr()
    out = " ".join(w for w in (captured.out + captured.err).split() if w != "│")  # tyro's box
    assert "option 'env' is 'ProxyMaze-v0'" in out and "supported envs: Orchard-v0" in out


def test_supported_env_names_are_accepted():
    assert RobustRewardConfig(env="Orchard-v0").env == "Orchard-v0"
    assert RobustRewardConfig(env="innerlab/Orchard-v0").env == "innerlab/Orchard-v0"


@pytest.mark.slow  # compiles the MCTS agent's rollout twice: about half a minute
def test_agent_rollout_sums_the_first_episode_of_the_one_rollout():
    """True return and harm are episode_returns' for the same MCTS policy and key; the
    learned return sums the ensemble's reward over the same steps (an oracle ensemble
    learns the true return exactly)."""
    import jax
    import numpy as np

    import innerlab.envs as envs
    from innerlab.envs.rollout import episode_returns
    from innerlab.planners.mcts import MCTSLayer
    from innerlab.recipes.robust_reward import agent_rollout, planner_policy
    from innerlab.testing.oracle import OracleRewardModel

    env, params = envs.make("Orchard-v0", split="test", height=5, width=5, n_objects=3,
                            max_steps=12)
    oracle = OracleRewardModel(env, params, num_members=2)
    key = jax.random.key(0)
    got = agent_rollout(oracle, env, params, key, 4, 2, "mean")
    layer = MCTSLayer(oracle, 2, env=env, env_params=params, reward="model", how="mean")
    ref = episode_returns(env, params, planner_policy(layer), key, 4)
    np.testing.assert_allclose(got["true_return"], ref.returns.mean(), rtol=1e-6)
    np.testing.assert_allclose(got["harmful_collected"],
                               ref.info["collected_harmful"].mean(), rtol=1e-6)
    np.testing.assert_allclose(got["learned_return"], got["true_return"], rtol=1e-6)
    assert float(got["true_return"]) != 0.0  # the planner collected something
    oracle_env = agent_rollout(None, env, params, key, 4, 2, "mean", reward="env")
    assert float(oracle_env["learned_return"]) == 0.0
