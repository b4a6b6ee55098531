"""Finding environments by name: ``make``, ``list_envs`` and gymnasium registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from innerlab.envs.core import Environment, EnvParams, replace_params

_REGISTRY: dict[str, Callable[[], Environment]] = {}


def register(name: str, factory: Callable[[], Environment]) -> None:
    """Make ``factory()`` available as ``make(name)``."""
    _REGISTRY[name] = factory


def list_envs() -> list[str]:
    """Names of every registered environment."""
    return sorted(_REGISTRY)


def make(name: str, **overrides: Any) -> tuple[Environment, EnvParams]:
    """``env, params = make("Orchard-v0", split="test")``.

    Unknown names and unknown or inconsistent params raise a clear error.
    """
    if name.startswith("innerlab/"):
        name = name[len("innerlab/") :]
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment {name!r}; registered: {list_envs()}")
    env = _REGISTRY[name]()
    return env, replace_params(env.default_params, **overrides)
