"""``AgentConfig`` and ``make``: one way to describe any agent, with one set of names.

Every kind shares the options that mean the same thing for every agent:

==================  =====================================================
``env``             registered env name (``innerlab.envs.list_envs()``)
``env_overrides``   env params, e.g. ``{"height": 5, "n_objects": 3}``
``egocentric``      observe gridworlds through ``envs.Egocentric``
``observation``     ``"onehot"`` float grids or ``"int"`` ``uint8`` slots
                    (``envs.IntegerObs``; the PPO kinds embed them)
``encoder``         observation encoder, ``"mlp"`` or ``"conv"``
``width``           hidden width of the networks
``num_envs``        parallel envs per seed
``discount``        the discount of returns and bootstrapping
``learning_rate``   Adam's step size
``total_steps``     env steps per seed (rounded down to whole chunks)
``log_every``       learner iterations per jitted chunk, logged row and
                    checkpoint (``0``: about a tenth of the run)
==================  =====================================================

Each kind adds its own (``innerlab.agents.kind_options(kind)`` lists them
with their defaults). The learners' own configs (``PPOConfig``,
``MuZeroConfig``, ``IBPTrainConfig``) stay the place where each algorithm's
hyper-parameters are defined and checked; ``AgentConfig.native()`` builds
one from the shared names, so a bad value is reported before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

import innerlab.envs as envs
from innerlab.planners.ibp_train import IBPTrainConfig
from innerlab.planners.muzero import MuZeroConfig
from innerlab.planners.ppo import PPOConfig

__all__ = ["KINDS", "SHARED_OPTIONS", "AgentConfig", "kind_options", "make"]

SHARED_OPTIONS = (
    "env",
    "env_overrides",
    "egocentric",
    "observation",
    "encoder",
    "width",
    "num_envs",
    "discount",
    "learning_rate",
    "total_steps",
    "log_every",
)
ENCODERS = ("mlp", "conv")
INT_OBS_KINDS = ("ppo-lstm", "ppo-transformer")  # their networks embed integer observations


@dataclasses.dataclass(frozen=True)
class KindSpec:
    """How one kind maps the shared names onto its learner's own config.

    ``native``: the learner's config class; ``names``: shared name -> its field
    there; ``steps_field``: the field that counts iterations and
    ``steps_per_iteration(native) -> int`` the env steps one iteration takes
    (per seed); ``fixed``: native fields the agents driver owns (set as given);
    ``defaults``: kind-specific defaults that differ from the native config's.
    """

    native: type
    names: Mapping[str, str]
    steps_field: str
    steps_per_iteration: Callable[[Any], int]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        """The kind's own options and their defaults (native fields not mapped or fixed)."""
        owned = set(self.names.values()) | {self.steps_field} | set(self.fixed)
        owned |= {"egocentric", "env_overrides"} | set(self.exclude)
        out = {
            f.name: f.default
            for f in dataclasses.fields(self.native)
            if f.name not in owned and f.name not in SHARED_OPTIONS
        }
        out.update({k: v for k, v in self.defaults.items() if k not in SHARED_OPTIONS})
        return out

    def shared_defaults(self) -> dict[str, Any]:
        base = {f.name: f.default for f in dataclasses.fields(self.native)}
        out = {shared: base[field] for shared, field in self.names.items() if field in base}
        out.update({k: v for k, v in self.defaults.items() if k in SHARED_OPTIONS})
        return out


_PPO = dict(
    native=PPOConfig,
    names={
        "env": "env",
        "num_envs": "num_envs",
        "discount": "gamma",
        "learning_rate": "learning_rate",
        "width": "hidden",
        "encoder": "encoder",
    },
    steps_field="total_timesteps",
    steps_per_iteration=lambda c: c.num_envs * c.num_steps,
)

