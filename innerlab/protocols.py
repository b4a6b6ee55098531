"""What a reward model or an environment must provide, in one place: ``typing.Protocol`` s.

innerlab's consumers (the adversary's searches and retraining, ``innerlab.testing``'s
properties, the trainers and evaluation in ``innerlab.reward_models``, the recipes)
work with *any* object that has the right members, not only innerlab's own
classes: your own Equinox ensemble, a wrapped torch module, a planted test model,
your own environment. This module states those contracts, and ``require`` checks
one at a consumer's entry point, so a missing member is one clear ``TypeError``
naming the consumer, the contract and exactly what is missing, instead of an
``AttributeError`` deep inside a jitted function.

This module imports nothing from innerlab, so every layer may import it.

Reward models (all methods take **one example**; batch with ``jax.vmap``):

========================  ================================================================
``RewardFunction``        ``model(obs, action) -> reward``: a scalar ``[]`` or ``[K]``
``RewardEnsemble``        a ``RewardFunction`` with ``num_members`` = K; returns ``[K]``
``ActionTableEnsemble``   a ``RewardEnsemble`` with ``all_actions(obs) -> [A, K]`` (faster
                          scoring of every action; optional, used when present)
``LatentEnsemble``        a ``RewardEnsemble`` split as ``encode(obs) -> latent`` and
                          ``heads(latent, action) -> [K]``, with ``num_actions``: latent
                          (pseudo-input) search needs it
``TrainableEnsemble``     a ``RewardEnsemble`` with ``obs_shape``, ``num_actions`` and
                          ``per_member(obs [K, ...], action [K]) -> [K]``: innerlab's
                          trainers and the adversarial retraining loop need it
========================  ================================================================

Environments (innerlab's ``Environment`` base class provides all of these):

========================  ================================================================
``GroundTruthEnv``        ``num_actions``, ``sample_state``, ``observe``, ``true_reward``,
                          ``step_env``: what search, labelling and evaluation need
``GridEnv``               a ``GroundTruthEnv`` whose state is a grid: ``feature_counts``,
                          ``grid_of``, ``is_valid`` (state mutations, relaxed observations)
========================  ================================================================

Not everything can be checked by looking at members: ``gradient_search`` and
``latent_search`` also need a model JAX can differentiate, and the trainers need
its parameters to be JAX arrays (leaves of the pytree). A model that has a
member but cannot really provide it says so with a class attribute
``unsupported = {"member": "why not"}``; ``require`` then reports the member as
missing, with the reason (``TorchRewardModel`` does this).

>>> from innerlab.protocols import RewardEnsemble, require
>>> class Pair:
...     num_members = 2
...     def __call__(self, obs, action):
...         return obs.sum() * jnp.ones(2)
>>> model = require(Pair(), RewardEnsemble, consumer="my_search")  # returns it
>>> require(Pair(), LatentEnsemble, consumer="adversary.latent_search")
Traceback (most recent call last):
TypeError: adversary.latent_search needs a LatentEnsemble (...); got Pair, which is missing:
encode(obs), heads(latent, action), num_actions: int. See innerlab.protocols.LatentEnsemble.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = [
    "ActionTableEnsemble",
    "GridEnv",
    "GroundTruthEnv",
    "ImaginationModel",
    "LatentEnsemble",
    "ReturnBound",
    "RewardEnsemble",
    "RewardFunction",
    "StateFromObs",
    "TrainableEnsemble",
    "ValidatesStates",
    "missing_members",
    "protocol_members",
    "require",
    "satisfies",
]

T = TypeVar("T")

# --------------------------------------------------------------------------- reward models


@runtime_checkable
class RewardFunction(Protocol):
    """A reward: ``model(obs, action) -> reward`` for one example.

    ``obs`` is one observation (e.g. ``[H, W, C]`` float32 for the gridworlds),
    ``action`` one action (an int32 scalar for discrete envs). The reward is a
    scalar ``[]`` or one prediction per ensemble member ``[K]``. It must be
    traceable by JAX (``jax.vmap`` batches it, ``jax.jit`` compiles it).
    ``innerlab.testing``'s properties need only this.
    """

    def __call__(self, obs: Any, action: Any) -> Any:
        """The reward (``[]`` or ``[K]``) of taking ``action`` where ``obs`` was observed."""
        ...


@runtime_checkable
class RewardEnsemble(RewardFunction, Protocol):
    """K reward predictions per example: ``model(obs, action) -> [K]``.

    ``num_members`` is K. Disagreement between the members (their std, or
    max - min) marks where the training data left the reward unidentified, which
    is what the adversary searches for; it needs K >= 2.
    """

    num_members: int


@runtime_checkable
class ActionTableEnsemble(RewardEnsemble, Protocol):
    """A ``RewardEnsemble`` that scores every action of one observation at once.

    ``all_actions(obs) -> [A, K]`` must equal ``vmap(lambda a: model(obs, a))(arange(A))``;
    a model offers it when that is cheaper (one encoding for all A actions).
    Consumers use it when present and fall back to the vmap otherwise.
    """

    def all_actions(self, obs: Any) -> Any:
        """Every member's reward for every action: ``[A, K]``."""
        ...


