"""Population-based training (Jaderberg et al. 2017): one rule, two backends.

Every ``interval`` learner iterations the population is ranked by a *fitness*;
the bottom ``truncation`` fraction copies the parameters and hyper-parameters of
a member drawn from the top fraction (*exploit*) and multiplies each evolving
hyper-parameter by a factor drawn from ``factors`` (*explore*). The fitness is
the mean return of a member's last ``window`` episodes: ``window=1`` is "this
episode", a longer window is what can make selection see past one episode.

The rule lives in one place and both backends use it:

- :class:`PBTConfig` (the options, checked once), :func:`truncation_count`,
  :func:`exploit_explore` (who copies whom, the factors), :func:`window_push` /
  :func:`window_fitness` (the fitness);
- **in-graph** (the default): the whole population is one ``vmap`` over members
  inside one ``jit``; :func:`run_generations` is the pure loop, for any
  :class:`Member` (the Krueger et al. game of ``recipes.cross_episodic``, or
  :func:`agent_member`, which builds one from an agent config), and
  :func:`train_population` the resumable driver with a run directory;
- **Ray Tune** (:func:`train_population_ray`): each member is a trial under
  ``ray.tune.schedulers.PopulationBasedTraining`` configured from the same
  :class:`PBTConfig` (same truncation count, factors and synchronous
  generations) and reporting the same fitness, for a user with a cluster.

Both return a :class:`PBTHistory`: per generation the fitness, who copied whom
(``source[i]`` is the member that ``i`` copied, ``i`` itself if it kept its own)
and the hyper-parameters after explore.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "Member",
    "PBTConfig",
    "PBTHistory",
    "PopulationState",
    "agent_member",
    "copy_members",
    "exploit_explore",
    "init_population",
    "run_generations",
    "train_population",
    "train_population_ray",
    "truncation_count",
    "window_fitness",
    "window_push",
]


# ------------------------------------------------------------------------------ the rule


@dataclasses.dataclass(frozen=True)
class PBTConfig:
    """The options of population-based training (checked here, for both backends).

    ``population``: members (>= 2); ``interval``: learner iterations between two
    exploit/explore steps (>= 1); ``truncation``: the fraction in (0, 0.5] that
    copies and is copied; ``factors``: the perturbation factors, one drawn per
    copied member and hyper-parameter; ``hypers``: the hyper-parameters that
    evolve, with their starting values; ``window``: episodes in the fitness (1:
    the last episode); ``swap_envs``: shuffle the members' environments among
    them after every iteration (Krueger et al.'s mitigation: a member no longer
    meets the states its own actions caused); ``select=False``: the control, the
    same population trained side by side with no exploit/explore at all.
    """

    population: int = 10
    interval: int = 10
    truncation: float = 0.2
    factors: tuple[float, ...] = (0.8, 1.2)
    hypers: tuple[tuple[str, float], ...] = (("learning_rate", 1e-3),)
    window: int = 1
    swap_envs: bool = False
    select: bool = True

    def __post_init__(self):
        for name, low in (("population", 2), ("interval", 1), ("window", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"PBTConfig.{name} must be an int >= {low}, got {value!r}")
        t = self.truncation
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 < t <= 0.5:
            raise ValueError(f"PBTConfig.truncation must be a fraction in (0, 0.5], got {t!r}")
        factors = tuple(self.factors)
        if not factors or not all(isinstance(f, int | float) and math.isfinite(f) and f > 0
                                  for f in factors):
            raise ValueError(f"PBTConfig.factors must be finite numbers > 0, got {self.factors!r}")
        hypers = self.hypers.items() if isinstance(self.hypers, Mapping) else self.hypers
        hypers = tuple(tuple(pair) for pair in hypers)
        for name, value in hypers:
            if not isinstance(name, str) or not isinstance(value, int | float) or not (
                    math.isfinite(value)):
                raise ValueError(f"PBTConfig.hypers must map names to finite numbers, got "
                                 f"{name!r}: {value!r}")
        names = [n for n, _ in hypers]
        if len(set(names)) != len(names):
            raise ValueError(f"PBTConfig.hypers repeats a name: {names}")
        object.__setattr__(self, "factors", tuple(float(f) for f in factors))
        object.__setattr__(self, "hypers", tuple((n, float(v)) for n, v in hypers))

    @property
    def hyper_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.hypers)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hypers"] = dict(self.hypers)
        return out


def truncation_count(population: int, truncation: float) -> int:
    """Members in the bottom (and in the top) group: ``ceil(truncation * population)``,
    at most half the population (Ray Tune's ``PopulationBasedTraining`` counts the same
    way, so both backends copy the same number of members)."""
    return min(math.ceil(population * truncation), population // 2)


class Exploit(eqx.Module):
    """One exploit/explore step: ``source [P]`` (the member each slot copies; itself if
    kept), ``factor [P, H]`` (1 where not copied) and the new ``hypers`` (name -> ``[P]``)."""

    source: Array
    factor: Array
    hypers: dict


def exploit_explore(key: Array, fitness: Array, hypers: Mapping[str, Array],
                    config: PBTConfig) -> Exploit:
    """Truncation selection, then perturbation (pure; ``jit``-able).

    ``fitness [P]``: higher is better; NaN (no episode yet) ranks lowest. The
    ``n = truncation_count`` lowest members each copy a member drawn uniformly
    from the ``n`` highest (ties broken by the lower index ranking lower) and
    multiply each hyper-parameter by a factor drawn uniformly from
    ``config.factors``; everyone else keeps its own.
    """
    p = fitness.shape[0]
    if p != config.population:
        raise ValueError(f"argument 'fitness' must have shape [{config.population}] "
                         f"(the population), got {fitness.shape}")
    n = truncation_count(p, config.truncation)
    ranked = jnp.where(jnp.isnan(fitness), -jnp.inf, fitness)
    order = jnp.argsort(ranked, stable=True)  # ascending: worst first
    bottom, top = order[:n], order[p - n:]
    k_donor, k_factor = jax.random.split(key)
    donors = top[jax.random.randint(k_donor, (n,), 0, n)]
    source = jnp.arange(p).at[bottom].set(donors)
    names = tuple(hypers)
    drawn = jnp.asarray(config.factors)[
        jax.random.randint(k_factor, (p, len(names)), 0, len(config.factors))]
    copied = (source != jnp.arange(p))[:, None]
    factor = jnp.where(copied, drawn, 1.0).astype(jnp.float32)
    new = {name: jnp.asarray(hypers[name])[source] * factor[:, i] for i, name in enumerate(names)}
    return Exploit(source.astype(jnp.int32), factor, new)


def copy_members(tree: Any, source: Array) -> Any:
    """``tree`` (every array leaf with a leading member axis) with slot ``i`` replaced by
    member ``source[i]``."""
    return jax.tree.map(lambda x: x[source] if eqx.is_array(x) else x, tree)


def window_push(buffer: Array, count: Array, value: Array, episodes: Array) -> tuple[Array, Array]:
    """Push ``min(episodes, k)`` episodes of mean return ``value`` into one member's window.

    ``buffer [k]`` holds the last ``k`` episode returns, newest last; ``count []`` how
    many are filled. A learner iteration reports the mean return of the episodes that
    ended in it, which stands in for each of them (exact when one episode ends per
    iteration, as in the Krueger et al. game). ``episodes == 0`` changes nothing.
    """
    k = buffer.shape[0]
    n = jnp.minimum(jnp.asarray(episodes, jnp.int32), k)
    idx = jnp.arange(k)
    shifted = jnp.roll(buffer, -n)
    buffer = jnp.where(idx >= k - n, jnp.where(jnp.isfinite(value), value, 0.0), shifted)
    return buffer, jnp.minimum(count + n, k)


def window_fitness(buffer: Array, count: Array) -> Array:
    """The mean of the filled part of a window (NaN while it is empty)."""
    k = buffer.shape[-1]
    filled = jnp.arange(k) >= k - count[..., None]
    total = jnp.sum(jnp.where(filled, buffer, 0.0), -1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


# ------------------------------------------------------------------------------ in-graph


@dataclasses.dataclass(frozen=True)
class Member:
    """What the in-graph population needs of one member's learner (pure functions).

    ``init(key) -> state``; ``iteration(state, hypers) -> (state, metrics)`` with
    ``hypers`` a dict of scalars and metrics holding ``episode_return`` (NaN if no
    episode ended) and ``episodes``; ``learned``: the fields of the state that
    exploit copies (parameters and optimiser state); ``env_fields``: the fields
    that ``swap_envs`` shuffles among members (the environment side).
    """

    init: Callable[[Array], Any]
    iteration: Callable[[Any, dict], tuple[Any, dict]]
    learned: tuple[str, ...]
    env_fields: tuple[str, ...] = ()


class PopulationState(eqx.Module):
    """The population between generations: member states ``[P]``, their hypers
    (name -> ``[P]``), fitness windows ``[P, k]`` / ``[P]``, a key and the generation."""

    members: Any
    hypers: dict
    window: Array
    count: Array
    key: Array
    generation: Array


def _replace_fields(state: Any, names: Sequence[str], new: Any) -> Any:
    if not names:
        return state
    return eqx.tree_at(lambda s: tuple(getattr(s, n) for n in names), state,
                       tuple(getattr(new, n) for n in names))


def init_population(member: Member, config: PBTConfig, key: Array) -> PopulationState:
    """``config.population`` fresh members (one key each), every one starting at the
    configured hyper-parameter values."""
    k_members, key = jax.random.split(key)
    members = eqx.filter_vmap(member.init)(jax.random.split(k_members, config.population))
    p = config.population
    hypers = {n: jnp.full((p,), v, jnp.float32) for n, v in config.hypers}
    return PopulationState(members, hypers, jnp.zeros((p, config.window), jnp.float32),
                           jnp.zeros((p,), jnp.int32), jax.random.key_data(key), jnp.int32(0))


def _generation(member: Member, config: PBTConfig, pop: PopulationState):
    """``interval`` iterations of every member, then exploit/explore. Returns the new
    population and the generation's record (fitness before selection, source, hypers
    after explore, every metric averaged over the interval)."""
    key = jax.random.wrap_key_data(pop.key)
    key, k_swap, k_pbt = jax.random.split(key, 3)

    dyn0, static = eqx.partition(pop.members, eqx.is_array)

    def step(carry, k):
        dyn, window, count = carry
        members, metrics = eqx.filter_vmap(member.iteration)(eqx.combine(dyn, static),
                                                              pop.hypers)
        window, count = jax.vmap(window_push)(window, count, metrics["episode_return"],
                                              metrics["episodes"])
        if config.swap_envs and member.env_fields:
            perm = jax.random.permutation(k, config.population)
            members = _replace_fields(members, member.env_fields, copy_members(members, perm))
        return (eqx.filter(members, eqx.is_array), window, count), metrics

    (dyn, window, count), metrics = jax.lax.scan(
        step, (dyn0, pop.window, pop.count), jax.random.split(k_swap, config.interval))
    members = eqx.combine(dyn, static)
    fitness = window_fitness(window, count)
    ex = exploit_explore(k_pbt, fitness, pop.hypers, config)
    if not config.select:
        ex = Exploit(jnp.arange(config.population, dtype=jnp.int32), jnp.ones_like(ex.factor),
                     dict(pop.hypers))
    members = _replace_fields(members, member.learned, copy_members(members, ex.source))
    window, count = copy_members((window, count), ex.source)  # a copy inherits its record
    record = {"fitness": fitness, "source": ex.source, "factor": ex.factor,
              "hypers": ex.hypers, "metrics": jax.tree.map(lambda m: jnp.nanmean(m, 0), metrics)}
    new = PopulationState(members, ex.hypers, window, count, jax.random.key_data(key),
                          pop.generation + 1)
    return new, record


def run_generations(member: Member, config: PBTConfig, pop: PopulationState, generations: int):
    """``generations`` generations in one ``lax.scan`` (pure; ``jit``/``vmap``-able, e.g.
    ``vmap`` over independent trials). Records have a leading ``[generations]`` axis."""
    dynamic, static = eqx.partition(pop, eqx.is_array)

    def body(dyn, _):
        new, record = _generation(member, config, eqx.combine(dyn, static))
        return eqx.filter(new, eqx.is_array), record

    dynamic, records = jax.lax.scan(body, dynamic, None, length=generations)
    return eqx.combine(dynamic, static), records


# ------------------------------------------------------------------------------ history


@dataclasses.dataclass
class PBTHistory:
    """What a population did, per generation ``g`` and member ``i`` (both backends).

    ``fitness [G, P]`` (before selection), ``source [G, P]`` (whom ``i`` copied; ``i``
    if nobody), ``hypers`` name -> ``[G, P]`` (after explore), ``metrics`` name ->
    ``[G, P]`` (in-graph: the learner's metrics averaged over the generation's
    iterations; Ray: ``train_s``, the seconds each trial's training call took, NaN
    for a worker's first, compiling, call).
    """

    fitness: np.ndarray
    source: np.ndarray
    hypers: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    backend: str = "in-graph"

    @classmethod
    def from_records(cls, records: Mapping[str, Any], backend: str = "in-graph") -> PBTHistory:
        r = jax.tree.map(np.asarray, dict(records))
        return cls(r["fitness"], r["source"], dict(r["hypers"]), dict(r.get("metrics", {})),
                   backend)

    def copies(self) -> list[tuple[int, int, int]]:
        """``(generation, member, copied_from)`` for every copy, in order."""
        g, i = np.nonzero(self.source != np.arange(self.source.shape[1]))
        return [(int(a), int(b), int(self.source[a, b])) for a, b in zip(g, i, strict=True)]

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-friendly row per generation."""
        out = []
        for g in range(self.fitness.shape[0]):
            row = {"generation": g + 1, "fitness": self.fitness[g].tolist(),
                   "source": self.source[g].tolist(),
                   "hypers": {k: v[g].tolist() for k, v in self.hypers.items()}}
            row.update({k: v[g].tolist() for k, v in self.metrics.items()})
            out.append(row)
        return out

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], backend: str = "in-graph"):
        hypers = {k: np.array([r["hypers"][k] for r in rows]) for k in rows[0]["hypers"]}
        skip = {"generation", "fitness", "source", "hypers", "iteration", "env_steps"}
        metrics = {k: np.array([r[k] for r in rows], float) for k in rows[0] if k not in skip}
        return cls(np.array([r["fitness"] for r in rows], float),
                   np.array([r["source"] for r in rows], int), hypers, metrics, backend)


