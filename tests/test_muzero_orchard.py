"""The muzero-orchard recipe: registration, options, the run directory it writes."""

import json

import numpy as np
import pytest

from innerlab.recipes import get_recipe, list_recipes, run_recipe
from innerlab.recipes.muzero_orchard import CONTROLS, MuZeroOrchardConfig


def test_registered_and_runs_are_one_change_from_the_main_config():
    assert "muzero-orchard" in list_recipes()
    assert get_recipe("muzero-orchard").config_cls is MuZeroOrchardConfig
    config = MuZeroOrchardConfig(controls=tuple(CONTROLS), seeds=3, control_seeds=2)
    runs = config.runs()
    assert list(runs) == ["main", *CONTROLS]
    main, seeds = runs["main"]
    assert seeds == [0, 1, 2] and main.kind == "muzero" and main.egocentric
    assert main.schedule() == (300, 20) and main.total_steps == 300 * 64 * 16
    native = main.native()
    assert (native.discount, native.policy, native.num_envs) == (0.9, "muzero", 64)

    def flat(agent):  # shared and kind options in one dict
        d = agent.to_dict()
        return {**d.pop("options"), **d}

    for name, change in CONTROLS.items():
        cfg, control_seeds = runs[name]
        assert control_seeds == [0, 1]
        differs = {k for k, v in flat(main).items() if flat(cfg)[k] != v}
        assert differs == set(change), name
    quick = MuZeroOrchardConfig(quick=True).resolved()
    assert quick.num_iterations < config.num_iterations and quick.seeds >= 2


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("seeds", 0, "'seeds' must be an int >= 1"),
        ("eval_episodes", -1, "'eval_episodes' must be an int >= 1"),
        ("controls", ("global-view", "magic"), "unknown \\['magic'\\]"),
    ],
)
def test_bad_options_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        MuZeroOrchardConfig(**{field: value})


@pytest.mark.slow
def test_tiny_run_writes_run_dir(tmp_path):
    out = tmp_path / "run"
    config = MuZeroOrchardConfig(out=str(out), seeds=2, num_iterations=4, chunk=2, num_envs=8,
                                 num_simulations=4, eval_episodes=8, controls=("global-view",))
    run_recipe("muzero-orchard", config)
    for name in ("config.json", "metrics.jsonl", "summary.json", "report.md",
                 "muzero_orchard.png", "runs/main/checkpoint.eqx",
                 "runs/global-view/metrics.jsonl"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {"main", "global-view"}
    frac = np.array(summary["runs"]["main"]["train/acting"]["fraction_of_optimal"])
    assert frac.shape == (2,) and np.all(np.isfinite(frac))
    assert 0 < summary["random"]["train"]["fraction_of_optimal"] < 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["stage"] == "eval" for r in rows) == 4 * (2 + 1)  # cells x (seeds + control)
    report = (out / "report.md").read_text()
    assert "| random policy |" in report and "Target" in report
