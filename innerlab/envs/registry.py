"""Finding environments by name: ``make``, ``list_envs`` and gymnasium registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from innerlab.envs.core import Environment, EnvParams, replace_params
from innerlab.envs.egocentric import Egocentric

_REGISTRY: dict[str, Callable[[], Environment]] = {}


def register(name: str, factory: Callable[[], Environment]) -> None:
    """Make ``factory()`` available as ``make(name)``."""
    _REGISTRY[name] = factory


def unregister(name: str) -> None:
    """Forget ``name`` (for code that registered an env for a while, e.g. a test)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment {name!r}; registered: {list_envs()}")
    del _REGISTRY[name]


def list_envs() -> list[str]:
    """Names of every registered environment."""
    return sorted(_REGISTRY)


def make(
    name: str, *, egocentric: bool = False, **overrides: Any
) -> tuple[Environment, EnvParams]:
    """``env, params = make("Orchard-v0", split="test")``.

    ``egocentric=True`` wraps a gridworld in ``Egocentric`` (agent-centred
    observations; same task). Unknown names and unknown or inconsistent params
    raise a clear error.
    """
    if name.startswith("innerlab/"):
        name = name[len("innerlab/") :]
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment {name!r}; registered: {list_envs()}")
    env = _REGISTRY[name]()
    params = replace_params(env.default_params, **overrides)
    return (Egocentric(env) if egocentric else env), params