# ------------------------------------------------------------------------------ agents


def _native_fields(agent_config: Any) -> dict[str, str]:
    """Shared or own option name -> the learner config's field it sets."""
    names = dict(agent_config.spec.names)
    own = {k: k for k, _ in agent_config.options}
    return {**own, **names}


def _planner_module(kind: str):
    from innerlab.planners import muzero, ppo

    modules = {"ppo-lstm": ppo, "ppo-transformer": ppo, "muzero": muzero}
    if kind not in modules:
        raise ValueError(f"in-graph PBT supports the kinds {sorted(modules)}, got {kind!r}")
    return modules[kind]


def agent_member(agent_config: Any, pbt: PBTConfig) -> Member:
    """A :class:`Member` that trains one agent of ``agent_config`` (``ppo-lstm``,
    ``ppo-transformer`` or ``muzero``) with its evolving hypers traced per member.

    The hyper-parameters are options of the agent (``learning_rate``, and for PPO e.g.
    ``ent_coef`` or ``discount``; MuZero's search discount is static, so only its
    learning rate can evolve); exploit copies the network and optimiser state, the
    envs, memories and keys stay with their slot.
    """
    module = _planner_module(agent_config.kind)
    fields = _native_fields(agent_config)
    unknown = [n for n in pbt.hyper_names if n not in fields]
    if unknown:
        raise ValueError(f"PBTConfig.hypers names {unknown}, which are not options of kind "
                         f"{agent_config.kind!r} (evolvable: {sorted(fields)})")
    native = agent_config.native()
    env, params = agent_config.make_env()

    def iteration(state, hypers):
        cfg = dataclasses.replace(native, **{fields[n]: v for n, v in hypers.items()})
        state, metrics = module.train_iteration(state, cfg, env, params)
        metrics = dict(metrics)
        metrics["episode_return"] = jnp.where(metrics["episodes"] > 0,
                                              metrics["episode_return"], jnp.nan)
        metrics["episodes"] = jnp.asarray(metrics["episodes"], jnp.float32)
        return state, metrics

    return Member(init=lambda key: module.init_state(key, native, env, params),
                  iteration=iteration, learned=("model", "opt_state"),
                  env_fields=("env_state", "obs", "ep_return"))


