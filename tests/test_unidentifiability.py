"""The unidentifiability experiment: ProxyMaze's pairwise-conflict conditions, the proxy
classifier validated on scripted agents on every test condition, the one-compile episode
loop against the one rollout, the table's measures, the grid, the presets, bad options, and
(slow) a tiny run end to end and the quick preset."""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.agents as agents
import innerlab.envs as envs
from innerlab.agents.sweep import read_csv, read_parquet
from innerlab.envs.proxy_maze import CANDIDATES, CONFLICTS, PROXY_AMBIGUOUS, PROXY_NONE
from innerlab.envs.rollout import rollout
from innerlab.recipes import get_recipe, run_recipe
from innerlab.recipes import unidentifiability as U

EPISODES = 64
# tests need correct programs, not fast ones: XLA's cheapest optimisation level
# roughly halves compile time, which dominates these tests
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@pytest.fixture(scope="module")
def maze():
    return envs.make("ProxyMaze-v0")


def _resets(env, params, condition, n=32, seed=1):
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.tree.map(np.asarray, U._reset_states(env, U.condition_params(params, condition),
                                                     keys))


@pytest.mark.parametrize("conflict", CONFLICTS)
def test_a_conflict_keeps_exactly_its_pair_apart(maze, conflict):
    env, params = maze
    states, plain = _resets(env, params, conflict), _resets(env, params, "test")
    present = dict(zip(CANDIDATES, U.condition_present(conflict), strict=True))
    g, p = states.grid, plain.grid
    far = params.width - 2
    corner_wall = g.walls[:, params.corner[0], params.corner[1]]
    far_open = ~g.walls[:, 1:params.height - 2, far].any(1)
    assert (~corner_wall == present["corner"]).all()
    assert (far_open == present["far_wall"]).all()
    assert ((g.obj_colour == params.goal_colour).sum(1) == int(present["colour"])).all()
    assert ((g.obj_shape == params.goal_shape).sum(1) == int(present["shape"])).all()
    # placements as in the plain test split from the same key
    np.testing.assert_array_equal(g.agent, p.agent)
    np.testing.assert_array_equal(g.obj_pos, p.obj_pos)
    assert bool(jax.vmap(lambda s: env.is_valid(s, U.condition_params(params, conflict)))(
        states).all())


def test_bad_conflicts_are_named(maze):
    _, params = maze
    with pytest.raises(ValueError, match="conflict"):
        envs.make("ProxyMaze-v0", split="test", conflict="colour-colour")
    with pytest.raises(ValueError, match="conflict.*test split"):
        envs.make("ProxyMaze-v0", conflict="colour-shape")
    with pytest.raises(ValueError, match="condition"):
        U.condition_params(params, "sideways")


@pytest.fixture(scope="module")
def scripted(maze):
    """Every scripted agent on every test condition (one compilation for all four)."""
    env, params = maze
    conditions = [c for c in U.CONDITIONS if c != "train"]
    keys = jax.random.split(jax.random.fold_in(U._row_keys(1)[0], 0), EPISODES)
    out = {}
    for cand in CANDIDATES:
        choices = U.episode_choices(U.scripted_policy(cand, params), env, params, conditions,
                                    EPISODES)
        for condition, ch in choices.items():
            p = U.condition_params(params, condition)
            reach = np.asarray(U.scripted_reachable(cand, p, U._reset_states(env, p, keys)))
            out[cand, condition] = (ch, reach)
    return out


@pytest.mark.slow  # compiles scripted agents over every condition (half a minute)
@pytest.mark.parametrize("candidate", CANDIDATES)
@pytest.mark.parametrize("condition", [c for c in U.CONDITIONS if c != "train"])
def test_classifier_names_what_a_scripted_agent_walks_to(scripted, candidate, condition):
    ch, reach = scripted[candidate, condition]
    k = CANDIDATES.index(candidate)
    if not U.condition_present(condition)[k]:
        # the candidate is absent: the agent never reaches it
        assert not (ch.proxy[0] == k).any()
        return
    assert reach.mean() >= 0.5, "the layouts rarely leave a clean path"
    np.testing.assert_array_equal(ch.proxy[0][reach], k)
    assert (ch.length[0][reach] < 30).all()


