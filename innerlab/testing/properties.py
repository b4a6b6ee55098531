"""Properties a reward model should have, checked by hypothesis on an env's states.

Each property is a function ``prop(model, env, params=None, **options)`` that
lets hypothesis search the env's states (``innerlab.testing.strategies``) for
an input that breaks it, and either returns a ``PropertyResult`` or raises
``PropertyViolation`` (an ``AssertionError``) whose message shows the shrunk,
minimal failing state as a text grid with the model's and the true reward.
The same property is a test decorator: ``@finite.test("Orchard-v0")`` over a
function (it may take pytest fixtures) that returns the model.

``model`` is anything with ``model(obs, action) -> [K]`` (or a scalar):
``RewardModel``, any Equinox module, a ``TorchRewardModel`` wrapping a torch
module, or ``OracleRewardModel``. It is evaluated under ``eqx.filter_jit``
(compiled once per model structure), unless ``jit=False``.

Targeted search: each property calls ``hypothesis.target`` with a score of
how close an example comes to breaking it (``target="auto"``), or with the
adversary's objectives -- ``"disagreement"`` (``innerlab.adversary.disagreement``,
the ensemble's std or max gap) or ``"error"`` (``innerlab.adversary.true_gap``,
distance to the true reward) -- so a property test doubles as an adversarial
probe. ``target=None`` turns it off.

Properties: ``finite``, ``bounded``, ``invariant``, ``monotonic``,
``epic_equivalent``, ``members_agree``, ``matches_true_reward``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, Phase, assume, given, target
from hypothesis import settings as Settings
from hypothesis import strategies as st

from innerlab.adversary.objectives import MEASURES, measure_fn
from innerlab.envs.core import Environment, EnvParams
from innerlab.protocols import RewardFunction, require
from innerlab.reward_models.aggregate import AGGREGATIONS, aggregate
from innerlab.reward_models.epic import epic_distance_state_action
from innerlab.testing import strategies as S

TARGETS = ("auto", "disagreement", "error", None)


class PropertyViolation(AssertionError):
    """A reward-model property failed; the message shows the minimal failing example.

    Attributes (set once hypothesis has finished): ``property`` (its name),
    ``examples`` (examples run in total, shrinking included) and
    ``first_failure_at`` (how many examples it took to find the first failure).
    """

    property: str = ""
    examples: int = 0
    first_failure_at: int | None = None


@dataclasses.dataclass(frozen=True)
class PropertyResult:
    """What a passing property check saw: ``examples`` run and the best ``target`` score."""

    property: str
    examples: int
    best_score: float | None


# --------------------------------------------------------------------------- evaluation


def _eval_impl(model, env, params, state, action, measure, how):
    """Member predictions, true reward and the adversary's two scores for one ``(state, action)``.

    ``disagreement`` and ``error`` are ``innerlab.adversary.disagreement`` and
    ``innerlab.adversary.true_gap`` computed from one shared forward pass
    (``member_predictions`` once, then the same ``measure_fn``/``aggregate``
    reductions those functions apply), so scores match the adversary's exactly.
    """
    obs = env.observe(state, params)
    out = jnp.asarray(model(obs, action), jnp.float32)
    if out.ndim > 1:
        raise ValueError(
            f"a reward model must return one prediction per member, shape [K] or (), for one "
            f"(obs, action); got shape {tuple(out.shape)}"
        )
    preds = jnp.atleast_1d(out)
    truth = env.true_reward(state, action, params)
    error = jnp.abs(aggregate(preds, how) - truth)
    if preds.shape[0] >= 2:
        dis = measure_fn(measure)(preds)
    else:
        dis = jnp.float32(jnp.nan)
    return {"preds": preds, "true": truth, "error": error, "disagreement": dis}


@functools.lru_cache(maxsize=64)
def _compiled(static, env, params, measure, how):
    """One jitted evaluation per (model structure, env, params, options): arrays are arguments."""

    def run(dynamic, state, action):
        return _eval_impl(eqx.combine(dynamic, static), env, params, state, action, measure, how)

    return jax.jit(run)


@functools.lru_cache(maxsize=64)
def _untraced_parts(env, params, measure, how):
    """Jitted env and scoring halves of ``_eval_impl`` for a model that cannot be traced."""
    observe = jax.jit(lambda state: env.observe(state, params))
    truth = jax.jit(lambda state, action: env.true_reward(state, action, params))

    @jax.jit
    def scores(preds, true):
        dis = measure_fn(measure)(preds) if preds.shape[0] >= 2 else jnp.float32(jnp.nan)
        return {"error": jnp.abs(aggregate(preds, how) - true), "disagreement": dis}

    return observe, truth, scores


def _eval_untraced(model, env, params, state, action, measure, how):
    """``_eval_impl`` with the model called eagerly on concrete arrays (``jit=False``)."""
    observe, truth, scores = _untraced_parts(env, params, measure, how)
    out = np.asarray(model(observe(state), action), np.float32)
    if out.ndim > 1:
        raise ValueError(
            f"a reward model must return one prediction per member, shape [K] or (), for one "
            f"(obs, action); got shape {tuple(out.shape)}"
        )
    preds = jnp.asarray(np.atleast_1d(out))
    true = truth(state, action)
    return {"preds": preds, "true": true, **scores(preds, true)}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One example's numbers, on the host."""

    preds: np.ndarray  # [K]
    true: float
    error: float  # |aggregate(preds, how) - true|
    disagreement: float  # NaN for K = 1

    def agg(self, how: str) -> float:
        return float(aggregate(jnp.asarray(self.preds), how))