CHECKPOINT = "population"


def _meta(agent_config, pbt: PBTConfig, seed: int, generations: int,
          member_fn: Any = None) -> dict[str, Any]:
    """The options a population was started with (what a resume must repeat); a Ray
    population of a bare ``member_fn`` (no agent config) names it instead."""
    head = ({"agent": agent_config.to_dict()} if agent_config is not None
            else {"member": _describe(member_fn)})
    return {**head, "pbt": pbt.to_dict(), "seed": seed, "generations": generations}


def _describe(member_fn: Any) -> str:
    """A ``member_fn`` by name (and a :class:`~innerlab.envs.rollout.bind`'s arguments)."""
    fn, args = getattr(member_fn, "fn", member_fn), getattr(member_fn, "args", ())
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    return name + (repr(tuple(args)) if args else "")


def _refuse_other(path: Path, saved: Any, meta: Mapping[str, Any], arg: str) -> None:
    """Resuming from ``path`` is an error unless it was started with these options."""
    from innerlab.rundir import to_jsonable

    if saved != to_jsonable(meta):
        raise ValueError(f"cannot resume from {path}: it holds a population of another "
                         f"config, PBT options, seed or length; use another {arg}")


@dataclasses.dataclass
class PopulationResult:
    """A trained population: the final ``state`` (members ``[P]``), its history, and
    ``policy(i)`` for member ``i``."""

    config: Any
    pbt: PBTConfig
    state: PopulationState | None
    history: PBTHistory
    env_steps: int

    def policy(self, member: int, greedy: bool = True):
        from innerlab.agents.learners import learner

        one = jax.tree.map(lambda x: x[member] if eqx.is_array(x) else x, self.state.members)
        return learner(self.config).policy(one, greedy)

    def best(self) -> int:
        """The member with the highest last fitness."""
        last = np.where(np.isnan(self.history.fitness[-1]), -np.inf, self.history.fitness[-1])
        return int(np.argmax(last))