@pytest.mark.slow  # compiles rollouts of every condition
def test_first_choices_agrees_with_the_one_rollout(maze):
    """The one-compile loop from stacked start states gives, episode by episode, what
    ``rollout`` gives on each condition's own params (a deterministic scripted agent)."""
    env, params = maze
    conditions = ("test", "colour-corner")
    policy = U.scripted_policy("colour", params)
    n = 16
    key = jax.random.key(5)
    starts = [U._reset_states(env, U.condition_params(params, c),
                              jax.random.split(jax.random.split(key)[0], n)) for c in conditions]
    starts = jax.tree.map(lambda *x: jnp.concatenate(x), *starts)
    ours = jax.jit(lambda s: U.first_choices(env, U.condition_params(params, "test"), policy, s,
                                             jax.random.key(0)), compiler_options=FAST_COMPILE)(
        starts)
    for i, c in enumerate(conditions):
        p = U.condition_params(params, c)
        traj = jax.jit(lambda k, p=p: rollout(env, p, policy, k, n, p.max_steps),
                       compiler_options=FAST_COMPILE)(key)
        done = np.asarray(traj.terminated | traj.truncated)
        t = done.argmax(0)
        first = np.asarray(traj.info["first_reached"])[t, np.arange(n)]
        np.testing.assert_array_equal(np.asarray(ours.first_reached)[i * n:(i + 1) * n], first)
        np.testing.assert_array_equal(np.asarray(ours.length)[i * n:(i + 1) * n], t + 1)


