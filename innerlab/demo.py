"""The demo: one random-policy episode of every environment, train and test side by side.

``innerlab demo`` (and ``make demo``) writes, under ``runs/demo/``:

- ``<Env>.png``: a strip of frames of one episode (random policy, fixed
  seed) in the train split (top row) and the test split (bottom row);
- ``index.md``: what each picture shows, with the episodes' returns.

It exists so a new user sees every environment within a minute of set-up,
and so that anyone can check at a glance how each test split differs from
its training split.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from innerlab.envs import list_envs, make
from innerlab.envs.core import Discrete, Environment, EnvParams
from innerlab.envs.rollout import Policy, bind, random_policy, rollout
from innerlab.rundir import RunDir

__all__ = ["DemoConfig", "Episode", "random_episode", "run_demo", "save_strip"]

SPLITS = ("train", "test")


@dataclasses.dataclass
class DemoConfig:
    """Options of ``innerlab demo``."""

    out: str = "runs/demo"
    """Directory for the PNG strips and index.md (its earlier demo files are overwritten)."""
    seed: int = 0
    """Seed of the random policy and of the episodes."""
    max_frames: int = 8
    """At most this many frames per strip (evenly spaced, first and last always shown)."""
    envs: tuple[str, ...] = ()
    """Environments to show; empty means every registered one."""


@dataclasses.dataclass(frozen=True)
class Episode:
    """One rendered episode: ``frames [T+1, h, w, 3]`` uint8, ``rewards [T]``, how it ended."""

    frames: np.ndarray
    rewards: np.ndarray
    terminated: bool

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


def _sample_act(space: Any, params: None, carry: tuple, obs: jax.Array, key: jax.Array):
    """``Policy.act``: one uniform draw from ``space`` per env (continuous spaces too)."""
    keys = jax.random.split(key, jax.tree.leaves(obs)[0].shape[0])
    return carry, jax.vmap(space.sample)(keys)


def uniform_policy(env: Environment, params: EnvParams) -> Policy:
    """Uniformly random actions in ``env``'s action space.

    ``envs.rollout.random_policy`` for discrete actions; a draw from the box for
    continuous ones (Spaceship), which ``random_policy`` does not cover.
    """
    space = env.action_space(params)
    if isinstance(space, Discrete):
        return random_policy(space.n)
    return Policy(None, bind(_sample_act, space), name="random")


def _rollout(env: Environment, params: EnvParams, key: jax.Array):
    """A random-policy episode: the first episode of a ``params.max_steps``-step rollout.

    Runs the library's one rollout (``envs.rollout.rollout``, one env). Returns
    rendered frames ``[T+1, h, w, 3]`` (the start state, then each step's
    successor before any reset), rewards ``[T]`` (0 after the end) and
    ``ended [T]`` / ``terminated [T]`` flags; ``T = params.max_steps``. Frames
    after the end show the next episode and are dropped by ``random_episode``.
    """
    traj = rollout(env, params, uniform_policy(env, params), key, 1, params.max_steps)
    ended = ~traj.first_episode[:, 0]
    traj = jax.tree.map(lambda x: x[:, 0], traj)  # the one env
    states = jax.tree.map(
        lambda first, rest: jnp.concatenate([first[:1], rest]), traj.state, traj.next_state
    )
    frames = jax.vmap(lambda s: env.render_rgb(s, params))(states)
    rewards = jnp.where(ended, 0.0, traj.reward)
    return frames, rewards, ended, traj.terminated & ~ended


# The demo runs each rollout once, so compile time is all that matters: XLA's
# cheapest backend optimisation level halves it and costs nothing here.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_compiled: dict[tuple[Environment, EnvParams], Any] = {}


def random_episode(env: Environment, params: EnvParams, key: jax.Array) -> Episode:
    """One episode of ``env`` under a uniformly random policy, rendered frame by frame."""
    if (env, params) not in _compiled:
        lowered = jax.jit(_rollout, static_argnums=(0, 1)).lower(env, params, key)
        _compiled[env, params] = lowered.compile(_FAST_COMPILE)
    frames, rewards, was_ended, terminated = jax.device_get(_compiled[env, params](key))
    length = int(np.sum(~was_ended))  # steps taken before (and including) the last one
    return Episode(
        frames=np.asarray(frames[: length + 1]),
        rewards=np.asarray(rewards[:length]),
        terminated=bool(np.any(terminated[:length])),
    )


def _pick_frames(n: int, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` indices into ``range(n)``, evenly spaced, first and last kept."""
    if n <= max_frames:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_frames)).astype(int))