_FNS: dict[Any, Any] = {}


def _population_fns(agent_config, pbt: PBTConfig, chunk: int):
    key = (agent_config, pbt, chunk)
    if key not in _FNS:
        member = agent_member(agent_config, pbt)
        init = eqx.filter_jit(lambda k: init_population(member, pbt, k))
        run = eqx.filter_jit(lambda pop: run_generations(member, pbt, pop, chunk))
        _FNS[key] = (init, run)
    return _FNS[key]


def _started(path: Path, meta: Mapping[str, Any]) -> bool:
    """Whether ``path`` holds this population killed before its first checkpoint (its
    ``config.json`` and nothing to keep): such a run starts again there."""
    from innerlab.rundir import RunDir, to_jsonable

    config = path / RunDir.CONFIG
    return config.exists() and json.loads(config.read_text()) == to_jsonable(meta)


def train_population(agent_config: Any, pbt: PBTConfig, generations: int, *, seed: int = 0,
                     run_dir: str | os.PathLike | None = None, chunk: int = 1,
                     max_chunks: int | None = None) -> PopulationResult:
    """Train ``pbt.population`` agents of ``agent_config`` in one jitted program, with
    PBT every ``pbt.interval`` learner iterations, for ``generations`` generations.

    ``chunk`` generations run per jitted call; with ``run_dir`` a checkpoint and the
    history rows (``metrics.jsonl``) are written after every call, and calling again
    with the same arguments continues bit-identically (the state holds every key).
    ``agent_config.total_steps`` is ignored: the budget is ``generations * interval``
    iterations per member.
    """
    from innerlab.rundir import RunDir

    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"argument 'generations' must be an int >= 1, got {generations!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1 or generations % chunk:
        raise ValueError(f"argument 'chunk' must be an int >= 1 dividing generations "
                         f"({generations}), got {chunk!r}")
    init, run = _population_fns(agent_config, pbt, chunk)
    pop = init(jax.random.key(seed))
    meta = _meta(agent_config, pbt, seed, generations)
    rows: list[dict[str, Any]] = []
    run_d = None
    if run_dir is not None:
        path = Path(os.fspath(run_dir))
        ckpt = path / (CHECKPOINT + ".json")
        run_d = RunDir(path, resume=ckpt.exists() or _started(path, meta))
        if ckpt.exists():
            saved = json.loads(ckpt.read_text())
            _refuse_other(path, {k: v for k, v in saved.items() if k != "done"}, meta,
                          "run_dir")
            pop = eqx.tree_deserialise_leaves(path / (CHECKPOINT + ".eqx"), pop)
            rows = [r for r in run_d.read_metrics() if r["generation"] <= saved["done"]]
            run_d.clear_metrics()  # drop rows logged after the last checkpoint
            for r in rows:
                run_d.log_metrics(r)
        else:
            run_d.clear_metrics()  # rows of a run killed before its first checkpoint
            run_d.write_config(meta)
    done = len(rows)
    per_iter = agent_config.steps_per_iteration
    todo = (generations - done) // chunk
    if max_chunks is not None:
        todo = min(todo, max_chunks)
    for _ in range(todo):
        pop, records = run(pop)
        new = PBTHistory.from_records(records).rows()
        for r in new:
            done += 1
            r.update(generation=done, iteration=done * pbt.interval,
                     env_steps=done * pbt.interval * per_iter)
        rows.extend(new)
        if run_d is not None:
            tmp = run_d.file(CHECKPOINT + ".eqx.tmp")
            eqx.tree_serialise_leaves(tmp, pop)
            os.replace(tmp, run_d.file(CHECKPOINT + ".eqx"))
            run_d.file(CHECKPOINT + ".json").write_text(json.dumps({**meta, "done": done}) + "\n")
            for r in new:
                run_d.log_metrics(r)
    history = PBTHistory.from_rows(rows) if rows else None
    return PopulationResult(agent_config, pbt, pop, history, done * pbt.interval * per_iter)


