"""Sweeps: a grid of agent configs x seeds, trained and measured, as one tidy table.

A sweep is a list of :class:`Cell` s (one agent config each, with the axis values
that define it), a list of seeds and a ``measure(result, cell) -> rows``
function that turns one cell's trained agents into table rows (one dict per
row, each with a ``"seed"``). :func:`run_sweep` runs every cell and writes::

    <out>/
      sweep.json              the cells (label, axes, agent config) and seeds
      cells/<label>/agent/    the cell's training run (agents.train: config, metrics, checkpoint)
      cells/<label>/rows.jsonl  the cell's rows, written when the cell is finished
      results.csv             every finished cell's rows: the tidy table
      results.parquet         the same rows with typed columns (``parquet=True``; needs pyarrow)

Backends:

``"local"`` (default)
    one process; each cell's seeds train side by side (``vmap``, through
    :func:`innerlab.agents.train`), cells one after another.
``"ray"``
    each cell is a Ray Tune trial (``pip install 'innerlab[ray]'``), so a user with
    a cluster runs a large grid there: ``ray_address="auto"`` joins a running
    cluster (``ray start --head`` / ``ray up``), ``None`` starts a local Ray.
    Trials report their rows back to the driver, which writes them, so the
    workers need no shared file system; with one, resume also survives a lost driver.

A sweep killed mid-way resumes from its finished cells (``rows.jsonl`` exists),
and a cell killed mid-training resumes from its last checkpoint, bit-identical
to an uninterrupted run; so the same cells and seeds give the same table.
A directory written by a different sweep (other configs or seeds for a label)
is refused rather than mixed.

:func:`ray_init` is the one Ray set-up every Ray-backed part of innerlab uses.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from innerlab.agents.config import AgentConfig
from innerlab.agents.driver import TrainResult, train

__all__ = [
    "BACKENDS",
    "Cell",
    "SweepResult",
    "load_rows",
    "ray_init",
    "read_csv",
    "read_parquet",
    "require_pyarrow",
    "run_cell",
    "run_sweep",
    "write_csv",
    "write_parquet",
]

BACKENDS = ("local", "ray")
SWEEP = "sweep.json"
ROWS = "rows.jsonl"
RESULTS = "results.csv"
RESULTS_PARQUET = "results.parquet"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")

Measure = Callable[[TrainResult, "Cell"], list[dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One agent config of a sweep.

    ``label``: unique, file-name safe (letters, digits, ``._=+-``); ``axes``: the
    values that define the cell, as ``(name, value)`` pairs, copied into every row
    of the table (e.g. ``(("kind", "ppo-lstm"), ("width", 64))``).
    """

    label: str
    config: AgentConfig
    axes: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        if not isinstance(self.label, str) or not _LABEL.match(self.label):
            raise ValueError(
                f"Cell 'label' must be a non-empty file-name-safe string (letters, digits, "
                f"'._=+-', not starting with a symbol), got {self.label!r}"
            )
        if not isinstance(self.config, AgentConfig):
            raise TypeError(f"Cell 'config' must be an AgentConfig (innerlab.agents.make), "
                            f"got {type(self.config).__name__}")
        axes = dict(self.axes) if not isinstance(self.axes, Mapping) else self.axes
        object.__setattr__(self, "axes", tuple(axes.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "axes": dict(self.axes), "config": self.config.to_dict()}


@dataclasses.dataclass
class SweepResult:
    """Every finished cell's rows (the tidy table) and where they were written."""

    rows: list[dict[str, Any]]
    path: Path
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...]

    @property
    def csv(self) -> Path:
        return self.path / RESULTS

    @property
    def parquet(self) -> Path:
        """Where ``run_sweep(..., parquet=True)`` wrote the typed copy of the table."""
        return self.path / RESULTS_PARQUET

    def column(self, name: str) -> list[Any]:
        """One column of the table (``None`` where a row lacks it)."""
        return [row.get(name) for row in self.rows]