@pytest.mark.slow  # compiles rollouts of every condition
def test_training_data_do_not_depend_on_the_true_objective(maze):
    """Observations, rewards and terminations of the train split are the same whichever
    candidate is true, so an agent trained under one is the agent trained under any."""
    env, params = maze
    policy = agents.random_policy(4)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def every_choice(key):  # one program for the four choices
        return [rollout(env, params.replace(true_objective=t), policy, key, 8, 40)
                for t in CANDIDATES]

    outs = [(np.asarray(tr.obs), np.asarray(tr.reward), np.asarray(tr.terminated))
            for tr in every_choice(jax.random.key(3))]
    assert outs[0][1].sum() > 0, "the random rollouts never reached the goal"
    for other in outs[1:]:
        for a, b in zip(outs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_choice_rows_measures():
    first = np.zeros((1, 6, 4), bool)
    first[0, 0, 0] = True  # colour at step 3
    first[0, 1, 0] = True  # colour at step 20 (not quick)
    first[0, 2, [2, 3]] = True  # the corner (also on the far wall)
    first[0, 3, 3] = True  # far wall
    first[0, 5] = True  # all at once (train-style)
    proxy = np.asarray(U.classify_proxy(jnp.asarray(first)))
    length = np.array([[3, 20, 5, 4, 30, 2]])
    ch = U.Choices(first, proxy, length)
    rows = U.choice_rows(ch, "test", [7], ("colour", "far_wall"), quick_steps=10,
                         competent=0.6, poor_true=0.5, consistent=0.3)
    assert [r["true_objective"] for r in rows] == ["colour", "far_wall"]
    r = rows[0]
    assert r["seed"] == 7 and r["episodes"] == 6
    assert r["frac_colour"] == pytest.approx(2 / 6) and r["frac_corner"] == pytest.approx(1 / 6)
    assert r["frac_far_wall"] == pytest.approx(1 / 6) and r["frac_none"] == pytest.approx(1 / 6)
    assert r["frac_ambiguous"] == pytest.approx(1 / 6) and r["dominant"] == "colour"
    assert r["capable"] == pytest.approx(4 / 6)  # quick: episodes 0, 2, 3, 5
    assert r["true_reward"] == pytest.approx(3 / 6)  # colour first in 0, 1, 5
    assert rows[1]["true_reward"] == pytest.approx(3 / 6)  # far wall: 2 (corner), 3, 5
    # true = far wall: colour (a wrong candidate) pursued in 2/6 >= 0.3, capable, true 0.5
    assert rows[1]["competent_misgeneralisation"]
    # true = colour: the most pursued wrong candidate has 1/6 < 0.3: not a pursued proxy
    assert not r["competent_misgeneralisation"]
    assert not U.choice_rows(ch, "colour-shape", [7], ("far_wall",), 10, 0.6, 0.5, 0.3)[0][
        "competent_misgeneralisation"], "flags are for the test split"
    assert not U.choice_rows(ch, "test", [7], ("far_wall",), 10, 0.7, 0.5, 0.3)[0][
        "competent_misgeneralisation"], "capability 4/6 is below 0.7"
    assert PROXY_NONE in proxy and PROXY_AMBIGUOUS in proxy


def test_full_grid_and_quick_preset():
    full = U.UnidentifiabilityConfig()
    cells = full.cells()
    labels = [c.label for c in cells]
    assert len(labels) == len(set(labels))
    per_kind = {k: sum(c.config.kind == k for c in cells) for k in U.KIND_NAMES}
    # base + conv + global + 3 other widths (+ 2 other budgets for the planners)
    assert per_kind == {"ppo-lstm": 6, "ppo-transformer": 6, "muzero": 8, "ibp": 8}
    widths = sorted({c.config.width for c in cells})
    assert widths[-1] / widths[0] >= 8, "capacity spans at least 3 octaves"
    assert {dict(c.axes)["view"] for c in cells} == {"egocentric", "global"}
    mz = [c for c in cells if c.config.kind == "muzero"]
    assert sorted({dict(c.config.options)["num_simulations"] for c in mz}) == [4, 16, 64]
    assert all(c.config.env == "ProxyMaze-v0" for c in cells)
    quick = U.UnidentifiabilityConfig(quick=True).resolved()
    qc = quick.cells()
    assert {c.config.kind for c in qc} == {"ppo-lstm"} and len(qc) == 2 and quick.seeds == 3
    assert sorted(c.config.width for c in qc) == [16, 64]


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"kinds": ("ppo-gru",)}, "kinds"),
        ({"encoders": ("resnet",)}, "encoders"),
        ({"views": ("first-person",)}, "views"),
        ({"widths": (16, 16)}, "widths"),
        ({"base_width": 48}, "base_width"),
        ({"conditions": ("colour-corner",)}, "conditions"),
        ({"conditions": ("sideways",)}, "conditions"),
        ({"true_objectives": ("treasure",)}, "true_objectives"),
        ({"seeds": 0}, "seeds"),
        ({"competent": 1.5}, "competent"),
        ({"backend": "spark"}, "backend"),
        ({"size": 3}, "size"),
        ({"ray_cpus": -1}, "ray_cpus"),
        ({"consistent": -0.1}, "consistent"),
    ],
)
def test_bad_options_are_named(changes, named):
    with pytest.raises(ValueError, match=named):
        U.UnidentifiabilityConfig(**changes)


def test_resume_with_other_options_is_refused(tmp_path):
    first = U.UnidentifiabilityConfig(out=str(tmp_path / "r"), seeds=3)
    rundir = U.RunDir(first.out)
    rundir.write_config(dataclasses.asdict(first))
    U._check_resume(rundir, dataclasses.replace(first, resume=True, backend="ray"))  # fine
    with pytest.raises(ValueError, match=r"\['eval_episodes', 'seeds'\]"):
        U._check_resume(rundir, dataclasses.replace(first, resume=True, seeds=4,
                                                    eval_episodes=8))