# ------------------------------------------------------------------------------ Ray Tune


def ray_scheduler(config: PBTConfig, base: Mapping[str, float] | None = None):
    """``ray.tune.schedulers.PopulationBasedTraining`` with this rule: synchronous
    generations every reported step, the same truncation count (:func:`truncation_count`
    is Ray's own count), each copied hyper-parameter multiplied by one of ``factors``
    (never resampled), maximising the reported ``fitness``; resumable
    (:class:`innerlab.agents._ray_pbt.ResumablePBT`)."""
    from ray import tune

    from innerlab.agents._ray_pbt import ResumablePBT

    base = dict(config.hypers) if base is None else dict(base)
    # the domain is only used to resample, which resample_probability=0 never does
    mutations = {n: tune.loguniform(abs(v) / 1e3 or 1e-9, abs(v) * 1e3 or 1.0)
                 for n, v in base.items()}
    return ResumablePBT(
        time_attr="training_iteration", metric="fitness", mode="max", perturbation_interval=1,
        hyperparam_mutations=mutations, quantile_fraction=config.truncation,
        resample_probability=0.0, perturbation_factors=config.factors, synch=True)


def _ray_member_trial(member_fn: Callable[[], Member], config: PBTConfig, seed: int,
                      generations: int, history: str, trial_config: dict) -> None:
    """One member as a Ray Tune trial: ``interval`` iterations per report, the fitness of
    :func:`window_fitness`, a checkpoint with every report (an exploit restarts the trial
    from the donor's checkpoint with the perturbed hypers). Every report is also written
    to ``history`` (:func:`_write_ray_row`), before it is sent."""
    import tempfile

    from ray import tune

    member = _cached_member(member_fn)
    hypers = {n: jnp.float32(trial_config[n]) for n in config.hyper_names}
    me = tune.get_context().get_trial_id()
    ckpt = tune.get_checkpoint()
    state = member.init(jax.random.fold_in(jax.random.key(seed), trial_config["member"]))
    window = jnp.zeros((config.window,), jnp.float32)
    count = jnp.int32(0)
    generation, source = 0, me
    if ckpt is not None:
        with ckpt.as_directory() as d:
            meta = json.loads((Path(d) / "member.json").read_text())
            state, window, count = eqx.tree_deserialise_leaves(Path(d) / "member.eqx",
                                                               (state, window, count))
        generation, source = meta["generation"], meta["trial"]
        if source != me:  # an exploit: the donor's learned fields, this trial's own randomness
            salt = int.from_bytes(f"{me}/{generation}".encode()[-8:], "little") % (2**31)
            fresh = member.init(jax.random.fold_in(jax.random.key(seed), salt))
            state = _replace_fields(fresh, member.learned, state)
    warm = (member, config.interval) in _RAY_FNS
    run = _ray_iterations(member, config)
    import time

    while generation < generations:
        start = time.perf_counter()
        state, window, count, metrics = jax.block_until_ready(run(state, window, count, hypers))
        # a process's first call compiles: its seconds are not training time
        train_s = time.perf_counter() - start if warm else math.nan
        warm = True
        generation += 1
        fitness = float(window_fitness(window, count))
        with tempfile.TemporaryDirectory() as d:
            eqx.tree_serialise_leaves(Path(d) / "member.eqx", (state, window, count))
            (Path(d) / "member.json").write_text(json.dumps({"generation": generation,
                                                             "trial": me}))
            row = {"fitness": fitness, "generation": generation, "trial": me,
                   "copied_from": source, "train_s": train_s,
                   **{f"hyper/{n}": float(v) for n, v in hypers.items()},
                   **{f"metric/{k}": float(np.nanmean(v)) for k, v in metrics.items()}}
            _write_ray_row(Path(history), row)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))
        source = me