class Evaluator:
    """Evaluates one model on single ``(state, action)`` examples, compiled once.

    ``jit=False`` runs eagerly (for models that cannot be traced).
    """

    def __init__(self, model, env, params, measure="gap", how="mean", jit=True):
        self.env, self.params, self.measure, self.how = env, params, measure, how
        self.model, self.jit = model, jit
        if jit:
            self.dynamic, static = eqx.partition(model, eqx.is_array)
            try:
                self.fn = _compiled(static, env, params, measure, how)
            except TypeError:  # unhashable static parts: compile for this instance only
                self.fn = jax.jit(
                    lambda d, s, a: _eval_impl(
                        eqx.combine(d, static), env, params, s, a, measure, how
                    )
                )

    def __call__(self, state, action) -> Evaluation:
        action = jnp.asarray(action)  # int32 for discrete envs, float32 vectors for boxes
        if self.jit:
            out = self.fn(self.dynamic, state, action)
        else:
            out = _eval_untraced(
                self.model, self.env, self.params, state, action, self.measure, self.how
            )
        out = jax.device_get(out)
        return Evaluation(
            np.asarray(out["preds"]),
            float(out["true"]),
            float(out["error"]),
            float(out["disagreement"]),
        )


def evaluate(model, env, params, state, action, measure="gap", how="mean", jit=True) -> Evaluation:
    """``Evaluation`` of ``model`` on one ``(state, action)`` (the true reward from ``env``)."""
    return Evaluator(model, env, params, measure, how, jit)(state, action)


# --------------------------------------------------------------------------- examples and messages


class Example:
    """A drawn input; its ``repr`` (shown by hypothesis) is the state as a text grid."""

    def __init__(self, env, params, state, action, perturbation: S.Perturbation | None = None):
        self.env, self.params = env, params
        self.state, self.action, self.perturbation = state, action, perturbation

    def __repr__(self) -> str:
        grid = self.env.render_text(jax.device_get(self.state), self.params, legend=False)
        text = f"\n{grid}\naction {S.describe_action(self.env, self.params, self.action)}"
        if self.perturbation is not None:
            p = self.perturbation
            text += f"; object {p.index} {p.feature} {p.old} -> {p.new}"
        return text


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _fmt_eval(ev: Evaluation, how: str) -> str:
    members = ", ".join(_fmt(v) for v in ev.preds)
    return (
        f"model:       members [{members}] ({how} {_fmt(ev.agg(how))})\n"
        f"true reward: {_fmt(ev.true)}"
    )


def describe(env, params, state, action, ev: Evaluation | None = None, how: str = "mean") -> str:
    """A state as a text grid with the action and, given an ``Evaluation``, model and true reward.

    Use it with ``hypothesis.note`` in your own property tests.
    """
    text = env.render_text(jax.device_get(state), params)
    text += f"\naction:      {S.describe_action(env, params, action)}"
    if ev is not None:
        text += "\n" + _fmt_eval(ev, how)
    return text