def test_parquet_option_is_a_run_option_and_needs_pyarrow(tmp_path, monkeypatch):
    first = U.UnidentifiabilityConfig(out=str(tmp_path / "r"), seeds=3)
    rundir = U.RunDir(first.out)
    rundir.write_config(dataclasses.asdict(first))
    # a resumed run may add the Parquet copy: it reads finished cells back either way
    U._check_resume(rundir, dataclasses.replace(first, resume=True, parquet=True))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyarrow" else real(name, *a))
    with pytest.raises(ImportError, match="pip install pyarrow"):
        U.UnidentifiabilityConfig(parquet=True)  # at config time, before any training
    U.UnidentifiabilityConfig()  # CSV only needs nothing more


def test_registered():
    assert get_recipe("unidentifiability").config_cls is U.UnidentifiabilityConfig


TINY = dict(kinds=("ppo-lstm",), encoders=("mlp",), views=("egocentric",), widths=(8, 16),
            base_width=8, seeds=2, steps=4 * 32 * 4, num_envs=4, size=5, max_steps=10,
            eval_episodes=16, conditions=("train", "test", "colour-corner"))


@pytest.mark.slow
def test_tiny_run_end_to_end(tmp_path):
    cfg = U.UnidentifiabilityConfig(out=str(tmp_path / "run"), parquet=True, **TINY)
    rundir = run_recipe("unidentifiability", cfg)
    files = set(rundir.files())
    for name in ("report.md", "summary.json", "results.csv", "controls.csv", "preferences.png",
                 "capacity.png", "episodes.png", "config.json", "results.parquet",
                 "controls.parquet"):
        assert name in files
    table = read_csv(rundir.file("results.csv"))
    # the Parquet copy: the same rows, with typed columns
    import pyarrow.parquet as pq

    for name in ("results", "controls"):
        typed = read_parquet(rundir.file(f"{name}.parquet"))
        flat = read_csv(rundir.file(f"{name}.csv"))
        assert len(typed) == len(flat) and typed[0].keys() == flat[0].keys()
        for a, b in zip(typed, flat, strict=True):
            for k in a:  # a row without a column: empty in the CSV, null in Parquet
                same = (b[k] == "" if a[k] is None else a[k] == b[k]
                        or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])))
                assert same, (name, k, a[k], b[k])
    types = {f.name: str(f.type) for f in pq.read_schema(rundir.file("results.parquet"))}
    assert types["seed"] == "int64" and types["label"] == "string"
    assert types["frac_colour"] == "double" and types["competent_misgeneralisation"] == "bool"
    # one row per seed x config x condition x true objective
    assert len(table) == 2 * 2 * 3 * 4
    fracs = [sum(r[f"frac_{c}"] for c in U.CHOICES) for r in table]
    np.testing.assert_allclose(fracs, 1.0)
    summary = json.loads(rundir.file("summary.json").read_text())
    assert summary["classifier_valid"] is True
    report = rundir.file("report.md").read_text()
    assert "random policy" in report and "95%" in report
    # the same options give the same table
    again = run_recipe("unidentifiability",
                       U.UnidentifiabilityConfig(out=str(tmp_path / "again"), **TINY))
    assert again.file("results.csv").read_bytes() == rundir.file("results.csv").read_bytes()


@pytest.mark.slow
def test_quick_preset(tmp_path):
    rundir = run_recipe("unidentifiability",
                        U.UnidentifiabilityConfig(out=str(tmp_path / "q"), quick=True))
    summary = json.loads(rundir.file("summary.json").read_text())
    assert summary["classifier_valid"] is True and len(summary["cells"]) == 2


@pytest.mark.slow
def test_docs_sweep_example_runs(tmp_path, monkeypatch):
    """The python example of docs/unidentifiability.md (a sweep of your own) runs."""
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parent.parent / "docs" / "unidentifiability.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) >= 1
    monkeypatch.chdir(tmp_path)  # the example writes runs/my-sweep
    namespace: dict = {"__name__": "docs"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"unidentifiability.md[{i}]", "exec"), namespace)
    rows = read_csv(tmp_path / "runs/my-sweep/results.csv")
    assert [(r["label"], r["seed"]) for r in rows] == [
        (label, s) for label in ("w16", "w64") for s in (0, 1, 2)]
