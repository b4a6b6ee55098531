"""The ``innerlab`` command line.

    innerlab envs                     one line per environment
    innerlab recipes                  one line per recipe
    innerlab demo [--out DIR]         picture every environment (train vs test) under runs/demo/
    innerlab run <recipe> [options]   run an experiment end to end into a run directory

``innerlab run <recipe> --help`` lists a recipe's options: they are the fields
of its config dataclass (see :mod:`innerlab.recipes`), so every recipe has
``--quick`` (small preset) and ``--out DIR`` (run directory, default
``runs/<recipe>``).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Annotated, Any, Union

import tyro
from rich.console import Console

__all__ = ["main", "env_lines", "recipe_lines"]


@dataclasses.dataclass
class Envs:
    """List the environments: name, experiment, observation shape, actions."""


@dataclasses.dataclass
class Recipes:
    """List the recipes `innerlab run` can run."""


def _demo_config_type():
    from innerlab.demo import DemoConfig

    return DemoConfig


def _format_rows(rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, two spaces apart (stable for grep and scripts)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _describe_actions(space: Any) -> str:
    from innerlab.envs.core import Discrete

    if isinstance(space, Discrete):
        return f"{space.n} actions"
    return f"Box[{space.low}, {space.high}]^{tuple(space.shape)}"


def env_lines() -> list[str]:
    """A header and one line per registered env: name, experiment, obs shape, actions."""
    from innerlab.envs import list_envs, make

    rows = [("name", "experiment", "obs shape", "actions")]
    for name in list_envs():
        env, params = make(name)
        obs_shape = str(tuple(env.observation_space(params).shape))
        actions = _describe_actions(env.action_space(params))
        rows.append((name, env.experiment, obs_shape, actions))
    return _format_rows(rows)


def recipe_lines() -> list[str]:
    """A header and one line per registered recipe: name and description."""
    from innerlab.recipes import get_recipe, list_recipes

    rows = [("recipe", "description")]
    rows += [(name, get_recipe(name).description) for name in list_recipes()]
    return _format_rows(rows)


@dataclasses.dataclass
class Run:
    """Run an experiment end to end: `innerlab run <recipe> [options]` (see `innerlab recipes`)."""


def _cli_type() -> Any:
    """The top-level tyro type: a union of the subcommands."""
    return Union[  # noqa: UP007
        Annotated[Envs, tyro.conf.subcommand("envs")],
        Annotated[Recipes, tyro.conf.subcommand("recipes")],
        Annotated[
            _demo_config_type(),
            tyro.conf.subcommand(
                "demo", description="Picture one random episode of every env, train vs test."
            ),
        ],
        Annotated[Run, tyro.conf.subcommand("run")],
    ]


def _parse_run(args: Sequence[str], console: Console) -> tuple[str, Any]:
    """``run <recipe> [options]``: the recipe's config dataclass parsed by tyro.

    Without a recipe name (or with ``--help``) prints the recipes and exits;
    an unknown name exits with status 2 and a message listing the known ones.
    """
    from innerlab.recipes import RecipeConfig, get_recipe, list_recipes

    names = list_recipes()
    if len(args) < 2 or args[1].startswith("-"):
        console.print(
            "usage: innerlab run <recipe> [--quick] [--out DIR] [recipe options]\n", markup=False
        )
        console.print(
            "\n".join(recipe_lines()) if names else "(no recipes are registered)", markup=False
        )
        console.print("\n`innerlab run <recipe> --help` lists a recipe's options.")
        raise SystemExit(0 if len(args) >= 2 and args[1] in ("-h", "--help") else 2)
    name = args[1]
    if name not in names:
        console.print(
            f"[red]error:[/red] unknown recipe {name!r}; registered recipes: "
            f"{', '.join(names) or '(none)'}. See `innerlab recipes`."
        )
        raise SystemExit(2)
    recipe = get_recipe(name)
    parse = functools.partial(tyro.cli, recipe.config_cls, args=list(args[2:]),
                              prog=f"innerlab run {name}", description=recipe.description)
    config = parse()
    if config.quick and isinstance(config, RecipeConfig):
        # tyro passes every field to the constructor, so the config cannot tell an option
        # given on the command line from a default. Parse again with the quick preset as
        # the defaults: the options given on the command line win over it, whatever value.
        config = parse(default=recipe.config_cls(quick=True).resolved())
    return name, config


def _run_demo(config: Any, console: Console) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from innerlab.demo import run_demo
    from innerlab.envs import list_envs

    names = list(config.envs) or list_envs()
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]demo[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(names))

        def advance(name: str) -> None:
            if progress.tasks[task].description:
                progress.advance(task)
            progress.update(task, description=name)

        records = run_demo(config, progress=advance)
        progress.advance(task)
    for r in records:
        console.print(f"  {r['env']:<24} -> {config.out}/{r['file']}")
    console.print(
        f"Wrote {len(records)} strips and {config.out}/index.md "
        f"in {time.perf_counter() - start:.0f} s."
    )


MAP_COUNT_FILE = "/proc/sys/vm/max_map_count"
MIN_MAP_COUNT = 262144


def map_count_warning(path: str = MAP_COUNT_FILE, minimum: int = MIN_MAP_COUNT) -> str | None:
    """A warning when the kernel's limit on memory mappings per process is below ``minimum``.

    Every program XLA compiles for the CPU maps memory of its own, and a full preset compiles
    thousands (one per stage, shape and option), so a long run can reach Linux's default
    limit of 65530 mappings; XLA then fails with "LLVM compilation error: Cannot allocate
    memory" though memory is free (a robust-reward full preset did after 45 minutes; its
    process held 11k mappings three minutes in). ``None`` where the limit is high enough or
    unknown (not Linux).
    """
    try:
        limit = int(pathlib.Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if limit >= minimum:
        return None
    return (f"vm.max_map_count is {limit}: a long run compiles thousands of XLA programs and "
            f"may fail with 'LLVM compilation error: Cannot allocate memory'. Raise it with "
            f"`sudo sysctl -w vm.max_map_count={minimum}` (a recipe with --resume keeps the "
            "stages a killed run finished).")


def _run_recipe(name: str, config: Any, console: Console) -> None:
    from innerlab.recipes import run_recipe

    start = time.perf_counter()
    console.print(f"[bold]innerlab run {name}[/bold] (quick={config.quick})")
    warning = None if config.quick else map_count_warning()
    if warning:
        console.print(f"[yellow]warning:[/yellow] {warning}", markup=True)
    result = run_recipe(name, config)
    where = getattr(result, "path", None) or (config.out or f"runs/{name}")
    seconds = time.perf_counter() - start
    console.print(f"Done in {seconds:.0f} s; results in {where}/ (read report.md first)")


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``innerlab`` console script."""
    args = list(sys.argv[1:] if args is None else args)
    console = Console(highlight=False)
    if args[:1] == ["run"]:
        _run_recipe(*_parse_run(args, console), console)
        return
    command = tyro.cli(
        _cli_type(), args=args, prog="innerlab",
        description="innerlab: experiments in inner alignment (see docs/cli.md).",
    )
    if isinstance(command, Envs):
        print("\n".join(env_lines()))
    elif isinstance(command, Recipes):
        print("\n".join(recipe_lines()))
    elif isinstance(command, _demo_config_type()):
        _run_demo(command, console)


if __name__ == "__main__":
    main()