@dataclasses.dataclass(frozen=True)
class _Context:
    name: str
    env: Environment
    params: EnvParams
    distribution: str
    how: str

    def violation(self, headline: str, body: str) -> PropertyViolation:
        err = PropertyViolation(
            f"reward-model property {self.name} failed on {self.env.name} "
            f"(split={S.split_params(self.params, self.distribution).split!r}, "
            f"distribution={self.distribution!r}): {headline}\n"
            f"Minimal failing example (shrunk by hypothesis):\n{body}"
        )
        err.property = self.name
        return err


# --------------------------------------------------------------------------- running


def _settings(max_examples: int | None, settings: Settings | None) -> Settings:
    if settings is not None:
        return settings
    parent = Settings.default
    return Settings(
        parent=parent,
        max_examples=parent.max_examples if max_examples is None else max_examples,
        deadline=None,
        database=None,
        phases=[p for p in parent.phases if p != Phase.explain],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def _run(
    name: str, strategy, check, settings: Settings, digest: bytes, seed: int | None = None
) -> PropertyResult:
    """Run ``check(example)`` on examples from ``strategy`` under hypothesis."""
    stats = {"n": 0, "first": None, "best": None}

    def probe(example):
        stats["n"] += 1
        try:
            score = check(example)
        except PropertyViolation:
            if stats["first"] is None:
                stats["first"] = stats["n"]
            raise
        if score is not None and math.isfinite(score):
            stats["best"] = score if stats["best"] is None else max(stats["best"], score)

    probe.__name__ = probe.__qualname__ = name.split("(")[0]
    probe._hypothesis_internal_add_digest = digest
    test = settings(given(example=strategy)(probe))
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    try:
        test()
    except PropertyViolation as err:
        err.examples, err.first_failure_at = stats["n"], stats["first"]
        raise
    return PropertyResult(name, stats["n"], stats["best"])


def _check_target(tgt: str | None) -> None:
    if tgt not in TARGETS:
        raise ValueError(f"argument 'target' must be one of {TARGETS}, got {tgt!r}")


def _score(tgt: str | None, auto: float, ev: Evaluation | None) -> float | None:
    if tgt is None:
        return None
    if ev is None:
        value = auto
    else:
        value = {"auto": auto, "error": ev.error, "disagreement": ev.disagreement}[tgt]
    if tgt == "disagreement" and ev is not None and ev.preds.size < 2:
        raise ValueError(
            "target='disagreement' needs an ensemble of at least 2 members, got a model with "
            f"{ev.preds.size}"
        )
    if math.isfinite(value):
        target(float(value), label=str(tgt))
        return float(value)
    return None


def _state_action_examples(env, params, distribution, collect, **kw):
    """``Example`` s: a mix of plain ``(state, action)`` and collecting ones (grid envs)."""
    if collect == "mixed":
        collect = S.is_grid_env(env, params)
        if collect:
            sa = st.one_of(
                S.state_actions(env, params, distribution, collect=True, **kw),
                S.state_actions(env, params, distribution, collect=False, **kw),
            )
        else:
            sa = S.state_actions(env, params, distribution, **kw)
    else:
        sa = S.state_actions(env, params, distribution, collect=bool(collect), **kw)
    return _as_examples(env, S.split_params(params, distribution), sa)


@st.composite
def _as_examples(draw, env, params, strategy):
    """Wrap draws in ``Example`` (a composite, so hypothesis prints ``Example``'s repr)."""
    value = draw(strategy)
    if isinstance(value, S.Perturbation):
        return Example(env, params, value.state, value.action, value)
    return Example(env, params, value[0], value[1])


def _check_common(model, how, measure, tgt):
    if how not in AGGREGATIONS:
        raise ValueError(f"argument 'how' must be one of {AGGREGATIONS}, got {how!r}")
    if measure not in MEASURES:
        raise ValueError(f"argument 'measure' must be one of {MEASURES}, got {measure!r}")
    _check_target(tgt)


# --------------------------------------------------------------------------- the property type


class RewardProperty:
    """A property: call it to check a model, or use ``.test(env, ...)`` as a test decorator."""

    def __init__(self, fn: Callable[..., PropertyResult]):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, model, env, params=None, **options) -> PropertyResult:
        """Check ``model`` (an ``innerlab.protocols.RewardFunction``) on ``env``'s states."""
        require(model, RewardFunction, consumer=f"testing.{self.fn.__name__}", argument="model")
        return self.fn(model, env, params, **options)

    def test(self, env: str | Environment, params: EnvParams | None = None, **options):
        """Decorator: the decorated function returns the model; the test checks this property.

        >>> @finite.test("Orchard-v0", distribution="any")
        ... def test_my_model_is_finite(my_model):  # my_model: a pytest fixture
        ...     return my_model
        """

        def decorate(fn):
            @functools.wraps(fn)
            def test_fn(*args, **kwargs):
                model = fn(*args, **kwargs)
                self(model, env, params, **options)

            return test_fn

        return decorate

    def __repr__(self) -> str:
        return f"<reward property {self.fn.__name__}>"


