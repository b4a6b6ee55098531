"""Recipes: one module per experiment, run end to end by ``innerlab run <name>``.

A recipe is a config dataclass (its fields become the command-line options,
via tyro) and a function ``run_fn(config)`` that writes a run directory
(see :class:`innerlab.rundir.RunDir`). A recipe module registers
itself on import::

    @dataclasses.dataclass
    class MyConfig(RecipeConfig):
        steps: int = 10_000
        QUICK: ClassVar[dict] = {"steps": 500}

    def run(config: MyConfig) -> RunDir: ...

    register_recipe("my-recipe", MyConfig, run, "One line saying what it shows.")

Every module in this package (other than ``rundir`` and private ones) is
imported the first time recipes are listed or looked up, so adding a file is
all it takes to add a recipe. Config classes subclass :class:`RecipeConfig`,
which gives every recipe the same ``out`` (run directory) and ``quick``
(small preset, for smoke tests and the demo) options.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from innerlab.rundir import RunDir, to_jsonable

__all__ = [
    "Recipe",
    "RecipeConfig",
    "RunDir",
    "default_out",
    "get_recipe",
    "list_recipes",
    "register_recipe",
    "run_recipe",
    "to_jsonable",
]

RUNS_ROOT = "runs"
_NOT_RECIPE_MODULES = frozenset({"rundir"})


@dataclasses.dataclass
class RecipeConfig:
    """Options every recipe shares; subclass it and add the recipe's own fields.

    ``QUICK`` (a class attribute, not an option) maps field names to the values
    of the quick preset. ``--quick`` applies them to every field the user did not
    set, so explicit options win over the preset even when they equal the default
    (``--quick --seeds 5`` keeps 5 seeds where the default is 5 and the preset 2).
    A field counts as set when it is passed to the constructor
    (``Config(quick=True, seeds=10)`` sets ``quick`` and ``seeds``); the CLI passes
    the options on the command line (see :func:`innerlab.cli`'s ``_parse_run``).
    ``dataclasses.replace`` passes every field, so it sets them all: build a quick
    config with ``Config(quick=True, ...)``, not ``replace(config, quick=True)``.
    """

    out: str = ""
    """Run directory; empty means ``runs/<recipe name>``."""
    quick: bool = False
    """Use the small preset (QUICK): minutes on a laptop CPU, for smoke tests and demos."""

    QUICK: ClassVar[Mapping[str, Any]] = {}

    def __new__(cls, *args: Any, **kwargs: Any):
        # Record which fields the caller set: dataclass defaults are filled in by
        # __init__, after which "left at its default" and "set to the default" look alike.
        self = super().__new__(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        object.__setattr__(self, "_explicit", frozenset(names[: len(args)]) | frozenset(kwargs))
        return self

    @property
    def explicit_fields(self) -> frozenset[str]:
        """The fields the caller set (passed to the constructor); the quick preset leaves
        them alone."""
        return getattr(self, "_explicit", frozenset())

    def resolved(self) -> RecipeConfig:
        """This config with the quick preset applied (if ``quick``) to the fields the caller
        did not set."""
        if not self.quick:
            return self
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(self.QUICK) - set(fields))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.QUICK names unknown field(s) {unknown}; "
                f"fields are {sorted(fields)}"
            )
        changes = {k: v for k, v in self.QUICK.items() if k not in self.explicit_fields}
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A registered experiment: its name, config class, entry function and one-line description."""

    name: str
    config_cls: type
    run_fn: Callable[[Any], Any]
    description: str


_RECIPES: dict[str, Recipe] = {}
_discovered = False


def register_recipe(
    name: str, config_cls: type, run_fn: Callable[[Any], Any], description: str
) -> Recipe:
    """Make ``innerlab run <name>`` call ``run_fn(config_cls(...))``.

    ``config_cls`` must be a dataclass with ``out: str`` and ``quick: bool``
    fields (subclass :class:`RecipeConfig`). Registering a different recipe
    under a taken name is an error; re-registering the same function (a module
    reload) replaces the old entry.
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"argument 'name' must be a non-empty string without spaces, got {name!r}")
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"argument 'config_cls' must be a dataclass type, got {config_cls!r}")
    field_types = {f.name: f.type for f in dataclasses.fields(config_cls)}
    missing = [f for f in ("out", "quick") if f not in field_types]
    if missing:
        raise TypeError(
            f"argument 'config_cls' ({config_cls.__name__}) must have fields 'out: str' and "
            f"'quick: bool' (subclass innerlab.recipes.RecipeConfig); missing {missing}"
        )
    if not callable(run_fn):
        raise TypeError(f"argument 'run_fn' must be callable, got {run_fn!r}")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"argument 'description' must be a non-empty string, got {description!r}")
    old = _RECIPES.get(name)
    if old is not None and _qualname(old.run_fn) != _qualname(run_fn):
        raise ValueError(
            f"recipe {name!r} is already registered (by {_qualname(old.run_fn)}); "
            f"cannot register {_qualname(run_fn)} under the same name"
        )
    recipe = Recipe(name, config_cls, run_fn, description.strip())
    _RECIPES[name] = recipe
    return recipe


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _discover() -> None:
    """Import every recipe module of this package once, so each registers itself."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_RECIPE_MODULES:
            continue
        importlib.import_module(f"{__name__}.{info.name}")


def list_recipes() -> list[str]:
    """Names of every registered recipe, sorted."""
    _discover()
    return sorted(_RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe registered as ``name``; an unknown name raises ``KeyError`` listing known ones."""
    _discover()
    if name not in _RECIPES:
        raise KeyError(f"unknown recipe {name!r}; registered recipes: {sorted(_RECIPES)}")
    return _RECIPES[name]


def default_out(name: str) -> str:
    """Where recipe ``name`` writes when ``out`` is empty: ``runs/<name>``."""
    return f"{RUNS_ROOT}/{name}"


def run_recipe(name: str, config: Any | None = None) -> Any:
    """Run recipe ``name`` with ``config`` (default: the config class's defaults).

    Applies the quick preset, fills an empty ``out`` with ``runs/<name>`` and
    returns whatever the recipe's ``run_fn`` returns (usually its ``RunDir``).
    """
    recipe = get_recipe(name)
    if config is None:
        config = recipe.config_cls()
    if not isinstance(config, recipe.config_cls):
        raise TypeError(
            f"argument 'config' for recipe {name!r} must be a {recipe.config_cls.__name__}, "
            f"got {type(config).__name__}"
        )
    if isinstance(config, RecipeConfig):
        config = config.resolved()
    if not config.out:
        config = dataclasses.replace(config, out=default_out(name))
    return recipe.run_fn(config)
