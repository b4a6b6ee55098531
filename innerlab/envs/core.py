"""The functional environment API every innerlab env follows.

The API is gymnax 1.0's, so PureJaxRL-style training code runs unchanged:
``obs, state = env.reset(key, params)`` and
``obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)``.
``step`` auto-resets: when an episode ends, the returned ``obs``/``state`` are
those of a fresh episode while ``reward``, ``terminated``, ``truncated`` and
``info`` describe the step that ended the old one. Everything is pure, so
``jax.jit`` and ``jax.vmap`` apply directly.

On top of gymnax, every innerlab env exposes its ground truth, which the
adversary and evaluations need: ``sample_state`` draws *any* valid state (not
only those the training distribution reaches), ``observe`` maps a state to an
observation, and ``true_reward`` labels a ``(state, action)`` pair exactly.

Train and test distributions are ``params`` (e.g. ``split="test"``), never
separate code. Params are frozen Equinox modules whose fields are all static:
they fix shapes and distributions, so changing one recompiles, and they can be
passed straight into jitted functions.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import threading
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# --------------------------------------------------------------------------- spaces


@dataclasses.dataclass(frozen=True)
class Discrete:
    """``n`` actions, ``0 .. n-1`` (gymnax's ``spaces.Discrete``)."""

    n: int
    dtype: Any = jnp.int32

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    def sample(self, key: Array) -> Array:
        return jax.random.randint(key, (), 0, self.n, dtype=self.dtype)

    def contains(self, x: Array) -> Array:
        x = jnp.asarray(x)
        return (x >= 0) & (x < self.n) & (jnp.issubdtype(x.dtype, jnp.integer))


@dataclasses.dataclass(frozen=True)
class Box:
    """A box ``[low, high]`` of the given shape (gymnax's ``spaces.Box``)."""

    low: float
    high: float
    shape: tuple[int, ...]
    dtype: Any = jnp.float32

    def sample(self, key: Array) -> Array:
        if jnp.issubdtype(self.dtype, jnp.integer):
            return jax.random.randint(key, self.shape, self.low, self.high + 1).astype(self.dtype)
        return jax.random.uniform(key, self.shape, self.dtype, self.low, self.high)

    def contains(self, x: Array) -> Array:
        x = jnp.asarray(x)
        return jnp.all((x >= self.low) & (x <= self.high)) & (x.shape == self.shape)


# --------------------------------------------------------------------------- params


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_int(value: Any) -> bool:
    """An integer, but not a bool (``True`` is an ``int`` in Python, never a valid count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    """A real number (ints included), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _wrong_type(name: str, value: Any, want: str) -> TypeError:
    """The error for a param of the wrong type; bools are called out (``True`` passes for
    ``1`` in Python, so ``max_steps=True`` would otherwise look like a valid count)."""
    if isinstance(value, (bool, np.bool_)):
        return TypeError(f"param {name!r} must be {want}, not a bool, got {value!r}")
    return TypeError(f"param {name!r} must be {want}, got {value!r} ({_type_name(value)})")


def _check_float(name: str, value: Any, want: str = "a number") -> None:
    if not _is_real(value):
        raise _wrong_type(name, value, want)
    if not math.isfinite(float(value)):
        raise ValueError(f"param {name!r} must be finite, got {value!r}")


_SIMPLE_TYPES = {
    "int": (_is_int, "an int"),
    "bool": (lambda v: isinstance(v, (bool, np.bool_)), "a bool"),
    "str": (lambda v: isinstance(v, str), "a str"),
}


def check_type(name: str, value: Any, kind: str) -> None:
    """Raise naming param ``name`` unless ``value`` is of the declared ``kind``.

    ``kind`` is a field's annotation as text: ``int`` (an integer, not a bool),
    ``float`` (a real number, not a bool, and finite), ``bool``, ``str`` or
    ``tuple[float, float]``; other annotations are left to the params class.
    A value of the wrong type raises TypeError; NaN or inf raises ValueError.
    """
    if kind in _SIMPLE_TYPES:
        is_ok, want = _SIMPLE_TYPES[kind]
        if not is_ok(value):
            raise _wrong_type(name, value, want)
    elif kind == "float":
        _check_float(name, value)
    elif kind == "tuple[float, float]":
        if not (isinstance(value, tuple) and len(value) == 2):
            raise _wrong_type(name, value, "a tuple of two numbers")
        for v in value:
            _check_float(name, v, "a tuple of two numbers")


def _annotation(field: dataclasses.Field) -> str:
    """A field's annotation as text (annotations are strings under postponed evaluation)."""
    kind = field.type
    if isinstance(kind, str):
        return kind.replace(" ", "").replace(",", ", ")
    return getattr(kind, "__name__", None) if isinstance(kind, type) else str(kind)


def check_field_types(params: Any) -> None:
    """Check every field of ``params`` against its declared type with :func:`check_type`."""
    for field in dataclasses.fields(params):
        check_type(field.name, getattr(params, field.name), _annotation(field))


def _describe_range(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def check_range(
    params: Any,
    name: str,
    low: Any = None,
    high: Any = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    context: str = "",
) -> None:
    """Raise a ValueError naming param ``name`` unless ``low <= params.name <= high``.

    ``None`` leaves a side unbounded; ``low_open``/``high_open`` make a bound strict.
    ``context`` is appended to the expectation (e.g. ``" for a 7x7 room"``). Types are
    checked before, by :func:`check_field_types`, so the comparison is safe here.
    """
    value = getattr(params, name)
    ok = low is None or (value > low if low_open else value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        bounds = _describe_range(low, high, low_open, high_open)
        raise ValueError(f"param {name!r} must be {bounds}{context}, got {value!r}")


class EnvParams(eqx.Module):
    """Base class of every env's params; subclasses declare static fields.

    ``split`` names the distribution (``"train"`` or ``"test"``); subclasses
    list which other fields the split changes in ``SPLIT_FIELDS`` so tests can
    check that train and test differ only where declared.

    Validation runs at construction in two steps: every field is checked against
    its annotation (``int`` fields take ints but not bools, ``float`` fields finite
    numbers, see :func:`check_type`), then ``check_values`` checks ranges and
    consistency. Subclasses extend ``check_values`` (calling ``super()``) rather
    than defining ``__check_init__``, which Equinox would run before the type checks.
    """

    split: str = eqx.field(static=True, default="train")
    max_steps: int = eqx.field(static=True, default=30)

    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test")
    SPLIT_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __check_init__(self):
        check_field_types(self)
        self.check_values()

    def check_values(self) -> None:
        """Range and consistency checks (types are already checked)."""
        if self.split not in self.SPLITS:
            raise ValueError(
                f"param 'split' must be one of {self.SPLITS}, got {self.split!r}"
            )
        check_range(self, "max_steps", 1)

    def replace(self, **overrides: Any) -> EnvParams:
        """These params with ``overrides`` applied; wrappers override this to forward
        overrides to the params they hold."""
        return _replace_fields(self, **overrides)


def replace_params(params: EnvParams, **overrides: Any) -> EnvParams:
    """Return ``params`` with ``overrides`` applied, naming any unknown param."""
    return params.replace(**overrides)


def _replace_fields(params: EnvParams, **overrides: Any) -> EnvParams:
    names = {f.name for f in dataclasses.fields(params)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"unknown param(s) {unknown} for {type(params).__name__}; "
            f"valid params are {sorted(names)}"
        )
    return dataclasses.replace(params, **overrides)


def params_to_dict(params: EnvParams) -> dict[str, Any]:
    """Params as a JSON-friendly dict (for run configs and reports)."""
    out = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
    return out


# --------------------------------------------------------------------------- environment


class Environment:
    """Base class: a pure, functional, auto-resetting environment.

    Subclasses implement ``default_params``, ``reset_env``, ``step_env``,
    ``sample_state``, ``observe``, ``num_actions`` and the renderers; this
    class adds auto-reset, action checking and the gymnax conveniences.
    Instances hold no mutable state, are hashable, and may be closed over by
    jitted functions.
    """

    name: ClassVar[str] = "Environment"
    experiment: ClassVar[str] = ""
    # State leaves (paths as ``jax.tree_util.keystr`` writes them, without the
    # leading ".") whose reset distribution the split changes; every other leaf
    # is drawn identically in train and test from the same key. ``None``: undeclared.
    SPLIT_STATE_FIELDS: ClassVar[tuple[str, ...] | None] = None

    # -- to implement ------------------------------------------------------------------
    @property
    def default_params(self) -> EnvParams:
        raise NotImplementedError

    def reset_env(self, key: Array, params: EnvParams) -> tuple[Array, Any]:
        raise NotImplementedError

    def step_env(
        self, key: Array, state: Any, action: Array, params: EnvParams
    ) -> tuple[Array, Any, Array, Array, Array, dict[str, Array]]:
        """One step without auto-reset: ``obs, state, reward, terminated, truncated, info``."""
        raise NotImplementedError

    def sample_state(self, key: Array, params: EnvParams | None = None) -> Any:
        """Any valid, non-terminal state, including ones training never reaches."""
        raise NotImplementedError

    def observe(self, state: Any, params: EnvParams | None = None) -> Array:
        raise NotImplementedError

    def num_actions(self, params: EnvParams | None = None) -> int:
        raise NotImplementedError

    def render_rgb(self, state: Any, params: EnvParams | None = None) -> Array:
        raise NotImplementedError

    def render_text(self, state: Any, params: EnvParams | None = None) -> str:
        raise NotImplementedError

    # -- provided ------------------------------------------------------------------------
    def resolve_params(self, params: EnvParams | None) -> EnvParams:
        """``params``, or this env's ``default_params`` when ``params`` is None (every method
        that takes optional params resolves them through here)."""
        return self.default_params if params is None else params

    def _params(self, params: EnvParams | None) -> EnvParams:
        """Old private name of :meth:`resolve_params`, kept for envs written against it."""
        return self.resolve_params(params)

    def reset(self, key: Array, params: EnvParams | None = None) -> tuple[Array, Any]:
        """Start an episode: ``obs, state``."""
        return self.reset_env(key, self.resolve_params(params))

    def step(self, key: Array, state: Any, action: Array, params: EnvParams | None = None):
        """Step, auto-resetting finished episodes (gymnax semantics).

        Returns ``obs, state, reward, terminated, truncated, info``; ``info``
        carries ``discount`` (0 on termination) as gymnax does.
        """
        params = self.resolve_params(params)
        state = self.check_state(state, params)
        action = self.check_action(action, params)
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, truncated, info = self.step_env(
            key_step, state, action, params
        )
        obs_re, state_re = self.reset_after(key_reset, state_st, params)
        done = terminated | truncated
        state = jax.tree.map(lambda a, b: jax.lax.select(done, a, b), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        info = dict(info)
        info["discount"] = 1.0 - terminated.astype(jnp.float32)
        return obs, state, reward, terminated, truncated, info

    def reset_after(self, key: Array, ended_state: Any, params: EnvParams) -> tuple[Array, Any]:
        """Start the episode that follows ``ended_state``; every auto-reset goes through here.

        A fresh ``reset_env`` by default; envs whose episodes are linked (BoostChain's
        chains) carry what they need from ``ended_state`` into the new episode.
        """
        return self.reset_env(key, params)

    def true_reward(self, state: Any, action: Array, params: EnvParams | None = None) -> Array:
        """The exact reward for taking ``action`` in ``state`` (ground truth for labelling)."""
        params = self.resolve_params(params)
        state = self.check_state(state, params)
        action = self.check_action(action, params)
        return self.step_env(jax.random.key(0), state, action, params)[2]

    def check_state(self, state: Any, params: EnvParams | None = None) -> Any:
        """Reject (at trace time) a state that is not one of this env's.

        The reference is ``sample_state``'s output under ``params``: the state must have
        its type, tree structure and the rank of every leaf. So ``Orchard().observe`` of
        a ``ProxyMazeState``, or of a batch of states (use ``jax.vmap``), raises a clear
        error instead of returning a wrong observation. Sizes may differ (a state with
        another object count, scored under replacement params with another reward
        table, is still a state of this env). Envs that cannot draw states skip the
        check. Returns ``state`` unchanged.
        """
        like = _state_template(self, self.resolve_params(params))
        if like is None:
            return state
        if type(state) is not type(like):
            raise TypeError(
                f"{self.name}: argument 'state' must be a {type(like).__name__} (a state of "
                f"{self.name}), got {type(state).__name__}"
            )
        want, got = jax.tree.structure(like), jax.tree.structure(state)
        if want != got:
            raise TypeError(
                f"{self.name}: argument 'state' must have the structure of {self.name}'s "
                f"states, {want}, got {got}"
            )
        leaves = jax.tree_util.tree_leaves_with_path(state)
        for (path, leaf), ref in zip(leaves, jax.tree.leaves(like), strict=True):
            shape = tuple(jnp.shape(leaf))
            if len(shape) != len(ref.shape):
                raise ValueError(
                    f"{self.name}: argument 'state' has leaf {jax.tree_util.keystr(path)} of "
                    f"shape {shape}, expected {len(ref.shape)} dimension(s) like "
                    f"{tuple(ref.shape)} (one state, not a batch: use jax.vmap)"
                )
        return state

    def check_action(self, action: Array, params: EnvParams) -> Array:
        """Reject actions of the wrong shape or dtype (at trace time) or out of range (run time)."""
        action = jnp.asarray(action)
        n = self.num_actions(params)
        if action.shape != ():
            raise ValueError(
                f"{self.name}: argument 'action' must be a scalar (shape ()), got shape "
                f"{action.shape}; use jax.vmap to step a batch of envs"
            )
        if not jnp.issubdtype(action.dtype, jnp.integer):
            raise TypeError(
                f"{self.name}: argument 'action' must be an integer in [0, {n}), "
                f"got dtype {action.dtype}"
            )
        action = action.astype(jnp.int32)
        return eqx.error_if(
            action,
            (action < 0) | (action >= n),
            f"{self.name}: argument 'action' out of range: expected 0 <= action < {n}",
        )

    def action_space(self, params: EnvParams | None = None) -> Discrete:
        return Discrete(self.num_actions(params))

    def observation_shape(self, params: EnvParams | None = None) -> tuple[int, ...]:
        """The shape of one observation, read off ``reset_env`` without running it
        (``jax.eval_shape``); the one probe every ``observation_space`` builds on."""
        params = self.resolve_params(params)
        obs = jax.eval_shape(lambda k: self.reset_env(k, params)[0], jax.random.key(0))
        return tuple(obs.shape)

    def observation_space(self, params: EnvParams | None = None) -> Box:
        return Box(0.0, 1.0, self.observation_shape(params), jnp.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # Jitted functions that take or close over an env (``eqx.filter_jit`` of a layer
    # holding it as a static field, ``functools.lru_cache`` of compiled functions)
    # reuse a compilation for every env that compares equal. Equality therefore
    # covers the instance's configuration, not only its type: two bandits with
    # different payoffs must never share a compiled search.
    def _config_key(self) -> tuple:
        """Hashable key of this instance's configuration: its type and attributes."""
        return (type(self), instance_config_key(self))

    def __hash__(self) -> int:
        return hash(self._config_key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Environment):
            return NotImplemented
        return type(self) is type(other) and self._config_key() == other._config_key()


_TEMPLATES_IN_PROGRESS = threading.local()


def _state_template(env: Environment, params: EnvParams) -> Any:
    """Shapes of ``env.sample_state(key, params)`` (``jax.eval_shape``), or ``None`` when the
    env cannot draw states or is drawing one right now (a ``sample_state`` that observes
    its own state would otherwise recurse; the guard sits outside the cache so the
    outer call's result is the one cached)."""
    busy = _TEMPLATES_IN_PROGRESS.__dict__.setdefault("keys", set())
    key = (env, params)
    if key in busy:
        return None
    busy.add(key)
    try:
        return _cached_state_template(env, params)
    finally:
        busy.discard(key)


@functools.lru_cache(maxsize=256)
def _cached_state_template(env: Environment, params: EnvParams) -> Any:
    try:
        return jax.eval_shape(lambda k: env.sample_state(k, params), jax.random.key(0))
    except NotImplementedError:
        return None


class _ByIdentity:
    """Stands for a value that cannot be hashed: equal only to a stand-in for the very same
    object (holding it keeps it alive, so its ``id`` is never reused meanwhile)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def hashable_key(value: Any) -> Any:
    """A hashable stand-in for ``value`` that is equal for equal configurations.

    Hashable values stand for themselves; tuples, lists, dicts and sets are keyed
    element by element; numpy arrays by dtype, shape and bytes. Anything else that
    cannot be hashed (jax arrays, which may be tracers or live on a device; modules
    holding arrays) falls back to identity: equal copies then only cost a
    recompilation, never a wrong answer.
    """
    if isinstance(value, np.ndarray) and value.dtype != object:
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(hashable_key(v) for v in value))
    if isinstance(value, dict):
        return (dict, frozenset((hashable_key(k), hashable_key(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (frozenset, frozenset(hashable_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return _ByIdentity(value)
    return value


def instance_config_key(obj: Any) -> tuple:
    """Hashable key of ``obj``'s instance attributes (``__dict__`` and ``__slots__``),
    sorted by name. Envs are immutable after construction, so the key is stable."""
    attrs = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                attrs[name] = getattr(obj, name)
    return tuple((name, hashable_key(attrs[name])) for name in sorted(attrs))