def reward_property(fn: Callable[..., PropertyResult]) -> RewardProperty:
    """Make ``fn(model, env, params, **options)`` a ``RewardProperty``."""
    return RewardProperty(fn)


# --------------------------------------------------------------------------- properties


@reward_property
def finite(
    model,
    env,
    params=None,
    *,
    distribution: str = "any",
    collect: bool | str = "mixed",
    target: str | None = "auto",
    how: str = "mean",
    measure: str = "gap",
    max_examples: int | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    jit: bool = True,
) -> PropertyResult:
    """Every member's prediction is finite (no NaN, no inf) on states of ``distribution``.

    ``target="auto"`` steers towards large ``|prediction|``.
    """
    _check_common(model, how, measure, target)
    env, params = S.resolve_env(env, params)
    ctx = _Context("finite", env, params, distribution, how)

    ev_fn = Evaluator(model, env, S.split_params(params, distribution), measure, how, jit)

    def check(ex: Example):
        ev = ev_fn(ex.state, ex.action)
        if not np.all(np.isfinite(ev.preds)):
            raise ctx.violation(
                "a prediction is not finite", describe(env, ex.params, ex.state, ex.action, ev, how)
            )
        return _score(target, float(np.max(np.abs(ev.preds))), ev)

    examples = _state_action_examples(env, params, distribution, collect)
    digest = _digest("finite", env.name, params, distribution, collect, type(model).__name__)
    return _run(ctx.name, examples, check, _settings(max_examples, settings), digest, seed)


@reward_property
def bounded(
    model,
    env,
    params=None,
    *,
    low: float,
    high: float,
    distribution: str = "any",
    collect: bool | str = "mixed",
    target: str | None = "auto",
    how: str = "mean",
    measure: str = "gap",
    max_examples: int | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    jit: bool = True,
) -> PropertyResult:
    """Every member's prediction lies in ``[low, high]`` (e.g. the env's reward range).

    ``target="auto"`` steers towards predictions far outside the range.
    """
    _check_common(model, how, measure, target)
    if not low <= high:
        raise ValueError(f"arguments 'low' <= 'high' required, got low={low}, high={high}")
    env, params = S.resolve_env(env, params)
    ctx = _Context(f"bounded(low={low}, high={high})", env, params, distribution, how)

    ev_fn = Evaluator(model, env, S.split_params(params, distribution), measure, how, jit)

    def check(ex: Example):
        ev = ev_fn(ex.state, ex.action)
        excess = float(np.max(np.maximum(ev.preds - high, low - ev.preds)))
        if not np.all((ev.preds >= low) & (ev.preds <= high)):
            raise ctx.violation(
                f"a prediction is outside [{low}, {high}]",
                describe(env, ex.params, ex.state, ex.action, ev, how),
            )
        return _score(target, excess, ev)

    examples = _state_action_examples(env, params, distribution, collect)
    digest = _digest("bounded", low, high, env.name, params, distribution, type(model).__name__)
    return _run(ctx.name, examples, check, _settings(max_examples, settings), digest, seed)


