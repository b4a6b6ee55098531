"""Sweeps (innerlab.agents.sweep): one tidy table from a grid of cells x seeds; a sweep killed
between cells or mid-training resumes to the same table; a directory of another sweep is
refused; bad options name themselves. The Ray backend runs where Ray is installed."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

import innerlab.agents as agents
from innerlab.agents.sweep import (
    Cell,
    load_rows,
    read_csv,
    read_parquet,
    run_sweep,
    write_csv,
    write_parquet,
)

TINY = agents.make(
    "ppo-lstm", env="ProxyMaze-v0", env_overrides={"height": 5, "width": 5, "max_steps": 8},
    egocentric=True, width=8, num_envs=4, num_steps=8, num_minibatches=1, update_epochs=1,
    total_steps=4 * 8 * 4, log_every=2,
)
SEEDS = [0, 1]


def _cells():
    # the same config under two labels: the machinery is under test, and one compilation
    return [Cell("a", TINY, (("lr", "x"), ("width", 8))), Cell("b", TINY, {"lr": "y", "width": 8})]


def measure(result, cell):
    """Per seed: the last logged return and a fingerprint of the trained parameters."""
    import equinox as eqx
    import jax

    rows = []
    for i, seed in enumerate(result.seeds):
        leaves = jax.tree.leaves(eqx.filter(result.state(seed), eqx.is_inexact_array))
        rows.append({"seed": seed, "env_steps": result.env_steps,
                     "fingerprint": float(sum(np.abs(np.asarray(x)).sum() for x in leaves)),
                     "episode_return": result.curve()[1][i, -1]})
    return rows


class Counting:
    def __init__(self, fail_on: str | None = None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, result, cell):
        if cell.label == self.fail_on:
            raise KeyboardInterrupt("killed")
        self.calls.append(cell.label)
        return measure(result, cell)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "fresh"
    return run_sweep(_cells(), SEEDS, out, measure, progress=False)


@pytest.mark.slow  # trains the sweep's cells (half a minute of compiling)
def test_one_tidy_row_per_cell_and_seed(fresh):
    assert [(r["label"], r["seed"]) for r in fresh.rows] == [("a", 0), ("a", 1), ("b", 0),
                                                            ("b", 1)]
    assert fresh.column("lr") == ["x", "x", "y", "y"]
    assert all(r["env_steps"] == TINY.total_steps for r in fresh.rows)
    table = read_csv(fresh.csv)
    assert [(r["label"], r["seed"], r["width"]) for r in table] == [
        (r["label"], r["seed"], r["width"]) for r in fresh.rows]
    assert load_rows(fresh.path) == fresh.rows
    # seeds differ, and the same seed trained in two cells gives the same agent
    fp = {(r["label"], r["seed"]): r["fingerprint"] for r in fresh.rows}
    assert fp["a", 0] != fp["a", 1] and fp["a", 0] == fp["b", 0]


@pytest.mark.slow  # trains the sweep's cells (half a minute of compiling)
def test_killed_between_cells_resumes_to_the_same_table(fresh, tmp_path):
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_cells(), SEEDS, out, Counting(fail_on="b"), progress=False)
    assert (out / "cells/a/rows.jsonl").exists() and not (out / "cells/b/rows.jsonl").exists()
    again = Counting()
    result = run_sweep(_cells(), SEEDS, out, again, progress=False)
    assert again.calls == ["b"], "the finished cell must not run again"
    assert result.csv.read_bytes() == fresh.csv.read_bytes()


@pytest.mark.slow  # trains the sweep's cells (half a minute of compiling)
def test_killed_mid_training_resumes_from_the_checkpoint(fresh, tmp_path):
    out = tmp_path / "mid"
    agents.train(TINY, SEEDS, out / "cells/a/agent", max_chunks=1, progress=False)
    result = run_sweep(_cells(), SEEDS, out, measure, progress=False)
    assert result.csv.read_bytes() == fresh.csv.read_bytes()


@pytest.mark.slow  # trains the sweep's cells (half a minute of compiling)
def test_refuses_a_directory_of_another_sweep(fresh):
    with pytest.raises(ValueError, match="seeds"):
        run_sweep(_cells(), [0, 1, 2], fresh.path, measure, progress=False)
    other = Cell("a", dataclasses.replace(TINY, width=16))
    with pytest.raises(ValueError, match="cell 'a'"):
        run_sweep([other], SEEDS, fresh.path, measure, progress=False)


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"backend": "spark"}, "backend"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"seeds": []}, "seeds"),
        ({"cells": []}, "cells"),
        ({"cells": [Cell("a", TINY), Cell("a", TINY)]}, "repeats"),
        ({"measure": 3}, "measure"),
    ],
)
def test_bad_options_are_named(tmp_path, kwargs, named):
    args = {"cells": _cells(), "seeds": SEEDS, "out": tmp_path / "s", "measure": measure,
            **kwargs}
    with pytest.raises((ValueError, TypeError), match=named):
        run_sweep(**args)


def test_bad_cells_are_named():
    with pytest.raises(ValueError, match="label"):
        Cell("../x", TINY)
    with pytest.raises(TypeError, match="config"):
        Cell("x", {"kind": "ppo-lstm"})


def test_csv_round_trip(tmp_path):
    rows = [{"a": 1, "b": 0.5, "c": "x", "d": True}, {"a": 2, "b": math.nan, "e": False}]
    back = read_csv(write_csv(rows, tmp_path / "t.csv"))
    assert back[0] == {"a": 1, "b": 0.5, "c": "x", "d": True, "e": ""}
    assert back[1]["a"] == 2 and math.isnan(back[1]["b"]) and back[1]["e"] is False
    assert json.loads(json.dumps(back[0]))


def _same(a, b):
    """Row lists equal, NaN equal to NaN."""
    nan = lambda v: isinstance(v, float) and math.isnan(v)
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(x[k] == y[k] or (nan(x[k]) and nan(y[k])) for k in x)
        for x, y in zip(a, b, strict=True))


def test_parquet_round_trip_keeps_types(tmp_path):
    import pyarrow.parquet as pq  # a dev dependency (pyproject)

    rows = [{"a": 1, "b": 0.5, "c": "x", "d": True, "f": 2},
            {"a": 2, "b": math.nan, "e": False, "f": 2.5}]
    path = write_parquet(rows, tmp_path / "t.parquet")
    schema = pq.read_schema(path)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("a", "int64"), ("b", "double"), ("c", "string"), ("d", "bool"), ("f", "double"),
        ("e", "bool")]
    back = read_parquet(path)
    assert back[0] == {"a": 1, "b": 0.5, "c": "x", "d": True, "f": 2.0, "e": None}
    assert back[1]["a"] == 2 and math.isnan(back[1]["b"]) and back[1]["e"] is False
    assert type(back[0]["a"]) is int and back[1]["c"] is None and back[1]["d"] is None
    with pytest.raises(TypeError, match="column 'g'"):
        write_parquet([{"g": 1}, {"g": "one"}], tmp_path / "bad.parquet")


def test_parquet_table_of_a_resumed_sweep_equals_the_csv(tmp_path):
    """A sweep whose cells are finished (their rows.jsonl written, as after a kill) resumes
    with parquet=True: nothing runs again, and results.parquet holds the CSV's rows, typed."""
    import pyarrow.parquet as pq

    from innerlab.agents.sweep import _write_rows

    out = tmp_path / "s"
    cells = _cells()
    finished = {c.label: [{"label": c.label, **dict(c.axes), "seed": s, "env_steps": 128,
                           "episode_return": 0.25 * s - 0.5, "done": s == 0,
                           "steps": math.nan if s else 3.0} for s in SEEDS] for c in cells}
    for label, rows in finished.items():
        (out / "cells" / label).mkdir(parents=True)
        _write_rows(out / "cells" / label / "rows.jsonl", rows)

    def must_not_run(result, cell):
        raise AssertionError(f"finished cell {cell.label} ran again")

    result = run_sweep(cells, SEEDS, out, must_not_run, progress=False, parquet=True)
    table = read_parquet(result.parquet)
    expected = finished["a"] + finished["b"]
    assert _same(table, expected) and _same(table, read_csv(result.csv))
    types = {f.name: str(f.type) for f in pq.read_schema(result.parquet)}
    assert types == {"label": "string", "lr": "string", "width": "int64", "seed": "int64",
                     "env_steps": "int64", "episode_return": "double", "done": "bool",
                     "steps": "double"}


@pytest.mark.slow  # starts Ray (about 90 s on 2 loaded cores); skipped where Ray is missing
def test_ray_backend_gives_the_local_table(fresh, tmp_path):
    """One cell as a Ray Tune trial (in a Ray worker process) gives the local rows."""
    pytest.importorskip("ray.tune")
    from innerlab.agents.sweep import ray_init

    here = str(Path(__file__).parent)  # the workers import this module's measure
    ray = ray_init(num_cpus=1, runtime_env={"env_vars": {"PYTHONPATH": here}})
    try:
        result = run_sweep(_cells()[:1], SEEDS, tmp_path / "ray", measure, backend="ray",
                           progress=False, resources={"cpu": 1})
    finally:
        ray.shutdown()
    assert result.rows == fresh.rows[:2]
    assert (tmp_path / "ray/cells/a/rows.jsonl").exists()
