"""The robust-reward recipe: options, stages and resume, the measures on known cases, a tiny run."""

import dataclasses
import json

import numpy as np
import pytest

from innerlab.recipes import RunDir, get_recipe, list_recipes, run_recipe
from innerlab.recipes.robust_reward import (
    ENSEMBLES,
    METHODS,
    RobustRewardConfig,
    paired,
    pearson_np,
    stage,
)

TINY = dict(
    agents=("muzero",), num_seeds=2, ensembles=("bootstrap", "diverse"),
    methods=("none", "random-train", "gradient"),
    num_envs=8, iterations=2, rounds=1, label_budget=4, round_iterations=2, num_simulations=2,
    search_budget=64, latent_steps=2, eval_episodes=4, eval_transitions=64,
    goodhart_budgets=(1, 2),
)


def test_registered_with_quick_preset():
    assert "robust-reward" in list_recipes()
    assert get_recipe("robust-reward").config_cls is RobustRewardConfig
    full, quick = RobustRewardConfig(), RobustRewardConfig(quick=True).resolved()
    assert full.num_seeds >= 5 and set(full.ensembles) == set(ENSEMBLES)
    assert set(full.methods) == set(METHODS) and min(full.goodhart_budgets) == 1
    assert max(full.goodhart_budgets) == 64
    assert quick.num_seeds >= 3 and "diverse" in quick.ensembles  # the demo shows a spread
    assert quick.rounds * quick.label_budget <= 64  # the label budget
    agent = full.agent("prior")
    native = agent.native()
    assert agent.kind == "muzero" and agent.egocentric
    assert native.reward_prior_scale > 0 and native.label_capacity == 64
    assert agent.schedule() == (full.iterations + full.rounds * full.round_iterations,
                                full.round_iterations)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("num_seeds", 0, "'num_seeds' must be an int >= 1"),
        ("label_budget", 0, "'label_budget' must be an int >= 1"),
        ("search_budget", -1, "'search_budget' must be an int >= 1"),
        ("latent_epsilon", -0.5, "'latent_epsilon' and 'pessimism_k' must be >= 0"),
        ("methods", ("none", "magic"), "unknown \\['magic'\\]"),
        ("ensembles", ("bagging",), "unknown \\['bagging'\\]"),
        ("iterations", 30, "multiple of 'round_iterations'"),
        ("goodhart_budgets", (0, 4), "'goodhart_budgets' must be ints >= 1"),
    ],
)
def test_bad_options_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        RobustRewardConfig(**{field: value})


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


def test_a_finished_stage_is_read_back_not_recomputed(tmp_path):
    out = RunDir(tmp_path / "run")
    calls = []

    def compute():
        calls.append(1)
        return {"value": np.float32(1.5)}

    first = stage(out, "s", compute)
    again = stage(RunDir(tmp_path / "run", resume=True), "s", compute)
    assert calls == [1] and first["value"] == again["value"] == 1.5


def test_paired_differences_exceed_only_a_consistent_effect():
    up = paired([1.0, 1.2, 0.9, 1.1, 1.05], [0.0, 0.1, 0.0, 0.05, 0.0])
    assert up["exceeds"] and up["ci95"][0] > 0
    same = paired([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    assert same["diff"] == 0.0 and not same["exceeds"]
    noise = paired([1.0, -1.0, 1.0, -1.0, 0.5, -0.5], [0.0] * 6)
    assert not noise["exceeds"]


def test_pearson_known_answers():
    x = np.arange(10.0)
    assert pearson_np(x, 3 * x + 1) == pytest.approx(1.0)
    assert pearson_np(x, -x) == pytest.approx(-1.0)
    assert np.isnan(pearson_np(x, np.ones(10)))  # a constant prediction says nothing
    w = np.array([1] * 5 + [0] * 5)
    assert pearson_np(x, np.r_[x[:5], -x[5:]], w) == pytest.approx(1.0)


def _strip(x):
    """``x`` without the stages' wall times (the only numbers a rerun may change)."""
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _numbers(path):
    return _strip(json.loads((path / "summary.json").read_text())["results"])


@pytest.mark.slow
def test_tiny_run_writes_run_dir_is_deterministic_and_resumes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_recipe("robust-reward", RobustRewardConfig(out=str(a), **TINY))
    for name in ("config.json", "metrics.jsonl", "summary.json", "report.md", "goodhart.png",
                 "methods.png", "labels.png", "strip.png", "stages/muzero-diverse-gradient.json",
                 "runs/muzero-diverse/gradient/checkpoint.eqx"):
        assert (a / name).is_file(), name
    report = (a / "report.md").read_text()
    assert "Do the reward heads fit the training reward" in report
    assert "exceed their intervals" in report and "random-train" in report
    labels = json.loads((a / "stages/muzero-diverse-gradient.json").read_text())
    assert labels["curve"][0]["labels"] == 4
    # a run killed after some stages resumes without redoing them and ends the same
    run_recipe("robust-reward", RobustRewardConfig(out=str(b), **TINY))
    for late in ("muzero-diverse-gradient", "muzero-diverse-gradient-round1"):
        (b / "stages" / f"{late}.json").unlink()
    run_recipe("robust-reward", RobustRewardConfig(out=str(b), resume=True, **TINY))
    assert _numbers(a) == _numbers(b)
    with pytest.raises(ValueError, match="options \\['rounds'\\] differ"):
        run_recipe("robust-reward", RobustRewardConfig(out=str(b), resume=True,
                                                       **{**TINY, "rounds": 2}))


def test_docs_example_runs(capsys):
    from doc_examples import run_python_blocks

    run_python_blocks("robust_reward.md")
    out = capsys.readouterr().out
    assert "muzero 5 heads" in out and "label buffer 64" in out