def _perturbation_examples(env, params, feature, distribution, collect, increase):
    perturbations = S.feature_perturbations(
        env, params, feature, distribution, collect=collect, increase=increase
    )
    return _as_examples(env, S.split_params(params, distribution), perturbations)


def _describe_pair(env, params, p: S.Perturbation, ev, ev2, how) -> str:
    cell = tuple(np.asarray(S.GridEnvironment.grid_of(p.state).obj_pos[p.index]).tolist())
    return (
        f"{describe(env, params, p.state, p.action, ev, how)}\n"
        f"perturbed:   object {p.index} at {cell}: "
        f"{p.feature} {p.old} -> {p.new}\n"
        f"{env.render_text(jax.device_get(p.perturbed), params, legend=False)}\n"
        f"{_fmt_eval(ev2, how)}"
    )


@reward_property
def invariant(
    model,
    env,
    params=None,
    *,
    feature: str,
    atol: float = 1e-4,
    distribution: str = "any",
    collect: bool = True,
    target: str | None = "auto",
    how: str = "mean",
    measure: str = "gap",
    max_examples: int | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    jit: bool = True,
) -> PropertyResult:
    """Changing ``feature`` (declared irrelevant, e.g. Orchard's ``"shape"``) of one object
    changes no member's prediction by more than ``atol``.

    With ``collect=True`` the changed object is the one the action collects.
    ``target="auto"`` steers towards large changes.
    """
    _check_common(model, how, measure, target)
    env, params = S.resolve_env(env, params)
    ctx = _Context(f"invariant(feature={feature!r})", env, params, distribution, how)

    ev_fn = Evaluator(model, env, S.split_params(params, distribution), measure, how, jit)

    def check(ex: Example):
        p = ex.perturbation
        ev = ev_fn(p.state, p.action)
        ev2 = ev_fn(p.perturbed, p.action)
        change = float(np.max(np.abs(ev2.preds - ev.preds)))
        if not change <= atol:
            raise ctx.violation(
                f"changing {feature} changed the prediction by {_fmt(change)} > atol={atol}",
                _describe_pair(env, ex.params, p, ev, ev2, how),
            )
        return _score(target, change, ev2)

    examples = _perturbation_examples(env, params, feature, distribution, collect, False)
    digest = _digest("invariant", feature, env.name, params, distribution, type(model).__name__)
    return _run(ctx.name, examples, check, _settings(max_examples, settings), digest, seed)


@reward_property
def monotonic(
    model,
    env,
    params=None,
    *,
    feature: str,
    increasing: bool = True,
    where: Callable[[S.Perturbation], bool] | None = None,
    atol: float = 1e-4,
    distribution: str = "any",
    collect: bool = True,
    target: str | None = "auto",
    how: str = "mean",
    measure: str = "gap",
    max_examples: int | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    jit: bool = True,
) -> PropertyResult:
    """Raising ``feature`` of one object never lowers (``increasing=False``: never raises)
    any member's prediction by more than ``atol``.

    ``where(perturbation) -> bool`` restricts the claim (e.g. Orchard is
    monotonic in size only for harmless colours); other examples are discarded
    with ``hypothesis.assume``. ``target="auto"`` steers towards large violations.
    """
    _check_common(model, how, measure, target)
    env, params = S.resolve_env(env, params)
    direction = "increasing" if increasing else "decreasing"
    ctx = _Context(f"monotonic(feature={feature!r}, {direction})", env, params, distribution, how)
    sign = 1.0 if increasing else -1.0

    ev_fn = Evaluator(model, env, S.split_params(params, distribution), measure, how, jit)

    def check(ex: Example):
        p = ex.perturbation
        if where is not None:
            assume(bool(where(p)))
        ev = ev_fn(p.state, p.action)
        ev2 = ev_fn(p.perturbed, p.action)
        drop = float(np.max(sign * (ev.preds - ev2.preds)))
        if not drop <= atol:
            raise ctx.violation(
                f"raising {feature} {p.old} -> {p.new} moved a prediction the wrong way by "
                f"{_fmt(drop)} > atol={atol}",
                _describe_pair(env, ex.params, p, ev, ev2, how),
            )
        return _score(target, drop, ev2)

    examples = _perturbation_examples(env, params, feature, distribution, collect, True)
    digest = _digest("monotonic", feature, increasing, env.name, params, distribution,
                     type(model).__name__)
    return _run(ctx.name, examples, check, _settings(max_examples, settings), digest, seed)