_RAY_FNS: dict[Any, Any] = {}
_MEMBERS: dict[Any, Member] = {}


def _cached_member(member_fn: Callable[[], Member]) -> Member:
    """One :class:`Member` per ``member_fn`` in a worker process, so a reused Ray actor
    (a trial restarted by an exploit) finds its jitted iterations already compiled."""
    try:
        if member_fn not in _MEMBERS:
            _MEMBERS[member_fn] = member_fn()
        return _MEMBERS[member_fn]
    except TypeError:  # an unhashable member_fn: build it every time
        return member_fn()


def _ray_iterations(member: Member, config: PBTConfig):
    """``interval`` iterations of one member and its window, jitted (cached per process)."""
    key = (member, config.interval)
    if key not in _RAY_FNS:
        def run(state, window, count, hypers):
            dyn0, static = eqx.partition(state, eqx.is_array)

            def step(carry, _):
                dyn, window, count = carry
                s, m = member.iteration(eqx.combine(dyn, static), hypers)
                window, count = window_push(window, count, m["episode_return"], m["episodes"])
                return (eqx.filter(s, eqx.is_array), window, count), m

            (dyn, window, count), metrics = jax.lax.scan(step, (dyn0, window, count), None,
                                                         length=config.interval)
            return eqx.combine(dyn, static), window, count, metrics

        _RAY_FNS[key] = eqx.filter_jit(run)
    return _RAY_FNS[key]