# ------------------------------------------------------------------------------ tables


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for row in rows:
        cols.update(dict.fromkeys(row))
    return list(cols)


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``rows`` as a CSV file (columns: the union of keys, in order of appearance)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=_columns(rows), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    os.replace(tmp, path)
    return path


def _csv_value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, bool):
        return str(v)
    return v


def _parse(value: str) -> Any:
    if value in ("True", "False"):
        return value == "True"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a table :func:`write_csv` wrote (numbers and booleans parsed back)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def require_pyarrow() -> None:
    """Raise ``ImportError`` saying how to install pyarrow (Parquet tables) when it is missing;
    cheap (does not import it), so callers check before hours of training, not after."""
    if importlib.util.find_spec("pyarrow") is None:
        raise ImportError("Parquet tables need pyarrow: pip install pyarrow (or 'innerlab[dev]')")


def _arrow_type(name: str, values: Sequence[Any]) -> Any:
    """The column type of ``values`` (``None``: missing): bool, int64, float64 (ints and
    floats mixed are float64), string, or null when every value is missing."""
    import pyarrow as pa

    kinds = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool | np.bool_):
            kinds.add("bool")
        elif isinstance(v, numbers.Integral):
            kinds.add("int")
        elif isinstance(v, numbers.Real):
            kinds.add("float")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            kinds.add(type(v).__name__)
    if not kinds:
        return pa.null()
    if kinds <= {"int", "float"}:
        return pa.int64() if kinds == {"int"} else pa.float64()
    if len(kinds) == 1 and kinds <= {"bool", "str"}:
        return pa.bool_() if kinds == {"bool"} else pa.string()
    raise TypeError(f"column {name!r} must hold one kind of scalar (bool, int/float or str) "
                    f"to be written as Parquet, got {sorted(kinds)}")


def write_parquet(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``rows`` as a Parquet file: the columns of :func:`write_csv`, in the same order,
    each typed (bool, int64, float64 with NaN kept, string; a row lacking a key is null).

    Needs pyarrow (``pip install pyarrow``). :func:`read_parquet` reads the rows back.
    """
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    columns = {}
    for name in _columns(rows):
        values = [row.get(name) for row in rows]
        columns[name] = pa.array(values, type=_arrow_type(name, values))
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)
    return path


def read_parquet(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a table :func:`write_parquet` wrote (``None`` where a row lacked a key)."""
    require_pyarrow()
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    from innerlab.rundir import to_jsonable

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(to_jsonable(dict(row)), allow_nan=True) + "\n")
    os.replace(tmp, path)  # the cell counts as finished only once this file exists