@reward_property
def members_agree(
    model,
    env,
    params=None,
    *,
    tol: float,
    measure: str = "gap",
    distribution: str = "train",
    collect: bool | str = "mixed",
    target: str | None = "auto",
    how: str = "mean",
    max_examples: int | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    jit: bool = True,
) -> PropertyResult:
    """The ensemble's disagreement (``innerlab.adversary.disagreement`` with ``measure``,
    ``"gap"`` = max - min or ``"std"``) is at most ``tol`` on states of ``distribution``.

    On ``"train"`` this checks the ensemble fitted its data; on ``"test"`` or
    ``"any"`` disagreement is expected where the data left the reward
    unidentified, which is what the adversary looks for. ``target="auto"``
    steers towards maximal disagreement.
    """
    _check_common(model, how, measure, target)
    if tol < 0:
        raise ValueError(f"argument 'tol' must be >= 0, got {tol}")
    env, params = S.resolve_env(env, params)
    ctx = _Context(f"members_agree(tol={tol}, measure={measure!r})", env, params, distribution,
                   how)

    ev_fn = Evaluator(model, env, S.split_params(params, distribution), measure, how, jit)

    def check(ex: Example):
        ev = ev_fn(ex.state, ex.action)
        if ev.preds.size < 2:
            raise ValueError(
                f"members_agree needs an ensemble of at least 2 members, got {ev.preds.size}"
            )
        if not ev.disagreement <= tol:
            raise ctx.violation(
                f"members disagree by {_fmt(ev.disagreement)} ({measure}) > tol={tol}",
                describe(env, ex.params, ex.state, ex.action, ev, how),
            )
        return _score("disagreement" if target == "auto" else target, ev.disagreement, ev)

    examples = _state_action_examples(env, params, distribution, collect)
    digest = _digest("agree", tol, measure, env.name, params, distribution, type(model).__name__)
    return _run(ctx.name, examples, check, _settings(max_examples, settings), digest, seed)


@reward_property
def matches_true_reward(
    model,
    env,
    params=None,
    *,
    tol: float,
    how: str = "mean",
    distribution: str = "test",
    collect: bool | str = "mixed",
    target: str | None = "auto",
    measure: str = "gap",
    max_examples: int | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    jit: bool = True,
) -> PropertyResult:
    """``|aggregate(model, how) - true_reward| <= tol`` on states of ``distribution``.

    The error is ``innerlab.adversary.true_gap`` (ground truth: fine in a test,
    never a training-time search objective). ``target="auto"`` steers towards
    the largest error.
    """
    _check_common(model, how, measure, target)
    if tol < 0:
        raise ValueError(f"argument 'tol' must be >= 0, got {tol}")
    env, params = S.resolve_env(env, params)
    ctx = _Context(f"matches_true_reward(tol={tol}, how={how!r})", env, params, distribution, how)

    ev_fn = Evaluator(model, env, S.split_params(params, distribution), measure, how, jit)

    def check(ex: Example):
        ev = ev_fn(ex.state, ex.action)
        if not ev.error <= tol:
            raise ctx.violation(
                f"the model's {how} is {_fmt(ev.error)} from the true reward > tol={tol}",
                describe(env, ex.params, ex.state, ex.action, ev, how),
            )
        return _score("error" if target == "auto" else target, ev.error, ev)

    examples = _state_action_examples(env, params, distribution, collect)
    digest = _digest("true", tol, how, env.name, params, distribution, type(model).__name__)
    return _run(ctx.name, examples, check, _settings(max_examples, settings), digest, seed)


# --------------------------------------------------------------------------- EPIC


def _reward_table(fn, obs, num_actions, how):
    """``[A]`` rewards of every action for one observation, aggregated over members."""
    preds = jax.vmap(lambda a: jnp.atleast_1d(jnp.asarray(fn(obs, a), jnp.float32)))(
        jnp.arange(num_actions, dtype=jnp.int32)
    )
    return aggregate(preds, how)