@runtime_checkable
class LatentEnsemble(RewardEnsemble, Protocol):
    """A ``RewardEnsemble`` split into an encoder and K heads, so latents are first-class.

    ``model(obs, action) == heads(encode(obs), action)``. The latent search
    (``innerlab.adversary.latent_search``) does gradient ascent on disagreement in
    the latent space directly ("pseudo-inputs"), so ``heads`` must accept any
    latent of ``encode``'s shape, and both must be differentiable by JAX.
    ``num_actions`` is A, the number of discrete actions the heads score.
    """

    num_actions: int

    def encode(self, obs: Any) -> Any:
        """The latent every head reads, for one observation (e.g. ``[D]`` or ``[K, D]``)."""
        ...

    def heads(self, latent: Any, action: Any) -> Any:
        """Every member's reward for ``action`` from a latent (real or pseudo): ``[K]``."""
        ...


@runtime_checkable
class TrainableEnsemble(RewardEnsemble, Protocol):
    """A ``RewardEnsemble`` that innerlab's trainers can fit (``fit_rewards``, retraining).

    ``per_member(obs [K, *obs_shape], action [K]) -> [K]`` is member k's
    prediction on its *own* input ``(obs[k], action[k])``: each member trains on
    its own bootstrap batch in one vectorised call. ``obs_shape`` is one
    observation's shape and ``num_actions`` the number A of discrete actions
    (training data is checked against both). The trainable parameters must be
    floating-point JAX arrays among the model's pytree leaves (an Equinox
    module's fields), since training is ``optax`` on
    ``eqx.partition(model, eqx.is_inexact_array)``.
    """

    obs_shape: tuple[int, ...]
    num_actions: int

    def per_member(self, obs: Any, action: Any) -> Any:
        """Member k's reward on ``(obs[k], action[k])``: ``[K]``."""
        ...


# --------------------------------------------------------------------------- environments


@runtime_checkable
class GroundTruthEnv(Protocol):
    """An environment that exposes its ground truth (innerlab's ``Environment`` does).

    The adversary searches states, labels what it finds and evaluation compares
    a learned reward with the true one; all of it goes through these members.
    ``params`` are the env's (static) params; ``state`` is the env's own pytree.
    """

    def num_actions(self, params: Any = None) -> int:
        """The number A of discrete actions."""
        ...

    def sample_state(self, key: Any, params: Any = None) -> Any:
        """Any valid, non-terminal state, including ones training never reaches."""
        ...

    def observe(self, state: Any, params: Any = None) -> Any:
        """The observation of ``state`` (what a reward model sees)."""
        ...

    def true_reward(self, state: Any, action: Any, params: Any = None) -> Any:
        """The exact reward ``[]`` of ``action`` in ``state`` (the label)."""
        ...

    def step_env(self, key: Any, state: Any, action: Any, params: Any) -> Any:
        """One step without auto-reset: ``obs, state, reward, terminated, truncated, info``."""
        ...


@runtime_checkable
class GridEnv(GroundTruthEnv, Protocol):
    """A ``GroundTruthEnv`` whose state is (or holds as ``.grid``) a ``GridState``.

    The state mutations of ``evolutionary_search``, the relaxed observation of
    ``gradient_search``, feature strategies and the oracle decoder read the
    grid's objects and their features through these members
    (``innerlab.envs.GridEnvironment`` provides them).
    """

    def feature_counts(self, params: Any) -> tuple[int, int, int]:
        """How many values each object feature takes: ``(n_colours, n_shapes, n_sizes)``."""
        ...

    def grid_of(self, state: Any) -> Any:
        """The ``GridState`` inside ``state`` (``state`` itself for a plain grid)."""
        ...

    def is_valid(self, state: Any, params: Any = None) -> Any:
        """Whether ``state`` satisfies the env's invariants (a bool scalar)."""
        ...


@runtime_checkable
class ReturnBound(Protocol):
    """An env that knows an upper bound on each episode's return (evaluation reports the
    fraction of it an agent earns; Orchard: the value of every good object)."""

    def optimal_return_upper_bound(self, state: Any, params: Any = None) -> Any:
        """No policy earns more than this ``[]`` in the episode that starts at ``state``."""
        ...


@runtime_checkable
class ValidatesStates(Protocol):
    """An env that can say whether a state satisfies its invariants (wrappers ask the env
    they wrap; property tests and the adversary check what they construct)."""

    def is_valid(self, state: Any, params: Any = None) -> Any:
        """Whether ``state`` satisfies the env's invariants (a bool scalar)."""
        ...


@runtime_checkable
class StateFromObs(Protocol):
    """An env whose observations determine its state (planning on its true dynamics can
    start from an observation alone)."""

    def state_from_obs(self, obs: Any, params: Any = None) -> Any:
        """The env state that ``obs`` shows."""
        ...


