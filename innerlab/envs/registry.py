"""Finding environments by name: ``make``, ``list_envs`` and gymnasium registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from innerlab.envs.core import Environment, EnvParams, replace_params
from innerlab.envs.egocentric import Egocentric
from innerlab.envs.wrappers import IntegerObs

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


OBSERVATIONS = ("onehot", "int")


def make(
    name: str, *, egocentric: bool = False, observation: str = "onehot", **overrides: Any
) -> tuple[Environment, EnvParams]:
    """``env, params = make("Orchard-v0", split="test")``.

    ``egocentric=True`` wraps a gridworld in ``Egocentric`` (agent-centred
    observations; same task). ``observation="int"`` wraps it (after
    ``Egocentric``) in ``IntegerObs``: ``uint8`` slots instead of the float
    one-hot grid, the same information. Unknown names and unknown or
    inconsistent params raise a clear error.
    """
    if observation not in OBSERVATIONS:
        raise ValueError(
            f"argument 'observation' must be one of {OBSERVATIONS}, got {observation!r}"
        )
    if name.startswith("innerlab/"):
        name = name[len("innerlab/") :]
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment {name!r}; registered: {list_envs()}")
    env = _REGISTRY[name]()
    params = replace_params(env.default_params, **overrides)
    if egocentric:
        env = Egocentric(env)
    if observation == "int":
        env = IntegerObs(env)
    return env, params
