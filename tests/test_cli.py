"""The ``innerlab`` command line: envs, recipes, demo, run."""

import dataclasses
import pathlib
import re
from typing import ClassVar

import pytest
from rich.console import Console

import innerlab.recipes as recipes
from innerlab.cli import _parse_run, main, map_count_warning
from innerlab.envs import list_envs, make
from innerlab.recipes import RecipeConfig, RunDir


@dataclasses.dataclass
class EchoConfig(RecipeConfig):
    """A recipe that writes its own options (for testing the dispatch)."""

    steps: int = 100
    label: str = "hello"
    QUICK: ClassVar[dict] = {"steps": 3}


def echo_run(config: EchoConfig) -> RunDir:
    run = RunDir(config.out)
    run.write_config(config)
    run.write_summary({"steps": config.steps, "label": config.label})
    run.write_report("# echo")
    return run


@pytest.fixture
def echo_recipe():
    recipes.register_recipe("echo-test", EchoConfig, echo_run, "Writes its options.")
    yield
    recipes._RECIPES.pop("echo-test", None)


def test_envs_lists_every_env_one_line_each(capsys):
    main(["envs"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["name", "experiment", "obs", "shape", "actions"]
    assert [line.split()[0] for line in lines[1:]] == list_envs()
    for line, name in zip(lines[1:], list_envs(), strict=True):
        env, params = make(name)
        assert env.experiment in line
        assert str(tuple(env.observation_space(params).shape)) in line


def test_recipes_lists_registered_recipes(capsys, echo_recipe):
    main(["recipes"])
    out = capsys.readouterr().out
    assert "echo-test" in out and "Writes its options." in out
    assert len(out.strip().splitlines()) == 1 + len(recipes.list_recipes())


def test_run_dispatches_options_to_the_recipe(tmp_path, echo_recipe, capsys):
    out = tmp_path / "run"
    main(["run", "echo-test", "--quick", "--label", "hi", "--out", str(out)])
    summary = RunDir(out, resume=True).read_json("summary.json")
    assert summary == {"steps": 3, "label": "hi"}  # quick preset applied, explicit label kept
    assert str(out) in capsys.readouterr().out


@dataclasses.dataclass
class TupleConfig(RecipeConfig):
    """A recipe whose quick preset shrinks a tuple option (like zero-shot's encodings)."""

    encodings: tuple[str, ...] = ("ascii", "language", "coords")
    seeds: int = 5
    QUICK: ClassVar[dict] = {"encodings": ("ascii",), "seeds": 2}


def test_quick_keeps_options_given_on_the_command_line_even_at_their_default(tmp_path):
    """The bug: --quick replaced every option equal to its default, so
    `--quick --encodings ascii language coords` ran ascii only."""
    recipes.register_recipe("tuple-test", TupleConfig, echo_run, "Echo a tuple.")
    try:
        name, config = _parse_run(["run", "tuple-test", "--quick", "--encodings", "ascii",
                                   "language", "coords"], Console())
        assert name == "tuple-test"
        config = config.resolved()
        assert config.encodings == ("ascii", "language", "coords")  # given, kept
        assert config.seeds == 2  # not given: the preset
        _, config = _parse_run(["run", "tuple-test", "--seeds", "5", "--quick"], Console())
        assert config.resolved() == TupleConfig(encodings=("ascii",), seeds=5, quick=True)
        _, config = _parse_run(["run", "tuple-test", "--seeds", "5"], Console())
        assert config.resolved() == TupleConfig()  # no --quick: the defaults
    finally:
        recipes._RECIPES.pop("tuple-test", None)


def test_run_unknown_recipe_is_a_clear_error(capsys, echo_recipe):
    with pytest.raises(SystemExit) as exc:
        main(["run", "no-such-recipe"])
    assert exc.value.code == 2
    out = capsys.readouterr().out
    assert "unknown recipe 'no-such-recipe'" in out and "echo-test" in out


def test_run_without_recipe_lists_recipes(capsys, echo_recipe):
    with pytest.raises(SystemExit) as exc:
        main(["run"])
    assert exc.value.code == 2
    out = capsys.readouterr().out
    assert "usage: innerlab run <recipe>" in out and "echo-test" in out


def test_run_refuses_to_overwrite_a_run(tmp_path, echo_recipe):
    out = tmp_path / "run"
    main(["run", "echo-test", "--quick", "--out", str(out)])
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        main(["run", "echo-test", "--quick", "--out", str(out)])


def test_demo_writes_a_strip_per_env_and_an_index(tmp_path, capsys):
    # one env keeps compile time down; `make demo` runs them all
    names = list_envs()[:1]
    main(["demo", "--out", str(tmp_path), "--max-frames", "3", "--envs", *names])
    for name in names:
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    index = (tmp_path / "index.md").read_text()
    assert all(f"({name}.png)" in index for name in names)
    out = capsys.readouterr().out
    assert str(tmp_path / "index.md") in out.replace("\n", "")


@pytest.mark.parametrize(
    ("name", "seed"),
    [("BoostChain-v0", 0), pytest.param("Spaceship-v0", 0, marks=pytest.mark.slow)],
)
def test_demo_episode_is_the_first_episode_of_the_one_rollout(name, seed):
    """The demo's episode ends where episode_returns says (same policy and key), and its
    frames are the start state plus one per step; continuous actions come from the box."""
    import jax
    import numpy as np

    from innerlab.demo import random_episode, uniform_policy
    from innerlab.envs.rollout import episode_returns

    env, params = make(name)
    key = jax.random.key(seed)
    ep = random_episode(env, params, key)
    ref = episode_returns(env, params, uniform_policy(env, params), key, 1)
    assert ep.length == int(ref.lengths[0]) and len(ep.frames) == ep.length + 1
    np.testing.assert_allclose(ep.ret, float(ref.returns[0]), rtol=1e-5)
    _, state0 = env.reset(jax.random.split(jax.random.split(key)[0], 1)[0], params)
    np.testing.assert_array_equal(ep.frames[0], np.asarray(env.render_rgb(state0, params)))


def test_demo_rejects_unknown_env(tmp_path):
    with pytest.raises(KeyError, match="unknown environment.*'Nope-v0'"):
        main(["demo", "--out", str(tmp_path), "--envs", "Nope-v0"])


@pytest.mark.slow
def test_docs_cli_example_runs(tmp_path, monkeypatch):
    text = (pathlib.Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    monkeypatch.setattr("tempfile.mkdtemp", lambda: str(tmp_path))
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/cli.md[{i}]", "exec"), {"__name__": "docs"})
    finally:
        recipes._RECIPES.pop("count", None)
    assert RunDir(tmp_path / "count", resume=True).read_json("summary.json") == {"last": 9}


def test_map_count_warning_names_the_limit_and_the_fix(tmp_path):
    limit = tmp_path / "max_map_count"
    limit.write_text("65530\n")
    warning = map_count_warning(str(limit))
    assert "65530" in warning and "sysctl -w vm.max_map_count=262144" in warning
    limit.write_text("262144\n")
    assert map_count_warning(str(limit)) is None
    assert map_count_warning(str(tmp_path / "missing")) is None  # not Linux: nothing to say