def save_strip(
    path: pathlib.Path, title: str, episodes: dict[str, Episode], max_frames: int
) -> pathlib.Path:
    """One row of frames per episode (``{row label: Episode}``), saved as a PNG."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    picks = {label: _pick_frames(len(ep.frames), max_frames) for label, ep in episodes.items()}
    cols = max(len(p) for p in picks.values())
    h, w = next(iter(episodes.values())).frames.shape[1:3]
    scale = 1.6 / max(h, w)
    width = max(cols * w * scale + 0.4, 4.5)
    fig = Figure(figsize=(width, len(episodes) * (h * scale + 0.45) + 0.3))
    axes = fig.subplots(len(episodes), cols, squeeze=False)
    for r, (label, ep) in enumerate(episodes.items()):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(picks[label]):
                ax.axis("off")
                continue
            t = int(picks[label][c])
            ax.imshow(ep.frames[t], interpolation="nearest")
            ax.set_title(f"t={t}", fontsize=8)
            if c == 0:
                end = "terminated" if ep.terminated else "truncated"
                label_text = f"{label}\nreturn {ep.ret:+.2f}\n{ep.length} steps, {end}"
                ax.set_ylabel(label_text, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def run_demo(config: DemoConfig, progress: Any = None) -> list[dict[str, Any]]:
    """Roll out and draw every environment; returns one record per env (name, file, returns).

    ``progress`` is an optional callable ``progress(env_name)`` called before each env.
    """
    names = list(config.envs) or list_envs()
    unknown = sorted(set(names) - set(list_envs()))
    if unknown:
        raise KeyError(f"argument 'envs': unknown environment(s) {unknown}; known: {list_envs()}")
    if config.max_frames < 2:
        raise ValueError(f"argument 'max_frames' must be >= 2, got {config.max_frames}")
    run = RunDir(config.out, resume=True)
    key = jax.random.key(config.seed)
    records = []
    for name in names:
        if progress is not None:
            progress(name)
        env, _ = make(name)
        episodes = {
            split: random_episode(env, make(name, split=split)[1], key) for split in SPLITS
        }
        title = f"{name}: {env.experiment}\nrandom policy, seed {config.seed}"
        path = save_strip(run.file(f"{name}.png"), title, episodes, config.max_frames)
        records.append(
            {
                "env": name,
                "experiment": env.experiment,
                "file": path.name,
                **{f"{s}_return": episodes[s].ret for s in SPLITS},
                **{f"{s}_steps": episodes[s].length for s in SPLITS},
            }
        )
    run.file("index.md").write_text(_index(records, config), encoding="utf-8")
    return records


def _index(records: list[dict[str, Any]], config: DemoConfig) -> str:
    lines = [
        "# innerlab demo",
        "",
        f"One episode of each environment under a uniformly random policy (seed {config.seed}):",
        "top row the train split, bottom row the test split (`params.split`).",
        "Regenerate with `innerlab demo` (or `make demo`).",
        "",
        "| environment | experiment | picture | train return (steps) | test return (steps) |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['env']} | {r['experiment']} | [{r['file']}]({r['file']}) | "
            f"{r['train_return']:+.2f} ({r['train_steps']}) | "
            f"{r['test_return']:+.2f} ({r['test_steps']}) |"
        )
    return "\n".join(lines) + "\n"