def _read_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_rows(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of every finished cell of the sweep in ``out``, in the sweep's cell order."""
    out = Path(out)
    meta = json.loads((out / SWEEP).read_text())
    rows = []
    for cell in meta["cells"]:
        path = out / "cells" / cell["label"] / ROWS
        if path.exists():
            rows.extend(_read_rows(path))
    return rows


# ------------------------------------------------------------------------------ cells


def _check_cells(cells: Sequence[Cell]) -> tuple[Cell, ...]:
    cells = tuple(cells)
    if not cells:
        raise ValueError("argument 'cells' must hold at least one Cell, got none")
    bad = [type(c).__name__ for c in cells if not isinstance(c, Cell)]
    if bad:
        raise TypeError(f"argument 'cells' must hold Cell objects, got {bad[:3]}")
    labels = [c.label for c in cells]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        raise ValueError(f"argument 'cells' repeats the label(s) {dupes}; labels must be unique")
    return cells


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    try:
        seeds = tuple(seeds)
    except TypeError:
        raise TypeError(f"argument 'seeds' must be a list of ints, got {seeds!r}") from None
    ok = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    if not seeds or not ok or len(set(seeds)) != len(seeds):
        raise ValueError(f"argument 'seeds' must be distinct ints >= 0, got {seeds!r}")
    return seeds


def _cell_dir(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.label


def run_cell(cell: Cell, seeds: Sequence[int], out: str | os.PathLike, measure: Measure, *,
             progress: bool = True) -> list[dict[str, Any]]:
    """Train (or resume) one cell's seeds, measure them and write ``rows.jsonl``.

    Returns the rows, each with the cell's ``label`` and axes in front. A cell whose
    ``rows.jsonl`` exists is not run again: its rows are read back.
    """
    seeds = _check_seeds(seeds)
    root = _cell_dir(Path(out), cell)
    done = root / ROWS
    if done.exists():
        return _read_rows(done)
    root.mkdir(parents=True, exist_ok=True)
    result = train(cell.config, list(seeds), root / "agent", resume=True, progress=progress)
    rows = []
    for row in measure(result, cell):
        if "seed" not in row:
            raise ValueError(f"measure returned a row without a 'seed' for cell {cell.label!r}: "
                             f"{sorted(row)}")
        rows.append({"label": cell.label, **dict(cell.axes), **row})
    _write_rows(done, rows)
    return rows


def _open_sweep(out: Path, cells: tuple[Cell, ...], seeds: tuple[int, ...]) -> None:
    """Write ``sweep.json``, or check that an existing one describes the same cells."""
    meta = {"seeds": list(seeds), "cells": [c.to_dict() for c in cells]}
    path = out / SWEEP
    if path.exists():
        old = json.loads(path.read_text())
        old_cells = {c["label"]: c for c in old["cells"]}
        if old["seeds"] != list(seeds):
            raise ValueError(f"cannot resume the sweep in {out}: it ran seeds {old['seeds']}, "
                             f"not {list(seeds)}; use another out directory")
        from innerlab.rundir import to_jsonable

        for c in meta["cells"]:
            prev = old_cells.get(c["label"])
            if prev is not None and prev != to_jsonable(c):
                raise ValueError(
                    f"cannot resume the sweep in {out}: cell {c['label']!r} was run with another "
                    "config or axes; use another out directory"
                )
        labels = {c["label"] for c in meta["cells"]}
        meta["cells"] = meta["cells"] + [c for c in old["cells"] if c["label"] not in labels]
    out.mkdir(parents=True, exist_ok=True)
    from innerlab.rundir import to_jsonable

    tmp = path.with_name(SWEEP + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(meta), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run_sweep(
    cells: Sequence[Cell],
    seeds: Sequence[int],
    out: str | os.PathLike,
    measure: Measure,
    *,
    backend: str = "local",
    progress: bool = True,
    ray_address: str | None = None,
    resources: Mapping[str, float] | None = None,
    parquet: bool = False,
) -> SweepResult:
    """Run every cell (resuming finished ones), then write and return the tidy table.

    Args:
        cells: the grid, one :class:`Cell` per agent config.
        seeds: trained for every cell (side by side, ``vmap``).
        out: the sweep directory (see the module docstring).
        measure: ``measure(result, cell) -> rows``, one dict per row, each with ``"seed"``.
            With the Ray backend it must be picklable (a module-level function or a
            :class:`innerlab.envs.rollout.bind` of one) and its module importable on the
            workers (a function of ``__main__`` is shipped by value).
        backend: ``"local"`` or ``"ray"``.
        ray_address: Ray backend: the cluster to join (``"auto"``), or ``None`` to
            start Ray on this machine.
        resources: Ray backend: resources per trial (default ``{"cpu": 1}``; e.g.
            ``{"cpu": 4, "gpu": 1}``).
        parquet: also write ``results.parquet``, the same rows with typed columns (needs
            pyarrow; checked before any cell runs). Finished cells are read back from their
            ``rows.jsonl`` either way, so a sweep resumed with ``parquet=True`` writes it
            without running them again.
    """
    cells = _check_cells(cells)
    seeds = _check_seeds(seeds)
    if backend not in BACKENDS:
        raise ValueError(f"argument 'backend' must be one of {BACKENDS}, got {backend!r}")
    if not callable(measure):
        raise TypeError(f"argument 'measure' must be callable, got {type(measure).__name__}")
    if parquet:
        require_pyarrow()
    out = Path(os.fspath(out)).absolute()
    _open_sweep(out, cells, seeds)
    todo = [c for c in cells if not (_cell_dir(out, c) / ROWS).exists()]
    if backend == "local":
        from rich.console import Console

        console = Console(stderr=True, quiet=not progress)
        for i, cell in enumerate(todo):
            console.print(f"[bold]sweep[/bold] cell {i + 1}/{len(todo)} to run "
                          f"({len(cells) - len(todo)} of {len(cells)} already finished): "
                          f"{cell.label}")
            run_cell(cell, seeds, out, measure, progress=progress)
    elif todo:
        _run_ray(todo, seeds, out, measure, ray_address, resources or {"cpu": 1})
    rows = []
    for cell in cells:
        rows.extend(_read_rows(_cell_dir(out, cell) / ROWS))
    write_csv(rows, out / RESULTS)
    if parquet:
        write_parquet(rows, out / RESULTS_PARQUET)
    return SweepResult(rows, out, cells, seeds)


# ------------------------------------------------------------------------------ Ray


def ray_init(address: str | None = None, **kwargs: Any) -> Any:
    """Start or join Ray once (the one Ray set-up of innerlab); returns the ``ray`` module.

    ``address``: ``None`` starts Ray on this machine, ``"auto"`` joins the cluster this
    machine belongs to, ``"ray://host:10001"`` a remote one. Raises ``ImportError``
    saying how to install Ray when it is missing.
    """
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "the Ray backend needs Ray Tune: pip install 'innerlab[ray]' (or 'ray[tune]')"
        ) from e
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True, **kwargs)
    return ray


def _ray_trial(cells: dict[str, Cell], seeds: tuple[int, ...], out: str, measure: Measure,
               params: dict[str, Any]) -> None:
    from ray import tune

    rows = run_cell(cells[params["label"]], seeds, out, measure, progress=False)
    report = getattr(tune, "report", None)
    if report is None:  # pragma: no cover - Ray < 2.41
        from ray import train as ray_train

        report = ray_train.report
    from innerlab.rundir import to_jsonable

    report({"rows": json.dumps(to_jsonable(rows), allow_nan=True), "num_rows": len(rows)})


def _run_ray(todo: list[Cell], seeds: tuple[int, ...], out: Path, measure: Measure,
             address: str | None, resources: Mapping[str, float]) -> None:
    import functools

    ray = ray_init(address)
    from ray import tune

    run_config_cls = getattr(tune, "RunConfig", None)
    if run_config_cls is None:  # pragma: no cover - Ray < 2.41
        from ray.train import RunConfig as run_config_cls
    cells = {c.label: c for c in todo}
    trainable = tune.with_resources(
        functools.partial(_ray_trial, cells, seeds, str(out), measure), dict(resources)
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"label": tune.grid_search([c.label for c in todo])},
        run_config=run_config_cls(name="sweep", storage_path=str(out / "ray"), verbose=0),
    )
    grid = tuner.fit()
    errors = []
    for result in grid:
        label = (getattr(result, "config", None) or {}).get("label")
        if result.error is not None or label not in cells or not result.metrics:
            errors.append(f"{label}: {result.error}")
            continue
        path = _cell_dir(out, cells[label]) / ROWS
        if not path.exists():  # the trial ran on a machine without this file system
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_rows(path, json.loads(result.metrics["rows"]))
    del ray
    if errors:
        raise RuntimeError("Ray trials failed (finished cells are kept; run again to resume): "
                           + "; ".join(errors))