@runtime_checkable
class ImaginationModel(Protocol):
    """An imagination model, what the Imagination-based Planner imagines with.

    ``innerlab.planners.ibp`` has three: ``LatentImagination``, ``VectorImagination``
    and ``TrueImagination``.
    """

    feature_size: int
    action_size: int

    def initial(self, obs: Any, state: Any = None) -> Any:
        """The model's carry for the real observation (and, for true dynamics, the state)."""
        ...

    def features(self, carry: Any) -> Any:
        """A flat feature vector ``[F]`` of a carry (what manager and controller read)."""
        ...

    def step(self, carry: Any, action_vec: Any, key: Any) -> Any:
        """One imagined step: ``(next_carry, predicted_reward)``."""
        ...

    def loss(self, batch: Any) -> Any:
        """The model's supervised loss ``[]`` on real transitions."""
        ...


# --------------------------------------------------------------------------- checking

_BASES = {"Protocol", "Generic", "object"}


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The member names a protocol declares (its own and its protocol bases'), sorted.

    Attributes come from annotations, methods from the class body; private
    names are skipped except ``__call__``.
    """
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls.__name__ in _BASES or not getattr(cls, "_is_protocol", False):
            continue
        names.update(cls.__dict__.get("__annotations__", {}))
        names.update(n for n, v in cls.__dict__.items() if callable(v) or isinstance(v, property))
    return tuple(sorted(n for n in names if n == "__call__" or not n.startswith("_")))


def _has(obj: Any, name: str) -> bool:
    if name == "__call__":
        return callable(obj)
    try:
        return hasattr(obj, name)
    except Exception:  # a property that raises does not provide the member
        return False


def missing_members(obj: Any, protocol: type) -> list[tuple[str, str | None]]:
    """``(member, reason)`` for each member of ``protocol`` that ``obj`` does not provide.

    A member is missing if ``obj`` lacks it, or if ``obj``'s class lists it in
    ``unsupported`` (``{member: reason}``); the reason is ``None`` for the former.
    """
    unsupported = getattr(type(obj), "unsupported", None) or {}
    out = []
    for name in protocol_members(protocol):
        if name in unsupported:
            out.append((name, str(unsupported[name])))
        elif not _has(obj, name):
            out.append((name, None))
    return out


def satisfies(obj: Any, protocol: type) -> bool:
    """Whether ``obj`` provides every member of ``protocol`` (``unsupported`` ones excluded)."""
    return not missing_members(obj, protocol)


def _signature(protocol: type, name: str, what: str) -> str:
    """``name(args)`` for a method, ``name: type`` for an attribute (for error messages)."""
    if name == "__call__":
        return f"__call__(obs, action) (the {what} must be callable)"
    for cls in protocol.__mro__:
        if name in cls.__dict__.get("__annotations__", {}):
            return f"{name}: {cls.__dict__['__annotations__'][name]}"
        value = cls.__dict__.get(name)
        if callable(value):
            params = list(inspect.signature(value).parameters)[1:]  # without self
            return f"{name}({', '.join(params)})"
    return name


def _summary(protocol: type) -> str:
    doc = inspect.getdoc(protocol) or ""
    return doc.split("\n")[0].rstrip(".").replace("``", "")


def require(obj: T, protocol: type, *, consumer: str, argument: str | None = None) -> T:
    """``obj`` if it provides every member of ``protocol``; a ``TypeError`` otherwise.

    Call it once at a consumer's entry point. The error names the consumer,
    the protocol (with its one-line meaning) and every missing member with its
    signature, plus any reason the object's class gave in ``unsupported``::

        TypeError: adversary.latent_search needs argument 'model' to be a
        LatentEnsemble (A RewardEnsemble split into an encoder and K heads, ...);
        got Pair, which is missing: encode(obs), heads(latent, action),
        num_actions: int. See innerlab.protocols.LatentEnsemble.

    Args:
        obj: the model or environment given to the consumer.
        protocol: one of this module's protocols (or any ``typing.Protocol``).
        consumer: who needs it, e.g. ``"adversary.latent_search"``.
        argument: the consumer's argument that ``obj`` was passed as, e.g. ``"model"``.
    """
    missing = missing_members(obj, protocol)
    if not missing:
        return obj
    what = "object" if argument is None else repr(argument)
    listed = ", ".join(_signature(protocol, name, what) for name, _ in missing)
    reasons = "".join(
        f" {type(obj).__name__} cannot provide {name!r}: {why}." for name, why in missing if why
    )
    needs = "a" if argument is None else f"argument {argument!r} to be a"
    raise TypeError(
        f"{consumer} needs {needs} {protocol.__name__} ({_summary(protocol)}); got "
        f"{type(obj).__name__}, which is missing: {listed}.{reasons} "
        f"See innerlab.protocols.{protocol.__name__}."
    )
