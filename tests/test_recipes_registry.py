"""The recipe registry and the run directory every recipe writes."""

import dataclasses
import json
import math
from typing import ClassVar

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import innerlab.recipes as recipes
from innerlab.envs import make
from innerlab.recipes import RecipeConfig, RunDir, to_jsonable


@dataclasses.dataclass
class ToyConfig(RecipeConfig):
    steps: int = 1000
    width: int = 64
    QUICK: ClassVar[dict] = {"steps": 10, "width": 8}


def toy_run(config: ToyConfig) -> RunDir:
    run = RunDir(config.out)
    run.write_config(config)
    for step in range(3):
        run.log_metrics({"loss": np.float32(1.0 / (step + 1))}, step=step)
    run.write_summary({"steps": config.steps, "width": config.width})
    run.write_report(f"# toy\n\nsteps={config.steps}")
    return run


@pytest.fixture
def toy_recipe():
    recipe = recipes.register_recipe("toy-test", ToyConfig, toy_run, "A toy recipe for tests.")
    yield recipe
    recipes._RECIPES.pop("toy-test", None)


# --------------------------------------------------------------------------- registry


def test_registered_recipe_is_listed_and_found(toy_recipe):
    assert "toy-test" in recipes.list_recipes()
    got = recipes.get_recipe("toy-test")
    assert got.config_cls is ToyConfig and got.run_fn is toy_run
    assert got.description == "A toy recipe for tests."


def test_unknown_recipe_error_lists_known(toy_recipe):
    with pytest.raises(KeyError, match="unknown recipe 'nope'.*toy-test"):
        recipes.get_recipe("nope")


def test_run_recipe_fills_default_out_and_applies_quick(toy_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = recipes.run_recipe("toy-test", ToyConfig(quick=True, width=32))
    assert str(run.path) == "runs/toy-test"
    assert (tmp_path / "runs" / "toy-test" / "summary.json").exists()
    summary = run.read_json("summary.json")
    # the preset changes fields left at default; the explicit width wins
    assert summary == {"steps": 10, "width": 32}
    assert run.read_json("config.json")["quick"] is True


def test_quick_keeps_fields_set_in_python_even_at_their_default():
    # width=64 is the default; the caller set it, so the preset (8) must not replace it
    config = ToyConfig(quick=True, width=64).resolved()
    assert (config.steps, config.width) == (10, 64)
    assert ToyConfig("", True, 1000).resolved().steps == 1000  # positional: set too
    assert ToyConfig(quick=True).explicit_fields == {"quick"}
    assert config.resolved() == config  # resolving twice changes nothing


def test_quick_false_keeps_defaults():
    config = ToyConfig().resolved()
    assert (config.steps, config.width) == (1000, 64)


def test_quick_preset_with_unknown_field_is_an_error():
    @dataclasses.dataclass
    class Bad(RecipeConfig):
        QUICK: ClassVar[dict] = {"stpes": 1}

    with pytest.raises(TypeError, match="unknown field.*stpes"):
        Bad(quick=True).resolved()


def test_register_rejects_bad_config_and_name_clash(toy_recipe):
    @dataclasses.dataclass
    class NoOut:
        quick: bool = False

    with pytest.raises(TypeError, match="'out: str'.*missing \\['out'\\]"):
        recipes.register_recipe("bad", NoOut, toy_run, "x")
    with pytest.raises(TypeError, match="must be a dataclass type"):
        recipes.register_recipe("bad", dict, toy_run, "x")
    with pytest.raises(ValueError, match="already registered"):
        recipes.register_recipe("toy-test", ToyConfig, lambda c: c, "another")
    with pytest.raises(ValueError, match="without spaces"):
        recipes.register_recipe("two words", ToyConfig, toy_run, "x")
    assert "bad" not in recipes.list_recipes()


def test_run_recipe_rejects_wrong_config_type(toy_recipe):
    with pytest.raises(TypeError, match="must be a ToyConfig, got RecipeConfig"):
        recipes.run_recipe("toy-test", RecipeConfig())


# --------------------------------------------------------------------------- run directory


def test_rundir_writes_the_standard_files(tmp_path):
    run = RunDir(tmp_path / "r")
    run.write_config({"lr": 1e-3, "shape": (7, 7, 9), "params": make("Orchard-v0")[1]})
    run.log_metrics({"loss": jnp.float32(0.5), "acc": np.array([1, 2])}, step=0)
    run.log_metrics({"loss": 0.25}, step=1)
    run.write_summary({"mean": np.float64(0.1), "n": np.int64(3)})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.save_figure(fig, "curve")
    run.save_figure(np.zeros((4, 5, 3), np.uint8), "image.png")
    run.write_report("# Report")
    assert run.files() == [
        "config.json", "curve.png", "image.png", "metrics.jsonl", "report.md", "summary.json"
    ]
    config = run.read_json("config.json")
    assert config["shape"] == [7, 7, 9]
    assert config["params"]["split"] == "train" and config["params"]["height"] == 7
    assert run.read_metrics() == [
        {"step": 0, "loss": 0.5, "acc": [1, 2]},
        {"step": 1, "loss": 0.25},
    ]
    assert run.read_json("summary.json") == {"mean": 0.1, "n": 3}
    assert (run.path / "report.md").read_text() == "# Report\n"
    assert (run.path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_rundir_refuses_non_empty_dir_unless_resume(tmp_path):
    run = RunDir(tmp_path / "r")
    run.log_metrics({"x": 1})
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        RunDir(tmp_path / "r")
    resumed = RunDir(tmp_path / "r", resume=True)
    resumed.log_metrics({"x": 2})
    assert [row["x"] for row in resumed.read_metrics()] == [1, 2]
    resumed.clear_metrics()  # a resumed run that re-logs its whole history starts it afresh
    resumed.log_metrics({"x": 3})
    assert [row["x"] for row in resumed.read_metrics()] == [3]
    (tmp_path / "empty").mkdir()
    RunDir(tmp_path / "empty")  # an empty directory is fine


def test_rundir_rejects_bad_input(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(ValueError, match="image array"):
        run.save_figure(np.zeros((4, 5)), "flat")
    with pytest.raises(ValueError, match="relative path inside the run"):
        run.file("../escape.txt")
    with pytest.raises(TypeError, match="'metrics' must be a dict"):
        run.log_metrics([1, 2])
    with pytest.raises(TypeError, match="cannot convert a builtins.object"):
        run.write_summary({"x": object()})


def test_to_jsonable_keeps_non_finite_values():
    out = json.loads(json.dumps(to_jsonable({"a": np.float32("nan"), "b": jnp.inf})))
    assert math.isnan(out["a"]) and out["b"] == math.inf


@given(
    st.lists(
        st.floats(min_value=-1e6, max_value=1e6, width=32), min_size=0, max_size=6
    ),
    st.sampled_from([np.float32, np.float64, np.int32, np.int64]),
)
def test_to_jsonable_round_trips_numpy_and_jax_arrays(values, dtype):
    arr = np.asarray(values).astype(dtype)
    for x in (arr, jnp.asarray(arr)):
        expected = np.asarray(x)
        back = json.loads(json.dumps(to_jsonable(x)))
        np.testing.assert_array_equal(np.asarray(back, expected.dtype).reshape(arr.shape), expected)