def _history_from_ray(rows: Sequence[Mapping[str, Any]], config: PBTConfig,
                      generations: int) -> PBTHistory:
    """Who copied whom and the hypers per generation, from every result the trials
    reported (members numbered in the order of their trial ids)."""
    ids = sorted({str(r["trial"]) for r in rows})
    index = {t: i for i, t in enumerate(ids)}
    p = len(ids)
    fitness = np.full((generations, p), np.nan)
    source = np.tile(np.arange(p), (generations, 1))
    hypers = {n: np.full((generations, p), np.nan) for n in config.hyper_names}
    train_s = np.full((generations, p), np.nan)
    for row in rows:
        t = str(row["trial"])
        i = index[t]
        g = int(row["generation"]) - 1
        if not 0 <= g < generations:
            continue
        fitness[g, i] = row["fitness"]
        train_s[g, i] = row.get("train_s", np.nan)
        if g > 0 and row["copied_from"] != t:
            source[g - 1, i] = index.get(row["copied_from"], i)
        for n in config.hyper_names:
            hypers[n][g, i] = row[f"hyper/{n}"]
    # hypers after explore at generation g are those the member trains with at g + 1
    after = {n: np.concatenate([v[1:], v[-1:]], 0) for n, v in hypers.items()}
    return PBTHistory(fitness, source, after, {"train_s": train_s}, backend="ray")


RAY_EXPERIMENT = "pbt"  # Ray's experiment directory under out
RAY_HISTORY = "history"  # every report, one file each
RAY_META = "population.json"  # the options the experiment was started with


def _check_ray_meta(out: Path, meta: Mapping[str, Any]) -> None:
    saved = json.loads((out / RAY_META).read_text()) if (out / RAY_META).exists() else None
    _refuse_other(out, saved, meta, "out")


def _write_ray_row(history: Path, row: Mapping[str, Any]) -> None:
    """One trial's report of one generation as ``history/<trial>-<generation>.json``
    (written whole, then renamed). A generation run again (a trial resumed from an older
    checkpoint than its last report) replaces its file."""
    history.mkdir(parents=True, exist_ok=True)
    name = f"{row['trial']}-{int(row['generation']):05d}.json"
    tmp = history / (name + ".tmp")
    tmp.write_text(json.dumps(dict(row)) + "\n")
    os.replace(tmp, history / name)


def _ray_rows(history: Path) -> list[dict[str, Any]]:
    """Every report of every trial, read back from ``history`` (see :func:`_write_ray_row`)."""
    return [json.loads(f.read_text()) for f in sorted(history.glob("*.json"))]