def _epic_impl(model, reference, env, params, states, actions, gamma, how):
    """EPIC distance of model vs reference on a batch, the reward tables and canonical rewards.

    Both rewards are evaluated once, as all-action tables ``[2B, A]`` over the
    batch's states and their successors; EPIC then reads them through indices
    (its "states" are row numbers), so each model is traced once.
    """
    n = env.num_actions(params)
    b = actions.shape[0]
    keys = jax.random.split(jax.random.key(0), b)
    next_states = jax.vmap(lambda k, s, a: env.step_env(k, s, a, params)[1])(keys, states, actions)
    both = jax.tree.map(lambda x, y: jnp.concatenate([x, y]), states, next_states)
    obs = jax.vmap(lambda s: env.observe(s, params))(both)
    model_all = jax.vmap(lambda o: _reward_table(model, o, n, how))(obs)
    if reference is None:
        actions_all = jnp.arange(n, dtype=jnp.int32)
        ref_all = jax.vmap(
            lambda s: jax.vmap(lambda a: env.true_reward(s, a, params))(actions_all)
        )(both)
    else:
        ref_all = jax.vmap(lambda o: _reward_table(reference, o, n, how))(obs)
    tables = {"model": model_all[:b], "reference": ref_all[:b]}
    canon = {
        "model": _canonical_probe(model_all[:b], model_all[b:], actions, gamma),
        "reference": _canonical_probe(ref_all[:b], ref_all[b:], actions, gamma),
    }
    spread = {k: jnp.var(v) for k, v in canon.items()}
    safe = (spread["model"] > 1e-10) & (spread["reference"] > 1e-10)
    rows, next_rows = jnp.arange(b), jnp.arange(b, 2 * b)
    # pearson raises on a constant reward; only ask for the distance when both vary
    distance = jax.lax.cond(
        safe,
        lambda: epic_distance_state_action(
            lambda i: model_all[i], lambda i: ref_all[i], rows, actions, next_rows, rows, gamma
        ),
        lambda: jnp.float32(jnp.nan),
    )
    return {"distance": distance, "spread": spread, "canon": canon, **tables}


def _canonical_probe(now, nxt, actions, gamma):
    """The canonical rewards EPIC correlates, up to a constant, ``[B]``: used to check
    they vary (``pearson`` rejects a constant input) and to explain a failure."""
    r = jnp.take_along_axis(now, actions[:, None], axis=1)[:, 0]
    return r + gamma * jnp.mean(nxt, axis=1) - jnp.mean(now, axis=1)


@functools.lru_cache(maxsize=32)
def _compiled_epic(static, ref_static, env, params, gamma, how):
    def run(dynamic, ref_dynamic, states, actions):
        model = eqx.combine(dynamic, static)
        reference = None if ref_static is None else eqx.combine(ref_dynamic, ref_static)
        return _epic_impl(model, reference, env, params, states, actions, gamma, how)

    return jax.jit(run)


@st.composite
def _batches(draw, env, params, distribution, collect, batch_size):
    """``batch_size`` ``(state, action)`` pairs stacked into one host batch (a mix of
    collecting and plain ones for grid envs)."""
    grid = S.is_grid_env(env, params) and collect
    pairs = []
    for _ in range(batch_size):
        use_collect = grid and draw(st.booleans())
        pairs.append(draw(S._host_state_actions(env, params, distribution, use_collect)))
    states = jax.tree.map(lambda *xs: np.stack(xs), *[p[0] for p in pairs])
    return _Batch(states, np.stack([p[1] for p in pairs]).astype(np.int32))


class _Batch:
    """A drawn batch; its repr is short (hypothesis prints it), the report renders one state."""

    def __init__(self, states, actions):
        self.states, self.actions = states, actions

    def __repr__(self) -> str:
        return f"<batch of {len(self.actions)} transitions, actions {self.actions.tolist()}>"


