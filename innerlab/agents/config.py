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
``MuZeroConfig``, ``IBPTrainConfig``, ``innerlab.lm.LMConfig``) stay the place
where each algorithm's hyper-parameters are defined and checked;
``AgentConfig.native()`` builds one from the shared names, so a bad value is
reported before anything runs.

Kind ``"lm"`` (a language model that acts zero-shot, :mod:`innerlab.lm`) is
not trained, so it takes only ``env`` and ``env_overrides`` of the shared
options (the rest describe training or the observation networks, and the LM
reads env states as text); the fields it does not take are ``None``. Its
agent is ``innerlab.agents.lm_policy(config)``. Making its config loads no
model: ``innerlab.lm`` imports torch only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

import innerlab.envs as envs
from innerlab.lm.policy import LMConfig
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
    (per seed), both ``None`` for a kind that is not trained; ``fixed``: native
    fields the agents driver owns (set as given); ``defaults``: kind-specific
    defaults that differ from the native config's; ``shared``: the shared
    options the kind takes (every one, for a trained kind).
    """

    native: type
    names: Mapping[str, str]
    steps_field: str | None
    steps_per_iteration: Callable[[Any], int] | None
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    shared: tuple[str, ...] = SHARED_OPTIONS

    @property
    def trained(self) -> bool:
        """Whether ``innerlab.agents.train`` trains this kind (``"lm"`` acts zero-shot)."""
        return self.steps_field is not None

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
        return {k: v for k, v in out.items() if k in self.shared}


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
    # a language model acting zero-shot: nothing to train, it reads env states as text
    "lm": KindSpec(
        native=LMConfig,
        names={},
        steps_field=None,
        steps_per_iteration=None,
        defaults={"env": "Orchard-v0"},
        shared=("env", "env_overrides"),
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
    return {**{k: shared[k] for k in spec.shared}, **spec.options()}


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


def _hashable(value: Any) -> Any:
    """Lists (as JSON gives them back) as tuples, so a config stays hashable."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"option {name!r} must be an int >= {low}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Everything that defines an agent and its training run (hashable, JSON-friendly).

    Build one with :func:`make`; ``options`` holds the kind's own options as
    sorted ``(name, value)`` pairs. A shared option the kind does not take
    (``KindSpec.shared``; kind ``"lm"`` takes only ``env`` and ``env_overrides``)
    is ``None``.
    """

    kind: str
    env: str
    env_overrides: tuple[tuple[str, Any], ...]
    egocentric: bool | None
    encoder: str | None
    width: int | None
    num_envs: int | None
    discount: float | None
    learning_rate: float | None
    total_steps: int | None
    log_every: int | None
    options: tuple[tuple[str, Any], ...] = ()
    observation: str | None = "onehot"

    def __post_init__(self):
        spec = _spec(self.kind)
        takes = set(spec.shared)
        unused = [n for n in SHARED_OPTIONS if n not in takes and getattr(self, n) is not None]
        if unused:
            raise ValueError(f"option(s) {unused} do not apply to agent kind {self.kind!r} "
                             f"(it takes only {list(spec.shared)} of the shared options)")
        if self.env not in envs.list_envs():
            raise ValueError(f"option 'env' must be one of {envs.list_envs()}, got {self.env!r}")
        if "encoder" in takes and self.encoder not in ENCODERS:
            raise ValueError(f"option 'encoder' must be one of {ENCODERS}, got {self.encoder!r}")
        if "egocentric" in takes and not isinstance(self.egocentric, bool):
            raise ValueError(f"option 'egocentric' must be a bool, got {self.egocentric!r}")
        if "observation" in takes and self.observation not in envs.OBSERVATIONS:
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
            if name in takes:
                _check_int(name, getattr(self, name), 1)
        if "log_every" in takes:
            _check_int("log_every", self.log_every, 0)
        for name, low, high in (("discount", 0.0, 1.0), ("learning_rate", 0.0, math.inf)):
            if name not in takes:
                continue
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not (low <= value <= high) or math.isnan(value):
                raise ValueError(
                    f"option {name!r} must be a number in [{low}, {high}], got {value!r}"
                )
        self.native()  # the learner's own checks, now rather than at train time
        if not spec.trained:
            return
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

    def _require_trained(self) -> None:
        if not self.spec.trained:
            raise ValueError(f"agent kind {self.kind!r} is not trained, so it has no "
                             "iterations; its agent is innerlab.agents.lm_policy(config)")

    @property
    def steps_per_iteration(self) -> int:
        """Env steps one learner iteration takes, per seed."""
        self._require_trained()
        return self.spec.steps_per_iteration(self.native(iterations=1))

    def schedule(self) -> tuple[int, int]:
        """``(iterations, log_every)``: whole chunks that fit in ``total_steps``."""
        self._require_trained()
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
        """The learner's own config (``PPOConfig``, ``MuZeroConfig``, ``IBPTrainConfig``, or
        ``innerlab.lm.LMConfig`` for kind ``"lm"``)."""
        spec = self.spec
        if not spec.trained:
            return spec.native(**dict(self.options))
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
        view = {k: v for k, v in (("egocentric", self.egocentric),
                                  ("observation", self.observation)) if v is not None}
        return envs.make(self.env, **view, **{**dict(self.env_overrides), **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The options :func:`make` takes for this kind (JSON-friendly; ``from_dict`` inverts)."""
        out = dataclasses.asdict(self)
        out = {k: v for k, v in out.items() if k not in SHARED_OPTIONS or k in self.spec.shared}
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
    ``"ibp"``, or ``"lm"``: a language model, not trained); unknown options are rejected
    with the closest valid name.

    >>> import innerlab.agents as agents
    >>> config = agents.make("ppo-lstm", env_overrides={"height": 5}, total_steps=20_000)
    >>> config.discount
    0.97
    >>> agents.make("lm", encoding="coords", temperature=1.0).native().order
    'shuffled'
    """
    spec = _spec(kind)
    valid = kind_options(kind)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = {}
        aliases = {native: shared for shared, native in spec.names.items() if native != shared}
        if spec.trained:
            aliases.update({spec.steps_field: "total_steps"})
        for name in unknown:
            if name in SHARED_OPTIONS:  # a shared option this kind does not take
                continue
            close = aliases.get(name) or next(iter(difflib.get_close_matches(name, valid, 1)), None)
            if close:
                hints[name] = close
        hint = "".join(f"; {k!r}: did you mean {v!r}?" for k, v in hints.items())
        unused = [n for n in unknown if n in SHARED_OPTIONS]
        if unused:
            hint += (f"; {unused} do not apply to kind {kind!r} (it takes only "
                     f"{list(spec.shared)} of the shared options)")
        raise ValueError(
            f"unknown option(s) {unknown} for agent kind {kind!r}{hint}. "
            f"Valid options: {sorted(valid)}"
        )
    merged = {**valid, **options}
    shared = {k: merged.get(k) for k in SHARED_OPTIONS}
    shared["env_overrides"] = _freeze(shared["env_overrides"], "env_overrides")
    own = {k: _hashable(merged[k]) for k in spec.options()}
    return AgentConfig(kind=kind, options=_freeze(own, "options"), **shared)
