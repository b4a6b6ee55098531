"""The run directory every recipe and training run writes, and JSON conversion of results.

Layout (DESIGN.md)::

    runs/<recipe>/
      config.json     the exact options the run used
      metrics.jsonl   one JSON object per logged step, appended as the run goes
      summary.json    the headline numbers, written at the end
      *.png           plots
      report.md       what a person reads first

Results are often numpy or JAX scalars and arrays; :func:`to_jsonable` turns
them (and dataclasses, Equinox params, tuples, paths) into plain JSON types so
that every file is readable without innerlab. Non-finite floats are written
as JSON's common extensions ``NaN``/``Infinity`` (Python's ``json`` and pandas
read them), never silently dropped.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["RunDir", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (dict, list, str, int, float, bool, None).

    Handles numpy/JAX scalars and arrays (as nested lists), dataclasses and
    Equinox modules (as dicts of their fields), tuples and sets (as lists),
    paths and enums; raises ``TypeError`` naming the type of anything else.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if _is_jax_array(obj):
        return np.asarray(obj).tolist()
    if isinstance(obj, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=repr)
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    raise TypeError(
        f"cannot convert a {type(obj).__module__}.{type(obj).__qualname__} to JSON; "
        "convert it to numbers, strings, lists or dicts first"
    )


def _is_jax_array(obj: Any) -> bool:
    try:
        import jax
    except ImportError:  # pragma: no cover - jax is a dependency
        return False
    return isinstance(obj, jax.Array)


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (bool, int, float, np.generic)) or key is None:
        return str(to_jsonable(key))
    raise TypeError(f"dict keys must be strings or numbers to be written as JSON, got {key!r}")


def _dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(to_jsonable(obj), allow_nan=True, **kwargs)


class RunDir:
    """A recipe's output directory: config, metrics, summary, PNG plots and report.

    Creating a ``RunDir`` on a directory that exists and is not empty raises
    ``FileExistsError`` so a run never mixes its files with an older run's;
    pass ``resume=True`` to keep appending to it on purpose.
    """

    CONFIG = "config.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    REPORT = "report.md"

    def __init__(self, path: str | os.PathLike, resume: bool = False):
        self.path = pathlib.Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"run directory {str(self.path)!r} exists and is a file")
        if self.path.is_dir() and any(self.path.iterdir()) and not resume:
            raise FileExistsError(
                f"run directory {str(self.path)!r} already exists and is not empty; "
                "choose another --out, delete it, or pass resume=True to add to it"
            )
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> pathlib.Path:
        """Path of a file ``name`` inside the run directory (for other artefacts, e.g. models)."""
        if not name or pathlib.PurePath(name).is_absolute() or ".." in pathlib.PurePath(name).parts:
            raise ValueError(
                f"argument 'name' must be a relative path inside the run, got {name!r}"
            )
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def _write_text(self, name: str, text: str) -> pathlib.Path:
        target = self.file(name)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        return target

    # -- the standard files ----------------------------------------------------------------
    def write_config(self, config: Any) -> pathlib.Path:
        """Write ``config.json`` from a dict or a (config) dataclass."""
        return self._write_text(self.CONFIG, _dumps(config, indent=2, sort_keys=True) + "\n")

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Append one line to ``metrics.jsonl`` (``step`` first, when given)."""
        if not isinstance(metrics, Mapping):
            raise TypeError(f"argument 'metrics' must be a dict, got {type(metrics).__name__}")
        row = dict(metrics) if step is None else {"step": step, **metrics}
        line = _dumps(row)
        with open(self.file(self.METRICS), "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def clear_metrics(self) -> None:
        """Empty ``metrics.jsonl``: for a resumed run that logs its whole history again."""
        self._write_text(self.METRICS, "")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row logged so far, in order."""
        path = self.path / self.METRICS
        if not path.exists():
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_summary(self, summary: Mapping[str, Any]) -> pathlib.Path:
        """Write ``summary.json``: the run's headline numbers."""
        if not isinstance(summary, Mapping):
            raise TypeError(f"argument 'summary' must be a dict, got {type(summary).__name__}")
        return self._write_text(self.SUMMARY, _dumps(summary, indent=2, sort_keys=True) + "\n")

    def read_json(self, name: str) -> Any:
        """Read back a JSON file of the run (e.g. ``config.json``, ``summary.json``)."""
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def save_figure(self, fig: Any, name: str, dpi: int = 120) -> pathlib.Path:
        """Save a matplotlib figure (closing it) or an ``[H, W, 3|4]`` image as ``<name>.png``."""
        if not name.endswith(".png"):
            name = f"{name}.png"
        target = self.file(name)
        if hasattr(fig, "savefig"):
            import matplotlib.pyplot as plt

            fig.savefig(target, dpi=dpi, bbox_inches="tight")
            plt.close(fig)
            return target
        image = np.asarray(fig)
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(
                f"argument 'fig' must be a matplotlib figure or an image array [H, W, 3|4], "
                f"got an array of shape {image.shape}"
            )
        import matplotlib.image

        matplotlib.image.imsave(target, image)
        return target

    def write_report(self, markdown: str) -> pathlib.Path:
        """Write ``report.md``, the page a person reads first."""
        if not isinstance(markdown, str):
            raise TypeError(f"argument 'markdown' must be a str, got {type(markdown).__name__}")
        if not markdown.endswith("\n"):
            markdown += "\n"
        return self._write_text(self.REPORT, markdown)

    def files(self) -> list[str]:
        """Relative paths of every file in the run directory, sorted."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())