@reward_property
def epic_equivalent(
    model,
    env,
    params=None,
    *,
    tol: float = 0.05,
    reference=None,
    gamma: float = 0.99,
    batch_size: int = 16,
    distribution: str = "train",
    collect: bool = True,
    target: str | None = "auto",
    how: str = "mean",
    max_examples: int | None = None,
    settings: Settings | None = None,
    seed: int | None = None,
    jit: bool = True,
) -> PropertyResult:
    """The EPIC distance between ``model`` and ``reference`` (default: the env's true reward)
    is at most ``tol`` on batches of ``batch_size`` transitions from ``distribution``.

    EPIC (``innerlab.reward_models.epic.epic_distance_state_action``) ignores
    positive rescaling and constant shifts, and potential shaping that its
    canonicalisation can see: for rewards of ``(s, a)`` (what a reward model
    computes), EPIC's expectations run over all actions and over the batch's
    states as ``D_S``. Each hypothesis example is one batch; ``how``
    aggregates members first. A batch on which the reference reward is
    constant carries no information and is discarded. ``target="auto"``
    steers towards large distances.
    """
    _check_common(model, how, "gap", target)
    if reference is not None:
        require(reference, RewardFunction, consumer="testing.epic_equivalent",
                argument="reference")
    if target in ("disagreement", "error"):
        raise ValueError(
            f"argument 'target' of epic_equivalent must be 'auto' or None, got {target!r}"
        )
    if tol < 0:
        raise ValueError(f"argument 'tol' must be >= 0, got {tol}")
    if batch_size < 2:
        raise ValueError(f"argument 'batch_size' must be >= 2, got {batch_size}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"argument 'gamma' must be in [0, 1], got {gamma}")
    env, params = S.resolve_env(env, params)
    run_params = S.split_params(params, distribution)
    ctx = _Context(f"epic_equivalent(tol={tol})", env, params, distribution, how)
    dynamic, static = eqx.partition(model, eqx.is_array)
    ref_dynamic, ref_static = (None, None) if reference is None else eqx.partition(
        reference, eqx.is_array
    )
    if jit:
        fn = _compiled_epic(static, ref_static, env, run_params, gamma, how)
    else:
        def fn(d, rd, s, a):
            return _epic_impl(model, reference, env, run_params, s, a, gamma, how)

    def check(batch: _Batch):
        out = jax.device_get(fn(dynamic, ref_dynamic, batch.states, batch.actions))
        # a batch on which the reference's canonical reward is constant says nothing
        assume(float(out["spread"]["reference"]) > 1e-10)
        distance = float(out["distance"])
        if not float(out["spread"]["model"]) > 1e-10:
            distance = 1.0  # a constant (canonical) model matches no varying reference
        if not distance <= tol:
            raise ctx.violation(
                f"EPIC distance {_fmt(distance)} > tol={tol} on a batch of "
                f"{len(batch.actions)} transitions",
                _describe_epic(env, run_params, batch, out, how),
            )
        return _score(target, distance, None) if target else None

    examples = _batches(env, params, distribution, collect, batch_size)
    digest = _digest("epic", tol, gamma, batch_size, env.name, params, distribution,
                     type(model).__name__, type(reference).__name__)
    return _run(ctx.name, examples, check, _settings(max_examples, settings), digest, seed)


def _describe_epic(env, params, batch: _Batch, out, how) -> str:
    """The transition contributing most to the distance: ``1 - rho`` is half the mean
    squared difference of the standardised canonical rewards, so show the largest one."""

    def z(x):
        sd = np.std(x)
        return (x - np.mean(x)) / sd if sd > 1e-10 else np.zeros_like(x)

    zm, zr = z(out["canon"]["model"]), z(out["canon"]["reference"])
    worst = int(np.argmax(np.abs(zm - zr)))
    state = jax.tree.map(lambda x: x[worst], batch.states)
    return (
        f"the transition that contributes most (standardised canonical reward: model "
        f"{_fmt(zm[worst])}, reference {_fmt(zr[worst])}):\n"
        f"{describe(env, params, state, batch.actions[worst])}\n"
        f"rewards of every action here: model ({how}) "
        f"{np.round(out['model'][worst], 4).tolist()}, "
        f"reference {np.round(out['reference'][worst], 4).tolist()}\n"
        f"standardised canonical rewards of the batch:\n"
        f"  model     {np.round(zm, 2).tolist()}\n  reference {np.round(zr, 2).tolist()}"
    )