KINDS: dict[str, KindSpec] = {
    "ppo-lstm": KindSpec(
        **_PPO, fixed={"network": "lstm"}, exclude=("num_layers", "num_heads", "memory")
    ),
    "ppo-transformer": KindSpec(**_PPO, fixed={"network": "transformer"}),
    "muzero": KindSpec(
        native=MuZeroConfig,
        names={
            "env": "env",
            "num_envs": "num_envs",
            "discount": "discount",
            "learning_rate": "learning_rate",
            "width": "width",
            "encoder": "encoder",
        },
        steps_field="num_iterations",
        steps_per_iteration=lambda c: c.num_envs * c.rollout_len,
        fixed={"chunk": 1},
    ),
    "ibp": KindSpec(
        native=IBPTrainConfig,
        names={
            "env": "env",
            "num_envs": "num_envs",
            "discount": "gamma",
            "learning_rate": "lr",
            "width": "width",
            "encoder": "encoder",
        },
        steps_field="iterations",
        steps_per_iteration=lambda c: c.num_envs,
        fixed={"log_every": 1},
        defaults={"env": "Orchard-v0", "encoder": "mlp", "num_envs": 16},
    ),
}
_SHARED_FALLBACK = {
    "env_overrides": (),
    "egocentric": False,
    "observation": "onehot",
    "total_steps": 100_000,
    "log_every": 0,
}


def kind_options(kind: str) -> dict[str, Any]:
    """Every option ``make(kind, ...)`` accepts, with its default (shared ones first)."""
    spec = _spec(kind)
    shared = {**_SHARED_FALLBACK, **spec.shared_defaults()}
    return {**{k: shared[k] for k in SHARED_OPTIONS}, **spec.options()}


def _spec(kind: str) -> KindSpec:
    if kind not in KINDS:
        hint = difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.5)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown agent kind {kind!r}: expected one of {sorted(KINDS)}{extra}")
    return KINDS[kind]