def train_population_ray(member_fn: Callable[[], Member] | Any, pbt_config: PBTConfig,
                         generations: int, *, seed: int = 0,
                         out: str | os.PathLike = "runs/pbt-ray", address: str | None = None,
                         resources: Mapping[str, float] | None = None,
                         num_cpus: int | None = None, resume: bool = False) -> PopulationResult:
    """The same population as Ray Tune trials under :func:`ray_scheduler`; returns the
    same :class:`PopulationResult` as :func:`train_population` (the members are every
    trial's last checkpoint; ``history.backend == "ray"``).

    ``member_fn``: a picklable function returning the :class:`Member` (a module-level
    function or a :class:`innerlab.envs.rollout.bind` of one), or an ``AgentConfig``
    (then :func:`agent_member`). Each trial is one member, reports the fitness every
    ``interval`` iterations and checkpoints through ``tune.report``; Ray's exploit
    restarts a bottom trial from a top trial's checkpoint with perturbed hypers; the
    restarted trial keeps the donor's ``learned`` fields and fitness window and starts
    fresh envs and keys of its own (in-graph, a copy keeps its slot's envs running).
    ``address``/``num_cpus`` go to :func:`innerlab.agents.sweep.ray_init` (``None``
    starts Ray here; ``num_cpus=2`` on a small machine).

    The experiment lives in ``out/pbt`` (Ray's layout: its state, every trial's
    checkpoints), every report in ``out/history`` (one file per trial and generation,
    written by the trial before it reports) and the options in ``out/population.json``.
    ``resume=True`` continues a killed (or finished) experiment there with
    ``Tuner.restore``: unfinished and errored trials go on from the checkpoint in Ray's
    last saved experiment state, so only the generations since that save run again (Ray
    saves it every 10 s or so, and after every 4 reports of a trial, ``num_to_keep``),
    and the history, read back from ``out/history``, holds every generation, those
    before the kill included (a generation run again replaces its file). As with
    :func:`train_population`, resuming with other options is an error; without
    ``resume`` an ``out`` that already holds an experiment is an error too (nothing is
    overwritten). The trials write to ``out``: on a cluster it must be a shared path,
    as Ray's checkpoints need anyway. (Ray's own ``result.json`` of a trial is not the
    history: when PBT restarts a trial, Ray 2.60 replaces that file by its last synced
    copy, dropping the reports since.)
    """
    import functools

    from innerlab.agents.config import AgentConfig
    from innerlab.agents.sweep import ray_init
    from innerlab.envs.rollout import bind
    from innerlab.rundir import to_jsonable

    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 1:
        raise ValueError(f"argument 'generations' must be an int >= 1, got {generations!r}")
    if pbt_config.swap_envs:
        raise ValueError("PBTConfig.swap_envs needs the in-graph backend (Ray trials do not "
                         "share environments); got swap_envs=True with the Ray backend")
    agent = member_fn if isinstance(member_fn, AgentConfig) else None
    if agent is not None:  # hashable (frozen configs), so workers cache the compiled member
        member_fn = bind(agent_member, agent, pbt_config)
    kwargs = {} if num_cpus is None else {"num_cpus": num_cpus}
    ray_init(address, **kwargs)
    from ray import tune

    out = Path(os.fspath(out)).absolute()
    experiment, history_dir = out / RAY_EXPERIMENT, out / RAY_HISTORY
    trainable = tune.with_resources(
        functools.partial(_ray_member_trial, member_fn, pbt_config, seed, generations,
                          str(history_dir)),
        dict(resources or {"cpu": 1}))
    space = {"member": tune.grid_search(list(range(pbt_config.population))),
             **dict(pbt_config.hypers)}
    meta = to_jsonable(_meta(agent, pbt_config, seed, generations, member_fn))
    if tune.Tuner.can_restore(str(experiment)):
        if not resume:
            raise ValueError(f"{experiment} already holds a Ray Tune experiment: pass "
                             "resume=True to continue it, or use another out")
        _check_ray_meta(out, meta)
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable,
                                   resume_unfinished=True, resume_errored=True)
    else:  # nothing to continue (a run killed before Ray saved its state starts again)
        shutil.rmtree(history_dir, ignore_errors=True)  # reports of such a run's trials
        out.mkdir(parents=True, exist_ok=True)
        (out / RAY_META).write_text(json.dumps(meta) + "\n")
        tuner = tune.Tuner(
            trainable, param_space=space,
            # select=False, the control: the same trials side by side, no scheduler
            tune_config=tune.TuneConfig(scheduler=ray_scheduler(pbt_config) if pbt_config.select
                                        else None, reuse_actors=True),
            run_config=tune.RunConfig(name=RAY_EXPERIMENT, storage_path=str(out), verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=4)))
    grid = tuner.fit()
    errors = [str(r.error) for r in grid if r.error is not None]
    if errors:
        raise RuntimeError("Ray PBT trials failed: " + "; ".join(errors))
    history = _history_from_ray(_ray_rows(history_dir), pbt_config, generations)
    members = _final_members(grid, _cached_member(member_fn), pbt_config)
    steps = agent.steps_per_iteration * generations * pbt_config.interval if agent else 0
    return PopulationResult(agent, pbt_config, members, history, steps)


def _final_members(grid, member: Member, config: PBTConfig) -> PopulationState:
    """Every trial's last checkpoint, stacked in the order of the trial ids (the
    history's member numbering). A trial exploited after the last generation holds its
    donor's checkpoint, as an in-graph slot holds its donor's copy."""
    like = (member.init(jax.random.key(0)), jnp.zeros((config.window,), jnp.float32),
            jnp.int32(0))
    states = []
    for r in sorted(grid, key=lambda r: Path(r.path).name):  # trial dirs end in their ids
        with r.checkpoint.as_directory() as d:
            states.append(eqx.tree_deserialise_leaves(Path(d) / "member.eqx", like))

    def stack(*leaves):
        return jnp.stack(leaves) if eqx.is_array(leaves[0]) else leaves[0]

    members, window, count = jax.tree.map(stack, *states)
    return PopulationState(members, {}, window, count, jax.random.key_data(jax.random.key(0)),
                           jnp.int32(0))