def _freeze(mapping: Mapping[str, Any] | tuple, name: str) -> tuple[tuple[str, Any], ...]:
    if isinstance(mapping, tuple):
        mapping = dict(mapping)
    if not isinstance(mapping, Mapping):
        raise TypeError(f"option {name!r} must be a dict, got {type(mapping).__name__}")
    return tuple(sorted(mapping.items()))


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"option {name!r} must be an int >= {low}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Everything that defines an agent and its training run (hashable, JSON-friendly).

    Build one with :func:`make`; ``options`` holds the kind's own options as
    sorted ``(name, value)`` pairs.
    """

    kind: str
    env: str
    env_overrides: tuple[tuple[str, Any], ...]
    egocentric: bool
    encoder: str
    width: int
    num_envs: int
    discount: float
    learning_rate: float
    total_steps: int
    log_every: int
    options: tuple[tuple[str, Any], ...] = ()
    observation: str = "onehot"

    def __post_init__(self):
        _spec(self.kind)
        if self.env not in envs.list_envs():
            raise ValueError(f"option 'env' must be one of {envs.list_envs()}, got {self.env!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"option 'encoder' must be one of {ENCODERS}, got {self.encoder!r}")
        if not isinstance(self.egocentric, bool):
            raise ValueError(f"option 'egocentric' must be a bool, got {self.egocentric!r}")
        if self.observation not in envs.OBSERVATIONS:
            raise ValueError(
                f"option 'observation' must be one of {envs.OBSERVATIONS}, "
                f"got {self.observation!r}"
            )
        if self.observation == "int" and self.kind not in INT_OBS_KINDS:
            raise ValueError(
                f"option observation='int' is for kinds {INT_OBS_KINDS} (their networks embed "
                f"integer observations); {self.kind!r} reads one-hot grids"
            )
        for name in ("width", "num_envs", "total_steps"):
            _check_int(name, getattr(self, name), 1)
        _check_int("log_every", self.log_every, 0)
        for name, low, high in (("discount", 0.0, 1.0), ("learning_rate", 0.0, math.inf)):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not (low <= value <= high) or math.isnan(value):
                raise ValueError(
                    f"option {name!r} must be a number in [{low}, {high}], got {value!r}"
                )
        self.native()  # the learner's own checks, now rather than at train time
        iterations, log_every = self.schedule()
        if self.log_every and iterations % self.log_every:
            raise ValueError(
                f"option 'log_every' ({self.log_every}) must divide the number of iterations "
                f"({iterations} = total_steps {self.total_steps} // {self.steps_per_iteration} "
                "env steps per iteration)"
            )

    # -- derived -----------------------------------------------------------------------
    @property
    def spec(self) -> KindSpec:
        return _spec(self.kind)

    @property
    def steps_per_iteration(self) -> int:
        """Env steps one learner iteration takes, per seed."""
        return self.spec.steps_per_iteration(self.native(iterations=1))

    def schedule(self) -> tuple[int, int]:
        """``(iterations, log_every)``: whole chunks that fit in ``total_steps``."""
        per = self.spec.steps_per_iteration(self.native(iterations=1))
        iterations = self.total_steps // per
        if iterations < 1:
            raise ValueError(
                f"option 'total_steps' ({self.total_steps}) must be at least one iteration of "
                f"{per} env steps for kind {self.kind!r}"
            )
        log_every = self.log_every or _divisor_near(iterations, max(1, iterations // 10))
        return iterations - iterations % log_every, log_every

    def native(self, iterations: int | None = None) -> Any:
        """The learner's own config (``PPOConfig``, ``MuZeroConfig`` or ``IBPTrainConfig``)."""
        spec = self.spec
        fields = {native: getattr(self, shared) for shared, native in spec.names.items()}
        fields.update(spec.fixed)
        fields.update(dict(self.options))
        names = {f.name for f in dataclasses.fields(spec.native)}
        if "egocentric" in names:
            fields["egocentric"] = self.egocentric
        if "env_overrides" in names:  # the IBP builds its env from its own config
            fields["env_overrides"] = self.env_overrides
        per = spec.steps_per_iteration(spec.native(**{**fields, spec.steps_field: 10**9}))
        if iterations is None:
            iterations = max(1, self.total_steps // per)
        fields[spec.steps_field] = iterations * per if spec.steps_field == "total_timesteps" else (
            iterations
        )
        return spec.native(**fields)

    def make_env(self, **overrides: Any) -> tuple[envs.Environment, envs.EnvParams]:
        """The env this agent acts in (its overrides, then ``overrides``, e.g. ``split="test"``)."""
        return envs.make(self.env, egocentric=self.egocentric, observation=self.observation,
                         **{**dict(self.env_overrides), **overrides})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["env_overrides"] = dict(self.env_overrides)
        out["options"] = dict(self.options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentConfig:
        data = dict(data)
        return make(data.pop("kind"), **{**data.pop("options", {}), **data})


def _divisor_near(n: int, target: int) -> int:
    """The largest divisor of ``n`` that is at most ``target``."""
    return max(d for d in range(1, target + 1) if n % d == 0)


def make(kind: str, **options: Any) -> AgentConfig:
    """An ``AgentConfig`` of ``kind`` (``"ppo-lstm"``, ``"ppo-transformer"``, ``"muzero"``,
    ``"ibp"``); unknown options are rejected with the closest valid name.

    >>> import innerlab.agents as agents
    >>> config = agents.make("ppo-lstm", env_overrides={"height": 5}, total_steps=20_000)
    >>> config.discount
    0.97
    """
    spec = _spec(kind)
    valid = kind_options(kind)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = {}
        aliases = {native: shared for shared, native in spec.names.items() if native != shared}
        aliases.update({spec.steps_field: "total_steps"})
        for name in unknown:
            close = aliases.get(name) or next(iter(difflib.get_close_matches(name, valid, 1)), None)
            if close:
                hints[name] = close
        hint = "".join(f"; {k!r}: did you mean {v!r}?" for k, v in hints.items())
        raise ValueError(
            f"unknown option(s) {unknown} for agent kind {kind!r}{hint}. "
            f"Valid options: {sorted(valid)}"
        )
    merged = {**valid, **options}
    shared = {k: merged[k] for k in SHARED_OPTIONS}
    shared["env_overrides"] = _freeze(shared["env_overrides"], "env_overrides")
    own = {k: merged[k] for k in spec.options()}
    return AgentConfig(kind=kind, options=_freeze(own, "options"), **shared)
